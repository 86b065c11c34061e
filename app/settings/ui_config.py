"""ui-config.json: user-editable defaults of UI components, keyed `"<tab>/<Label>/<field>"` as in A1111.

The UI calls `ui_config.get_or_default("txt2img/Width/value", 512)` while it builds each component (also for
`minimum`, `maximum`, `step`, `visible`). A saved value wins; a missing key records the default so the file lists
every tunable field. The Runtime calls `save_if_dirty()` once the UI is built (one atomic write, not one per key).
A saved dropdown/radio value that is not among the component's choices, or of the wrong type, is ignored.
Pure module: no gradio.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.outputs.fileio import write_json_atomic
from app.settings.store import read_json_or_backup

log = logging.getLogger(__name__)

FIELDS = ("value", "visible", "minimum", "maximum", "step")


def _compatible(saved: Any, default: Any) -> bool:
    """Whether a saved value can stand in for the default (numbers interchange; bools and strings do not)."""
    if default is None or saved is None:
        return True
    if isinstance(default, bool) or isinstance(saved, bool):
        return isinstance(default, bool) and isinstance(saved, bool)
    if isinstance(default, (int, float)):
        return isinstance(saved, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(saved, (list, tuple))
    return isinstance(saved, type(default))


class UiConfig:
    """The contents of ui-config.json plus the defaults the UI registered during this run."""

    def __init__(self, path: Path | str | None, data: dict[str, Any] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._data: dict[str, Any] = dict(data or {})
        self._defaults: dict[str, Any] = {}
        self._dirty = False
        self._lock = threading.RLock()

    @classmethod
    def load(cls, path: Path | str) -> UiConfig:
        """Read ui-config.json (missing → empty; corrupt → logged and moved to `ui-config.json.bad-<timestamp>`)."""
        return cls(path, read_json_or_backup(path))

    @property
    def data(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._data)

    @property
    def defaults(self) -> dict[str, Any]:
        """The built-in defaults registered by the UI in this run (for Settings → Defaults "View changes")."""
        with self._lock:
            return dict(self._defaults)

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self._data.get(key, default)

    def get_or_default(self, key: str, default: Any, choices: Sequence[Any] | None = None) -> Any:
        """The saved value for `key` if usable, else `default` (recorded, and written by the next save).

        `choices`: for dropdowns/radios, a saved value outside them is ignored (A1111 behaviour). A list value
        (multiselect dropdown) must have every item among the choices.
        """
        with self._lock:
            self._defaults[key] = default
            if key not in self._data:
                self._data[key] = default
                self._dirty = True
                return default
            saved = self._data[key]
        if not _compatible(saved, default):
            log.warning("ui-config %s: ignoring %s=%r (expected a value like %r)", self.path, key, saved, default)
            return default
        if choices is not None and saved is not None:
            items = saved if isinstance(saved, (list, tuple)) else [saved]
            if any(item not in choices for item in items):
                log.info("ui-config %s: ignoring %s=%r (not among the choices)", self.path, key, saved)
                return default
        if isinstance(default, float) and isinstance(saved, int) and not isinstance(saved, bool):
            return float(saved)
        return saved

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            if self._data.get(key, object()) != value:
                self._data[key] = value
                self._dirty = True

    def update(self, values: dict[str, Any], save: bool = True) -> None:
        """Apply several values (Settings → Defaults → Apply) and save."""
        for key, value in values.items():
            self.set(key, value)
        if save:
            self.save_if_dirty()

    def changed_from_defaults(self) -> dict[str, tuple[Any, Any]]:
        """key → (built-in default, saved value) for the keys whose saved value differs."""
        with self._lock:
            return {k: (d, self._data[k]) for k, d in self._defaults.items() if k in self._data and self._data[k] != d}

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            write_json_atomic(self.path, self._data)
            self._dirty = False

    def save_if_dirty(self) -> bool:
        """Write the file if a default was recorded or a value set since the last save; True when written."""
        with self._lock:
            if not self._dirty:
                return False
            self.save()
            return True
