"""Settings: one typed registry of options with A1111 keys and defaults, stored in config.json.

- `OptionInfo` (`app.settings.schema`) describes one option (key, default, label, section, UI component, choices,
  range, infotext key). The built-in table is in `app.settings.options`; extensions add theirs with
  `Settings.register`.
- `Settings.load(path, frozen=False)` reads the flat `{key: value}` config.json. Unknown keys are kept and written
  back (extensions store their own there). A corrupt file is logged and renamed to `config.json.bad-<timestamp>`.
- `settings.set(key, value)` validates (type, static choices, slider range), saves atomically and calls the
  `on_change` listeners; a listener that raises rolls the value back. `--freeze-settings` makes it raise
  `SettingsFrozenError`. The file is written *before* the values change in memory: when the write fails (disk
  full, read-only folder) `SettingsSaveError` is raised and nothing changed, in memory or on disk.
- `settings.restrict(reason)` locks the folder settings (`is_folder_setting`: every `outdir_*`, the file-name
  patterns, `temp_dir`, options registered with `restricted=True`): changing one raises `SettingLockedError`
  naming the key and the reason (`--hide-ui-dir-config`, or listening on the network without a password).
- `read_json_or_backup(path)` is shared with `app.settings.ui_config` and the UI's last-used values.
Pure module: no torch, no gradio.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from app.outputs.fileio import write_json_atomic
from app.settings.options import builtin_options
from app.settings.schema import (
    COMPONENTS,
    Listener,
    OptionInfo,
    Section,
    SettingLockedError,
    SettingsFrozenError,
    SettingsSaveError,
    coerce_value,
    is_folder_setting,
)

log = logging.getLogger(__name__)


def setting_value(settings: Any, key: str, default: Any) -> Any:
    """``settings.get(key)`` for code that may run without a settings object (tests, tools): *default*
    when *settings* is None, when the lookup fails, or when the value is None."""
    if settings is None:
        return default
    try:
        value = settings.get(key, default)
    except Exception:  # noqa: BLE001 - a settings-like object without this key
        return default
    return default if value is None else value


def read_json_or_backup(path: Path | str) -> dict[str, Any]:
    """Read a JSON object file. Missing → {}. Unreadable/corrupt → logged, renamed to `<name>.bad-<timestamp>`, {}."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        return data
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        backup = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
        n = 1
        while backup.exists():
            backup = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
            n += 1
        try:
            os.replace(path, backup)
            log.warning("could not read %s (%s); moved it to %s and started from defaults", path, exc, backup)
        except OSError as exc2:
            log.warning("could not read %s (%s) nor move it aside (%s); using defaults", path, exc, exc2)
        return {}


class Settings:
    """Current option values (defaults + config.json), with validation, atomic saving and change listeners."""

    def __init__(self, path: Path | str | None = None, frozen: bool = False,
                 options: Iterable[OptionInfo] | None = None) -> None:
        if options is None:
            options = builtin_options()
        self.path = Path(path) if path is not None else None
        self.frozen = frozen
        self._lock = threading.RLock()
        self._infos: dict[str, OptionInfo] = {}
        self._data: dict[str, Any] = {}
        self._listeners: dict[str, list[Listener]] = {}
        self._any_listeners: list[Listener] = []
        self._choice_providers: dict[str, Callable[[], Sequence[Any]]] = {}
        #: Why the folder settings are locked (None = they are not); see `restrict`.
        self.restricted_reason: str | None = None
        for info in options:
            self.register(info)

    # -- loading and saving ---------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path | str, frozen: bool = False, options: Iterable[OptionInfo] | None = None) -> Settings:
        """Settings with the values of `path` (config.json) over the defaults. A missing file means all defaults."""
        settings = cls(path, frozen=frozen, options=options)
        for key, value in read_json_or_backup(path).items():
            info = settings._infos.get(key)
            if info is None:
                settings._data[key] = value  # an extension's key or an A1111 key we do not use: keep it
                continue
            try:
                # A hand-edited value beyond a slider's range is kept (A1111 does not check ranges either).
                settings._data[key] = coerce_value(info, value, check_range=False)
            except ValueError as exc:
                log.warning("config %s: %s; using the default %r", path, exc, info.default)
        return settings

    def save(self) -> None:
        """Write every value (defaults included, unknown keys kept) to config.json atomically.

        Raises SettingsSaveError (an OSError) when the file cannot be written; the old file stays."""
        with self._lock:
            self._write(self._data)

    def _write(self, data: dict[str, Any]) -> None:
        if self.path is None:
            return
        try:
            write_json_atomic(self.path, data)
        except OSError as exc:
            log.error("could not save settings to %s: %s", self.path, exc)
            raise SettingsSaveError(self.path, exc) from exc

    # -- folder lock ----------------------------------------------------------------------------------------------
    def restrict(self, reason: str) -> None:
        """Lock every folder setting (`is_folder_setting`) for the rest of the run; `reason` is shown to clients."""
        self.restricted_reason = reason

    def locked_reason(self, key: str) -> str | None:
        """Why `key` cannot be changed now (a folder setting while restricted), else None."""
        if self.restricted_reason is None:
            return None
        return self.restricted_reason if is_folder_setting(key, self._infos.get(key)) else None

    # -- registry -------------------------------------------------------------------------------------------------
    def register(self, info: OptionInfo) -> None:
        """Add an option (built-in or from an extension). A value already loaded for its key is kept if valid."""
        if info.component not in COMPONENTS:
            raise ValueError(f"option {info.key!r}: unknown component {info.component!r}")
        with self._lock:
            self._infos[info.key] = info
            if info.key in self._data:
                try:
                    self._data[info.key] = coerce_value(info, self._data[info.key], check_range=False)
                    return
                except ValueError as exc:
                    log.warning("setting %s: %s; using the default", info.key, exc)
            self._data[info.key] = info.default

    def options(self) -> list[OptionInfo]:
        """Every registered option, in registration order (sections are contiguous in the built-in table)."""
        return list(self._infos.values())

    def info(self, key: str) -> OptionInfo:
        try:
            return self._infos[key]
        except KeyError:
            raise KeyError(f"unknown setting {key!r}") from None

    def sections(self) -> list[Section]:
        seen: dict[str, Section] = {}
        for info in self._infos.values():
            seen.setdefault(info.section.id, info.section)
        return list(seen.values())

    def set_choices_provider(self, key: str, provider: Callable[[], Sequence[Any]]) -> None:
        """Give a dropdown its live choices (e.g. the Runtime lists the catalog's checkpoints for sd_model_checkpoint)."""
        self._choice_providers[key] = provider

    def choices(self, key: str) -> list[Any]:
        """The current choices of a dropdown/radio option ([] for options without choices)."""
        info = self.info(key)
        if key in self._choice_providers:
            return list(self._choice_providers[key]())
        if callable(info.choices):
            return list(info.choices())
        return list(info.choices or ())

    def infotext_keys(self) -> dict[str, str]:
        """Infotext key → setting key, for the options that appear in infotext as overrides (e.g. "Clip skip")."""
        return {info.infotext: info.key for info in self._infos.values() if info.infotext}

    # -- values ---------------------------------------------------------------------------------------------------
    @property
    def data(self) -> dict[str, Any]:
        """A copy of every current value (defaults, loaded and unknown keys). Change values with `set`."""
        with self._lock:
            return dict(self._data)

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            if key in self._data:
                return self._data[key]
        return default

    def __getitem__(self, key: str) -> Any:
        with self._lock:
            if key in self._data:
                return self._data[key]
        raise KeyError(f"unknown setting {key!r}")

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __getattr__(self, key: str) -> Any:
        # Attribute access (`settings.sd_vae`) for code written against A1111's `opts`.
        if key.startswith("_"):
            raise AttributeError(key)
        data = self.__dict__.get("_data", {})
        if key in data:
            return data[key]
        raise AttributeError(f"unknown setting {key!r}")

    def default(self, key: str) -> Any:
        return self.info(key).default

    def validate(self, key: str, value: Any) -> Any:
        """The value `set` would store, or ValueError/KeyError; nothing is changed.

        Changing a locked folder setting (see `restrict`) raises SettingLockedError (a ValueError naming the key);
        its current value is accepted (clients post back the whole GET /options object, as with A1111)."""
        info = self._infos.get(key)
        if info is None:
            if key not in self._data:
                raise KeyError(f"unknown setting {key!r}")
            checked = value
        else:
            checked = coerce_value(info, value) if self.locked_reason(key) is None else value
        reason = self.locked_reason(key)
        if reason is not None:
            with self._lock:
                current = self._data.get(key)
            if not (checked == current and type(checked) is type(current)):
                raise SettingLockedError(key, reason)
        return checked

    def set(self, key: str, value: Any, save: bool = True) -> bool:
        """Validate and store one value, save config.json, notify listeners. Returns False when unchanged.

        If a listener raises (e.g. a checkpoint fails to load), the old value is restored and the error re-raised.
        """
        return self.set_many({key: value}, save=save) == [key]

    def set_many(self, values: dict[str, Any], save: bool = True) -> list[str]:
        """Validate every value first (all or nothing), then apply them in order; returns the keys that changed.

        config.json is written with the new values before anything changes in memory, so a failed write
        (SettingsSaveError) leaves both as they were. A listener that raises rolls its key back (and the keys after
        it are not applied); the file is then written again with what is really in effect."""
        if self.frozen:
            raise SettingsFrozenError("settings are frozen (--freeze-settings): changing them is disabled")
        checked = {key: self.validate(key, value) for key, value in values.items()}
        with self._lock:
            pending = {key: value for key, value in checked.items() if not self._unchanged(key, value)}
            if not pending:
                return []
            written = {**self._data, **pending}
            if save:
                self._write(written)  # raises SettingsSaveError: nothing changed
        changed: list[str] = []
        for key, value in pending.items():
            with self._lock:
                old = self._data.get(key)
                had = key in self._data
                self._data[key] = value
            # Listeners run without the lock: they may wait on other threads that read settings (model loading).
            try:
                self._notify(key, value)
            except BaseException:
                with self._lock:
                    if self._data.get(key) is value:
                        if had:
                            self._data[key] = old
                        else:
                            self._data.pop(key, None)
                if save:
                    try:
                        self.save()  # the file already holds the rejected values: write what is in effect
                    except SettingsSaveError:
                        log.error("config.json still holds the rejected value of %s until the next save", key)
                raise
            changed.append(key)
        if save:
            with self._lock:
                current = dict(self._data)
            if current != written:  # a listener recorded a canonical form (set_quietly), e.g. the checkpoint title
                try:
                    self._write(current)
                except SettingsSaveError:  # the file holds the values as given, which mean the same
                    log.error("config.json keeps the values as given, not their canonical form, until the next save")
        return changed

    def keep_unknown(self, values: dict[str, Any]) -> list[str]:
        """Store values for keys no option is registered for (an extension not installed yet, an A1111 key Atelier
        does not use) as given, and save config.json, so an extension installed later finds them (A1111 keeps such
        keys too). Registered keys raise KeyError (they go through `set_many`). Returns the keys that changed."""
        if self.frozen:
            raise SettingsFrozenError("settings are frozen (--freeze-settings): changing them is disabled")
        with self._lock:
            registered = sorted(key for key in values if key in self._infos)
            if registered:
                raise KeyError(f"registered settings go through set_many: {', '.join(registered)}")
            pending = {key: value for key, value in values.items() if not self._unchanged(key, value)}
            if pending:
                self._write({**self._data, **pending})  # raises SettingsSaveError: nothing changed
                self._data.update(pending)
        return list(pending)

    def _unchanged(self, key: str, value: Any) -> bool:
        old = self._data.get(key)
        return key in self._data and old == value and type(old) is type(value)

    def set_quietly(self, key: str, value: Any) -> None:
        """Record a value the program itself determined (e.g. the canonical title of the checkpoint just loaded):
        validated, but no listeners, no save of its own, allowed with --freeze-settings. The next save keeps it."""
        checked = self.validate(key, value)
        with self._lock:
            self._data[key] = checked

    def reset(self, key: str) -> None:
        """Set an option back to its default."""
        self.set(key, self.info(key).default)

    # -- listeners ------------------------------------------------------------------------------------------------
    def on_change(self, key: str, callback: Listener) -> None:
        """Call `callback(key, new_value)` after `key` changes. It may raise to reject the change (rolled back)."""
        self._listeners.setdefault(key, []).append(callback)

    def on_any_change(self, callback: Listener) -> None:
        """Call `callback(key, new_value)` after any setting changes (e.g. to refresh the UI's `opts`)."""
        self._any_listeners.append(callback)

    def remove_listener(self, callback: Listener) -> None:
        for callbacks in self._listeners.values():
            while callback in callbacks:
                callbacks.remove(callback)
        while callback in self._any_listeners:
            self._any_listeners.remove(callback)

    def _notify(self, key: str, value: Any) -> None:
        info = self._infos.get(key)
        if info is not None and info.onchange is not None:
            info.onchange(key, value)
        for callback in list(self._listeners.get(key, ())):
            callback(key, value)
        for callback in list(self._any_listeners):
            try:
                callback(key, value)
            except Exception:  # an observer must not undo a change that already took effect
                log.exception("settings listener failed for %s", key)
