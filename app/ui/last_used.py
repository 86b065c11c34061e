"""Last-used generation values: saved on each Generate, restored as the form's values when the UI is built
(setting `restore_last_used_values`, default on). Stored atomically in `<data dir>/last_used.json` as
`{"txt2img": {field: value}, "img2img": {...}}`. Pure: no gradio."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.outputs.fileio import write_json_atomic
from app.settings.store import read_json_or_backup
from app.ui.form import fields_for

log = logging.getLogger(__name__)

FILENAME = "last_used.json"


class LastUsed:
    """The last values of every generation field per tab, persisted in one JSON file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, Any]] | None = None

    @classmethod
    def for_data_dir(cls, data_dir: Path | str) -> LastUsed:
        return cls(Path(data_dir) / FILENAME)

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._data is None:
            raw = read_json_or_backup(self.path) if self.path.exists() else {}
            self._data = {k: dict(v) for k, v in raw.items() if isinstance(v, dict)}
        return self._data

    def get(self, kind: str) -> dict[str, Any]:
        """The saved values of `kind`'s fields (unknown field names dropped)."""
        names = {spec.name for spec in fields_for(kind)}
        with self._lock:
            return {k: v for k, v in self._load().get(kind, {}).items() if k in names}

    def save(self, kind: str, values: Mapping[str, Any]) -> None:
        """Record `kind`'s field values (JSON-safe ones only) and write the file atomically."""
        names = {spec.name for spec in fields_for(kind)}
        clean = {k: v for k, v in values.items() if k in names and _json_safe(v)}
        with self._lock:
            data = self._load()
            data[kind] = clean
            try:
                write_json_atomic(self.path, data)
            except OSError as exc:  # a read-only data dir must not fail the generation
                log.warning("could not save %s: %s", self.path, exc)


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
