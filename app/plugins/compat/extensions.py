"""``modules.extensions``: the installed extensions as A1111's ``Extension`` objects (``extensions``,
``active()``, ``find_extension``) and the folders (``extensions_dir``; ``extensions_builtin_dir`` is an empty
folder name: Atelier has no built-in extensions)."""

from __future__ import annotations

import os
from typing import Any

from app.plugins.compat.current import current


class Extension:
    """One extension folder (from the loader's ``ExtensionInfo``)."""

    def __init__(self, info: Any) -> None:
        self.name = info.name
        self.canonical_name = info.name.lower()
        self.path = info.path
        self.enabled = info.enabled
        self.is_builtin = False
        self.remote = info.remote
        self.branch = info.branch
        self.commit_hash = info.commit_hash or ""
        self.commit_date = info.commit_date
        self.version = info.version
        self.status = ""
        self.have_info_from_repo = info.remote is not None

    def list_files(self, subdir: str, extension: str) -> list[Any]:
        """The files of ``<path>/<subdir>`` ending in ``extension``, sorted (A1111 returns ScriptFile tuples)."""
        from app.plugins.compat.scripts import ScriptFile

        folder = os.path.join(self.path, subdir)
        if not os.path.isdir(folder):
            return []
        return [ScriptFile(self.path, name, os.path.join(folder, name))
                for name in sorted(os.listdir(folder)) if name.endswith(extension)]

    def read_info_from_repo(self) -> None:
        pass


def _all() -> list[Extension]:
    return [Extension(info) for info in current().extensions]


def active() -> list[Extension]:
    """The enabled extensions."""
    return [e for e in _all() if e.enabled]


def find_extension(name: str) -> Extension | None:
    return next((e for e in _all() if e.name == name), None)


def __getattr__(name: str) -> Any:
    if name == "extensions":
        return _all()
    if name in ("extensions_dir", "extensions_builtin_dir"):
        from app.plugins.compat import paths

        return paths.extensions_dir if name == "extensions_dir" else os.path.join(paths.data_path, "extensions-builtin")
    raise AttributeError(f"module 'modules.extensions' has no attribute {name!r}")
