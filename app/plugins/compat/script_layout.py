"""A1111's positional ``script_args`` for one tab: where each A1111 ``Script``'s ``ui()`` values sit.

A1111's ``ScriptRunner`` gives every script of a tab a slice ``args_from:args_to`` of one list: index 0 is
the Script dropdown (0 = None, i + 1 = the i-th selectable script), then the ``ui()`` controls of each
always-on script in load order, then those of each selectable script. Scripts read their values as
``process(p, *args)`` / ``run(p, *args)`` and, some of them, as ``p.script_args[self.args_from:self.args_to]``.

The layout is made once per tab, by whoever calls ``ui()`` first: the web UI while it builds the tab (with the
real controls, ``LayoutBuilder``), else ``layout_for`` itself inside a throwaway ``gr.Blocks`` (the API without a
UI, ``--nowebui``), as A1111's API does to learn the defaults. A job's values are the defaults (each control's
``value``; the choice's index for ``type="index"`` dropdowns and radios) overlaid with what the job carries:
``params.script.args`` for the selected script and ``params.extras["alwayson_scripts"][title]`` for always-on
ones (the UI fills both from its controls; the API from ``script_args`` / ``alwayson_scripts``). So an always-on
script the request does not mention runs with its ``ui()`` defaults, as in A1111.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.params import RUNNABLE_SCRIPTS
from app.plugins.api import script_args_for

log = logging.getLogger(__name__)

_lock = threading.RLock()


@dataclass
class ScriptSlot:
    """One script's place in the tab's ``script_args``."""

    script: Any
    extension: str
    args_from: int
    args_to: int
    defaults: list[Any] = field(default_factory=list)
    error: str = ""

    @property
    def alwayson(self) -> bool:
        return bool(getattr(self.script, "alwayson", False))

    @property
    def title(self) -> str:
        return str(self.script.title())


@dataclass
class ScriptLayout:
    """Every A1111 script of one tab in ``script_args`` order."""

    is_img2img: bool
    slots: list[ScriptSlot] = field(default_factory=list)
    size: int = 1  # index 0: the selected script

    def slot(self, script: Any) -> ScriptSlot | None:
        return next((s for s in self.slots if s.script is script), None)

    def selectable(self) -> list[ScriptSlot]:
        return [s for s in self.slots if not s.alwayson]

    def given(self, slot: ScriptSlot, params: Any) -> list[Any] | None:
        """The values the job carries for ``slot`` (None: none, its defaults apply)."""
        if not slot.alwayson:
            chosen = getattr(params, "script", None)
            name = str(getattr(chosen, "name", "") or "").strip().lower()
            return list(getattr(chosen, "args", None) or []) if name and name == slot.title.strip().lower() else None
        value = script_args_for(params, slot.title)
        if isinstance(value, dict):
            value = value.get("args", [])
        if value is None:
            return None
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"alwayson_scripts[{slot.title!r}] args must be a list, got {type(value).__name__}")
        return list(value)

    def values(self, slot: ScriptSlot, params: Any) -> list[Any]:
        """``slot``'s values for this job: its defaults with the job's values over them. Values beyond its
        controls are kept for a selectable script (A1111's API passes every ``script_args`` value to ``run``) and
        for an always-on script without ``ui()`` controls; an always-on script with controls gets as many as it
        has (A1111 takes the shorter of the two)."""
        out = list(slot.defaults)
        given = self.given(slot, params)
        if given is None:
            return out
        width = len(out)
        out[:min(width, len(given))] = given[:width]
        if not slot.alwayson or width == 0:
            out += given[width:]
        return out

    def script_args(self, params: Any) -> list[Any]:
        """The job's whole positional list (index 0: the selected script's index + 1, 0 for none)."""
        args: list[Any] = [0]
        for index, slot in enumerate(self.selectable()):
            if self.given(slot, params) is not None:
                args[0] = index + 1
        for slot in self.slots:
            args += self.values(slot, params)[:slot.args_to - slot.args_from]
        return args

    def args_for(self, script: Any, params: Any) -> list[Any]:
        """``script``'s own values for this job (what its hooks get after ``p``)."""
        slot = self.slot(script)
        return [] if slot is None else self.values(slot, params)


#: gradio components whose value is text ("" when empty).
_TEXT_CONTROLS = ("Textbox", "TextArea", "Code", "HTML", "Markdown")


# -- building ----------------------------------------------------------------------------------------------------
def control_default(control: Any) -> Any:
    """What a control gives a script when the user leaves it alone: its ``value`` (the index of that value for
    ``type="index"`` choices, "" for an empty text box, as the control itself would send)."""
    value = getattr(control, "value", None)
    if callable(value):  # gradio allows a function as the initial value
        try:
            value = value()
        except Exception:  # noqa: BLE001 - a default that cannot be computed is None
            value = None
    if value is None and type(control).__name__ in _TEXT_CONTROLS:
        return ""  # what the page sends for an empty text box (a script may call str methods on it)
    if getattr(control, "type", None) == "index":
        choices = [c[1] if isinstance(c, (tuple, list)) else c for c in getattr(control, "choices", None) or []]
        labels = [c[0] if isinstance(c, (tuple, list)) else c for c in getattr(control, "choices", None) or []]
        if value in choices:
            return choices.index(value)
        if value in labels:
            return labels.index(value)
    return value


def controls_of(result: Any) -> list[Any]:
    """``ui()``'s return value as a list of controls (None and non-sequences: none)."""
    if result is None:
        return []
    if isinstance(result, dict):
        return list(result.values())
    if isinstance(result, (list, tuple)):
        return list(result)
    return [result]


def api_arg(control: Any) -> dict[str, Any]:
    """A1111's ``ScriptArg`` shape of one control (``/sdapi/v1/script-info``)."""
    choices = getattr(control, "choices", None)
    if choices is not None:
        choices = [c[0] if isinstance(c, (tuple, list)) else c for c in choices]
    return {"label": str(getattr(control, "label", "") or ""), "value": control_default(control),
            "minimum": getattr(control, "minimum", None), "maximum": getattr(control, "maximum", None),
            "step": getattr(control, "step", None), "choices": choices}


class LayoutBuilder:
    """Assigns ``args_from``/``args_to`` while the caller renders each script's ``ui()`` in A1111's order."""

    def __init__(self, is_img2img: bool) -> None:
        self.layout = ScriptLayout(is_img2img)

    def add(self, script: Any, extension: str, controls: Sequence[Any], error: str = "") -> ScriptSlot:
        start = self.layout.size
        script.args_from, script.args_to = start, start + len(controls)
        script.controls = list(controls)
        slot = ScriptSlot(script, extension, start, start + len(controls), [control_default(c) for c in controls],
                          error)
        self.layout.slots.append(slot)
        self.layout.size = slot.args_to
        return slot


def tab_scripts(registry: Any, is_img2img: bool) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """(always-on, selectable) ``(extension, Script)`` pairs of a tab, in load order. A selectable script with the
    title of a built-in one the engine runs is left out (the built-in is used); a note says so."""
    kind = "img2img" if is_img2img else "txt2img"
    alwayson, selectable = [], []
    for extension, script in getattr(registry, "a1111_scripts", []):
        if bool(script.is_img2img) != is_img2img:
            continue
        if script.alwayson:
            alwayson.append((extension, script))
            continue
        title = str(script.title())
        if kind in RUNNABLE_SCRIPTS.get(title, ()):
            note = f"script {title!r} has the title of a built-in script; the built-in one is used"
            info = registry.extension(extension)
            if info is not None and note not in info.notes:
                info.notes.append(note)
            continue
        selectable.append((extension, script))
    return alwayson, selectable


def call_ui(script: Any, is_img2img: bool) -> tuple[list[Any], str]:
    """``script.ui(is_img2img)`` in the current gradio context: (controls, error text or "")."""
    from app.plugins.compat.gradio3 import gradio3_keywords

    try:
        with gradio3_keywords():  # `_js=` on its event listeners, as in A1111's gradio 3
            return controls_of(script.ui(is_img2img)), ""
    except Exception as exc:  # noqa: BLE001 - a broken ui() must not stop the others
        log.warning("script %s: ui() failed", type(script).__name__, exc_info=True)
        return [], f"ui() failed: {type(exc).__name__}: {exc}"


def set_layout(registry: Any, layout: ScriptLayout) -> None:
    with _lock:
        registry.script_layouts[layout.is_img2img] = layout
        _describe_selectable(registry, layout)
        record_ui_errors(registry, layout)


def _describe_selectable(registry: Any, layout: ScriptLayout) -> None:
    by_script = {id(s.script): s for s in getattr(registry, "scripts", [])}
    for slot in layout.slots:
        entry = by_script.get(id(slot.script))
        if entry is not None:
            entry.args = [api_arg(c) for c in getattr(slot.script, "controls", None) or []]


def layout_for(registry: Any, is_img2img: bool,
               render: Callable[[Any, bool], tuple[list[Any], str]] | None = None) -> ScriptLayout:
    """The tab's layout; made on first use with ``ui()`` called inside a throwaway ``gr.Blocks``."""
    with _lock:
        layout = registry.script_layouts.get(is_img2img)
        if layout is not None:
            return layout
        alwayson, selectable = tab_scripts(registry, is_img2img)
        builder = LayoutBuilder(is_img2img)
        if alwayson or selectable:
            import gradio as gr

            with gr.Blocks(analytics_enabled=False):
                for extension, script in alwayson + selectable:
                    controls, error = (render or call_ui)(script, is_img2img)
                    builder.add(script, extension, controls, error)
        set_layout(registry, builder.layout)
        return builder.layout


def record_ui_errors(registry: Any, layout: ScriptLayout) -> None:
    """Record each slot's ``ui()`` error on its extension (once), for the Extensions tab and the log."""
    for slot in layout.slots:
        if slot.error:
            message = f"{slot.title}: {slot.error}"
            info = registry.extension(slot.extension)
            if info is not None and message not in info.errors:
                registry.note_error(slot.extension, message)
