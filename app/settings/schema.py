"""The settings vocabulary: what an option is (`OptionInfo`, `Section`), how a value is checked (`coerce_value`),
which options are folder settings (`is_folder_setting`) and the errors a change can raise.

Imported by the built-in table (`app.settings.options`) and by the store (`app.settings.store`); imports neither.
Pure module: no torch, no gradio.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMPONENTS = ("dropdown", "slider", "checkbox", "textbox", "number", "radio", "color", "html")

ChoicesSpec = Sequence[Any] | Callable[[], Sequence[Any]] | None
Listener = Callable[[str, Any], None]


class SettingsFrozenError(PermissionError):
    """Raised by `Settings.set` when the app runs with `--freeze-settings`."""


class SettingLockedError(ValueError):
    """A folder setting (see `is_folder_setting`) cannot be changed while the server restricts them.

    A ValueError so every validation path (POST /options, a job's `override_settings`) refuses it as bad input."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"setting {key!r} names a server folder, a file name pattern or a server limit and is "
                         f"locked ({reason}); "
                         f"edit config.json on the server to change it")
        self.key = key
        self.reason = reason


class SettingsSaveError(OSError):
    """config.json could not be written (disk full, read-only folder...): nothing was changed."""

    def __init__(self, path: Path | str, cause: OSError) -> None:
        super().__init__(cause.errno, f"could not save settings to {path}: {cause.strerror or cause}; "
                                      f"no setting was changed")
        self.path = Path(path)
        self.cause = cause


#: Settings that name server folders or shape saved file paths (A1111's `restricted_opts`, plus temp_dir and the
#: img2img grids folder). Every key starting with `outdir_` is one too (extensions follow that naming).
FOLDER_SETTINGS = frozenset({
    "samples_filename_pattern", "directories_filename_pattern", "temp_dir", "clean_temp_dir_at_start",
})


def is_folder_setting(key: str, info: OptionInfo | None = None) -> bool:
    """Whether `key` names a server folder (or a pattern that decides where files go): locked by `restrict`."""
    return key.startswith("outdir_") or key in FOLDER_SETTINGS or bool(info is not None and info.restricted)


@dataclass(frozen=True)
class Section:
    """A settings page: stable id and the label the UI shows."""

    id: str
    label: str


@dataclass(frozen=True)
class OptionInfo:
    """One setting. `choices` is a sequence, or a callable returning one (dynamic lists such as checkpoints)."""

    key: str
    default: Any
    label: str
    section: Section
    component: str = "textbox"
    choices: ChoicesSpec = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    #: Infotext key under which this setting is written/read as an override (e.g. "Clip skip"), or None.
    infotext: str | None = None
    #: The value type; None = taken from the default (None default = any type).
    type: type | None = None
    multiselect: bool = False
    requires_restart: bool = False
    comment: str = ""
    #: Called with (key, new_value) after a change, before other listeners; may raise to reject the change.
    onchange: Listener | None = None
    #: The value names a server folder or decides where files are written: locked by `Settings.restrict`.
    restricted: bool = False
    #: Kept in config.json and served by the API, but not shown on the Settings page (A1111's options without a
    #: section, e.g. `sd_checkpoint_hash`, which the program records after each model load).
    hidden: bool = False

    def value_type(self) -> type | None:
        if self.type is not None:
            return self.type
        return None if self.default is None else type(self.default)

    def static_choices(self) -> tuple[Any, ...] | None:
        if self.choices is None or callable(self.choices):
            return None
        return tuple(self.choices)


def coerce_value(info: OptionInfo, value: Any, check_range: bool = True) -> Any:
    """Check `value` against the option's type, static choices and range (sliders, numbers with a minimum/maximum);
    return the value to store.

    Raises ValueError naming the key on a mismatch. Ints are accepted for float options and integral floats for
    int options (JSON and gradio do not keep the distinction); bools are never numbers.
    """
    expected = info.value_type()
    key = info.key
    if value is None and info.default is None:
        return None
    if expected is not None:
        if expected is bool:
            if not isinstance(value, bool):
                raise ValueError(f"setting {key!r} expects true/false, got {type(value).__name__} {value!r}")
        elif expected in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"setting {key!r} expects a number, got {type(value).__name__} {value!r}")
            if expected is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError(f"setting {key!r} expects an integer, got {value!r}")
                value = int(value)
            else:
                value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"setting {key!r} expects a finite number, got {value!r}")
        elif expected in (list, tuple):
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"setting {key!r} expects a list, got {type(value).__name__} {value!r}")
            value = list(value)
        elif not isinstance(value, expected):
            raise ValueError(f"setting {key!r} expects {expected.__name__}, got {type(value).__name__} {value!r}")
    choices = info.static_choices()
    if choices is not None:
        items = value if info.multiselect and isinstance(value, list) else [value]
        bad = [v for v in items if v not in choices]
        if bad:
            raise ValueError(f"setting {key!r}: {bad[0]!r} is not one of {list(choices)!r}")
    if check_range and info.component in ("slider", "number") and isinstance(value, (int, float)):
        if (info.minimum is not None and value < info.minimum) or (info.maximum is not None and value > info.maximum):
            if info.maximum is None:
                raise ValueError(f"setting {key!r}: {value!r} is below its minimum {info.minimum}")
            if info.minimum is None:
                raise ValueError(f"setting {key!r}: {value!r} is above its maximum {info.maximum}")
            raise ValueError(f"setting {key!r}: {value!r} is outside {info.minimum}..{info.maximum}")
    return value
