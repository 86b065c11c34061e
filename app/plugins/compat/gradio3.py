"""Gradio 3 habits of extensions' UI code: ``_js=`` on event listeners, invisible components in the page.

A1111 runs gradio 3.41, whose event listeners (``button.click(fn, inputs, outputs, _js="...")``, ``demo.load``)
take the page-side function as ``_js``; gradio 4+ renamed it ``js`` (same meaning: a JavaScript function, or an
expression naming one, run in the page before ``fn`` with the inputs' values; what it returns goes to ``fn``).
Extensions written for A1111 pass ``_js`` (sd-dynamic-prompts' Wildcards manager tab does), which gradio 6 refuses
with a ``TypeError``.

Gradio's listeners are plain functions on each component class, with no ``**kwargs`` to catch the old name, and
an extension calls them on components it creates itself, so nothing short of the listener attribute can translate
the keyword. (A method named by a dotted path is also called as a method, as gradio 3 did: ``page_function``.)
``gradio3_keywords()`` therefore wraps them **only while an extension's UI code runs** (its
``ui()``, its ``before/after_component`` hooks, its ``on_ui_tabs`` callback; ``app.ui.extension_scripts`` and
``script_layout.call_ui`` enter it): each wrapper renames ``_js`` to ``js`` and calls gradio's own function
unchanged. On leaving, the original functions are put back, so Atelier's own UI and gradio itself never see the
wrappers. Entering it again while inside (a ``ui()`` called from a hook) just nests. UI building runs in one
thread at start-up; a lock keeps two builds (tests) from interleaving the swap.

Gradio 3 also puts a ``visible=False`` component in the page (hidden with ``display: none``); gradio 6 leaves it
out unless ``visible="hidden"``. Extensions use such hidden textboxes and buttons as the message channel between
their JavaScript and Python (sd-dynamic-prompts' Wildcards manager: its script writes a JSON message into a
hidden textbox and clicks a hidden button; the answer comes back in another hidden textbox).
Likewise gradio 6 adds a closed accordion's content to the page only when it is first opened, where gradio 3
had it (hidden) from the start; extension scripts look up elements in there (sd-dynamic-prompts clicks its
"Refresh wildcards" button, inside the closed "Collection actions" accordion, to load its tree).
``render_like_gradio3(container)`` turns every block the extension created invisible under ``container`` into
``"hidden"`` (still invisible, now in the page), through the block's public ``visible`` attribute, before the
page config is built, and marks its closed accordions with the class ``atelier-render-closed``: ``atelier.js``
opens and closes those once while the page starts (out of sight, with the tabs), so their content is there.
"""

from __future__ import annotations

import functools
import inspect
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.RLock()
_depth = 0
_saved: list[tuple[type, str, Any]] = []


_METHOD = re.compile(r"\s*[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)+\s*")


def page_function(js: Any) -> Any:
    """Gradio 3's ``_js`` value as gradio 6's ``js``. Gradio 3 called it as ``(<js>)(...args)``, so a method named
    by a dotted path (``SDDP.onSaveFileClick``) ran with its object as ``this``; gradio 6 calls the function it
    evaluates without one. A dotted path becomes an arrow function calling it as a method (the same call gradio 3
    made); anything else (a function name, a function literal) is passed on as written."""
    if isinstance(js, str) and _METHOD.fullmatch(js):
        return f"(...args) => {js.strip()}(...args)"
    return js


def _with_old_keywords(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def listener(*args: Any, **kwargs: Any) -> Any:
        if "_js" in kwargs:
            old = kwargs.pop("_js")
            if kwargs.get("js") is None:
                kwargs["js"] = page_function(old)
        return fn(*args, **kwargs)

    listener.__atelier_gradio3__ = True  # type: ignore[attr-defined]
    return listener


def _takes_js(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "js" in params and "_js" not in params


def _listeners() -> Iterator[tuple[type, str, Any]]:
    """(class, name, function) of every gradio event listener that takes ``js``: each component's and layout's
    events, and ``Blocks.load`` / ``unload``."""
    import gradio as gr
    from gradio.blocks import Block

    seen: set[type] = set()
    stack: list[type] = [Block]
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        stack.extend(cls.__subclasses__())
        for event in getattr(cls, "EVENTS", ()) or ():
            name = event if isinstance(event, str) else getattr(event, "event_name", None)
            fn = cls.__dict__.get(name) if name else None
            if fn is not None and _takes_js(fn):
                yield cls, name, fn
    for name in ("load", "unload"):
        fn = gr.Blocks.__dict__.get(name)
        if fn is not None and _takes_js(fn):
            yield gr.Blocks, name, fn


@contextmanager
def gradio3_keywords() -> Iterator[None]:
    """While inside: gradio's event listeners also take gradio 3's ``_js=`` (as ``js=``)."""
    global _depth
    with _lock:
        if _depth == 0:
            for cls, name, fn in list(_listeners()):
                setattr(cls, name, _with_old_keywords(fn))
                _saved.append((cls, name, fn))
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
            if _depth == 0:
                while _saved:
                    cls, name, fn = _saved.pop()
                    setattr(cls, name, fn)


def render_like_gradio3(container: Any) -> int:
    """Every block below ``container`` (not ``container`` itself: Atelier's own group, shown and hidden by
    Atelier) created with ``visible=False`` becomes ``visible="hidden"``, and every closed accordion gets the class
    ``atelier-render-closed`` (see above), so the page holds what gradio 3 rendered. Returns how many blocks were
    changed."""
    import gradio as gr

    changed = 0
    stack = list(getattr(container, "children", None) or [])
    while stack:
        block = stack.pop()
        if getattr(block, "visible", True) is False:
            block.visible = "hidden"
            changed += 1
        if isinstance(block, gr.Accordion) and not block.open:
            classes = list(block.elem_classes or [])
            if "atelier-render-closed" not in classes:
                block.elem_classes = [*classes, "atelier-render-closed"]
                changed += 1
        stack.extend(getattr(block, "children", None) or [])
    return changed
