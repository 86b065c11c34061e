"""``modules.scripts``: the A1111 ``Script`` base class and its helper types.

Extensions subclass ``Script``; the loader instantiates each subclass once per tab (txt2img,
img2img) and asks ``show(is_img2img)``: ``AlwaysVisible`` scripts become plugins
(``app.plugins.compat.adapter``), ``True`` lists the script by title for the Script dropdown and
``script_name`` in the API, ``False`` hides it.
"""

from __future__ import annotations

import os
import re
from collections import namedtuple
from dataclasses import dataclass
from typing import Any

from app.plugins.compat import script_callbacks  # noqa: F401 - A1111's modules.scripts re-exports it
from app.plugins.compat.current import current

#: A script file of an extension (A1111 ``scripts.ScriptFile``).
ScriptFile = namedtuple("ScriptFile", ["basedir", "filename", "path"])
#: One loaded script class (A1111 ``scripts.ScriptClassData``).
ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])
#: A1111's list of loaded script classes. Extensions search it for the X/Y/Z plot's module
#: (``script_class.__module__ == "xyz_grid.py"``) to add axes: ``app.plugins.compat.xyz_grid`` puts that entry here.
scripts_data: list[ScriptClassData] = []


class _AlwaysVisible:
    def __repr__(self) -> str:
        return "AlwaysVisible"


#: ``show()`` returns this for scripts that are always on (A1111 sentinel object).
AlwaysVisible = _AlwaysVisible()

_basedir_stack: list[str] = []


def basedir() -> str:
    """The folder of the extension whose script is being imported; outside of an import, the data dir
    (A1111's script path). Read it at import time, as A1111 extensions do."""
    if _basedir_stack:
        return _basedir_stack[-1]
    runtime = current().runtime
    data_dir = getattr(getattr(runtime, "paths", None), "data_dir", None)
    return str(data_dir) if data_dir is not None else os.getcwd()


def push_basedir(path: str) -> None:
    _basedir_stack.append(path)


def pop_basedir() -> None:
    if _basedir_stack:
        _basedir_stack.pop()


@dataclass
class OnComponent:
    """What ``Script.on_before_component``/``on_after_component`` callbacks get (A1111 1.6+)."""

    component: Any


@dataclass
class PostprocessImageArgs:
    image: Any


@dataclass
class PostprocessBatchListArgs:
    images: list[Any]


@dataclass
class PostSampleArgs:
    samples: Any


class Script:
    """Base class of A1111 scripts. Override ``title``/``show``/``ui`` and the hooks you need."""

    name: str | None = None
    filename: str | None = None
    args_from: int | None = None
    args_to: int | None = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    tabname: str | None = None
    group: Any = None
    create_group = True
    section: str | None = None
    infotext_fields: list[Any] | None = None
    paste_field_names: list[str] | None = None
    api_info: Any = None
    controls: Any = None
    setup_for_ui_only = False
    on_before_component_elem_id: list[Any] | None = None
    on_after_component_elem_id: list[Any] | None = None

    def title(self) -> str:
        raise NotImplementedError(f"{type(self).__name__} has no title()")

    def ui(self, is_img2img: bool) -> Any:
        return None

    def show(self, is_img2img: bool) -> Any:
        return True

    def run(self, p: Any, *args: Any) -> Any:
        return None

    def setup(self, p: Any, *args: Any) -> None:
        pass

    def before_process(self, p: Any, *args: Any) -> None:
        pass

    def process(self, p: Any, *args: Any) -> None:
        pass

    def before_process_batch(self, p: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def process_batch(self, p: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def postprocess_batch(self, p: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def postprocess_image(self, p: Any, pp: PostprocessImageArgs, *args: Any) -> None:
        pass

    def postprocess(self, p: Any, processed: Any, *args: Any) -> None:
        pass

    def before_hr(self, p: Any, *args: Any) -> None:
        pass

    def before_component(self, component: Any, **kwargs: Any) -> None:
        pass

    def after_component(self, component: Any, **kwargs: Any) -> None:
        pass

    def on_before_component(self, callback: Any, *, elem_id: str) -> None:
        if self.on_before_component_elem_id is None:
            self.on_before_component_elem_id = []
        self.on_before_component_elem_id.append((elem_id, callback))

    def on_after_component(self, callback: Any, *, elem_id: str) -> None:
        if self.on_after_component_elem_id is None:
            self.on_after_component_elem_id = []
        self.on_after_component_elem_id.append((elem_id, callback))

    def describe(self) -> str:
        return ""

    def elem_id(self, item_id: str) -> str:
        """``script_[txt2img_|img2img_]<title-slug>_<item>`` (A1111)."""
        need_tabname = self.show(True) == self.show(False)
        tabkind = "img2img" if self.is_img2img else "txt2img"
        tabname = f"{tabkind}_" if need_tabname else ""
        title = re.sub(r"[^a-z_0-9]", "", re.sub(r"\s", "_", self.title().lower()))
        return f"script_{tabname}{title}_{item_id}"


def list_scripts(scriptdirname: str, extension: str, *, include_extensions: bool = True) -> list[ScriptFile]:
    """A1111's ``scripts.list_scripts``: the ``<scriptdirname>/*<extension>`` files of every enabled extension
    (in load order, files by name), as ``ScriptFile(basedir, filename, path)``. Atelier has no built-in script
    folder of A1111's, so only extensions' files are listed."""
    found: list[ScriptFile] = []
    if not include_extensions:
        return found
    for ext in getattr(current(), "extensions", []):
        if not getattr(ext, "enabled", True):
            continue
        folder = os.path.join(str(ext.path), scriptdirname)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            full = os.path.join(folder, name)
            if name.lower().endswith(extension.lower()) and os.path.isfile(full):
                found.append(ScriptFile(str(ext.path), name, full))
    return found
