"""``modules.paths``: the folders extensions read (``script_path``, ``data_path``, ``models_path``,
``extensions_dir``), from the runtime's ``Paths``, and ``extensions_builtin_dir``: A1111's folder of bundled
extensions; Atelier bundles none, so it is ``<data dir>/extensions-builtin``, which normally does not exist
(ADetailer looks for ControlNet there and in ``extensions_dir``)."""

from __future__ import annotations

import os
from typing import Any

_NAMES = {"script_path": "data_dir", "data_path": "data_dir", "models_path": "models_dir",
          "extensions_dir": "extensions_dir"}


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        from app.plugins.compat.shared import _runtime

        paths = getattr(_runtime(), "paths", None)
        value = getattr(paths, _NAMES[name], None) if paths is not None else None
        return str(value) if value is not None else os.getcwd()
    if name == "extensions_builtin_dir":
        return os.path.join(__getattr__("data_path"), "extensions-builtin")
    raise AttributeError(f"module 'modules.paths' has no attribute {name!r}")
