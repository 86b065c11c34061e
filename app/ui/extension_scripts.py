"""A1111 extension scripts in the generation tabs: their ``ui()`` controls, ``before_component`` /
``after_component``, and the ``on_ui_tabs`` tabs.

- Always-on scripts (``show`` returned ``AlwaysVisible``): each one's ``ui(is_img2img)`` is rendered in a
  ``gr.Group`` below the generation fields and above the Script dropdown (A1111's ``setup_ui`` order); their
  values go to ``params.extras["alwayson_scripts"][<title>]`` on Generate.
- Selectable scripts: each one's ``ui()`` in a hidden group under the Script dropdown, shown while it is the
  chosen script (``app.ui.scripts.build_script_args``); its values go to ``params.script.args``.
- The positions (``args_from``/``args_to``) are given while rendering, by ``compat.script_layout.LayoutBuilder``;
  the compat layer turns a job's values into A1111's positional ``script_args`` (defaults where none were sent).
- ``before_component``/``after_component``: every field component of a generation tab (the A1111 elem_ids:
  ``txt2img_prompt``, ``txt2img_width``...) is announced to that tab's scripts and to the
  ``script_callbacks.on_before_component``/``on_after_component`` callbacks (A1111 announces every component it
  creates; gradio 6 offers no creation hook and we do not patch gradio, so ours are the tab fields and the
  toprow buttons, built before the scripts' ``ui()`` as in A1111: ADetailer ``.click()``s the Generate button it
  kept). As in A1111, a ``before_component`` hook gets the component object before its ``__init__`` ran
  (``common.announced`` creates it in two steps), with the constructor's keywords (``elem_id``, ``label``,
  ``value``...); the hook can check its class and the keywords, and lay out its own controls in the current layout
  position.
Extension UI code (``ui()``, the hooks, ``on_ui_tabs``) runs inside ``compat.gradio3.gradio3_keywords()``, so
gradio 3's ``_js=`` keyword on event listeners works as gradio 6's ``js=``; invisible blocks an extension creates
are kept in the page (``visible="hidden"``) and its closed accordions' content is rendered once at start, as
gradio 3 did (``render_like_gradio3``).
A failing ``ui()`` or hook is recorded on its extension (Extensions tab, log); the tab is still built.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from app.plugins import registry_for
from app.plugins.compat.gradio3 import gradio3_keywords, render_like_gradio3
from app.plugins.compat.script_layout import LayoutBuilder, call_ui, set_layout, tab_scripts
from app.ui.common import TabForm, error_html
from app.ui.context import UiContext

log = logging.getLogger(__name__)


def _registry(ctx: UiContext) -> Any:
    return registry_for(ctx.runtime)


def render_ui(script: Any, is_img2img: bool) -> tuple[list[Any], str]:
    """``script.ui()`` in the current layout; controls that are not gradio components make it an error (their
    values could not be collected)."""
    controls, error = call_ui(script, is_img2img)
    bad = [c for c in controls if not isinstance(c, gr.components.Component)]
    if bad:
        controls, error = [], f"ui() returned {type(bad[0]).__name__}, not a gradio component"
    if error:
        gr.HTML(error_html(f"{script.title()}: {error}"))
    return controls, error


# -- before_component / after_component -----------------------------------------------------------------------
class ComponentHooks:
    """Announces a tab's components to its A1111 scripts and the component callbacks."""

    def __init__(self, registry: Any, is_img2img: bool) -> None:
        self.registry = registry
        self.scripts = [(e, s) for e, s in getattr(registry, "a1111_scripts", []) if bool(s.is_img2img) == is_img2img]

    def __bool__(self) -> bool:
        return bool(self.scripts or self.registry.callbacks.get("before_component")
                    or self.registry.callbacks.get("after_component"))

    def _safe(self, extension: str, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            with gradio3_keywords():
                fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - an extension's hook must not break the page
            message = f"{what} failed: {type(exc).__name__}: {exc}"
            info = self.registry.extension(extension)
            if info is None or message not in info.errors:
                self.registry.note_error(extension, message)

    def _announce(self, when: str, component: Any, kwargs: dict[str, Any]) -> None:
        from app.plugins.compat.scripts import OnComponent

        elem_id = kwargs.get("elem_id")
        for extension, script in self.scripts:
            name = type(script).__name__
            self._safe(extension, f"{name}.{when}_component", getattr(script, f"{when}_component"), component, **kwargs)
            for wanted, callback in getattr(script, f"on_{when}_component_elem_id", None) or []:
                if wanted == elem_id:
                    self._safe(extension, f"{name}.on_{when}_component({wanted!r})", callback,
                               OnComponent(component=component))
        for cb in list(self.registry.callbacks.get(f"{when}_component", ())):
            self._safe(cb.extension, f"on_{when}_component callback", cb.fn, component, **kwargs)

    def before(self, component: Any, kwargs: dict[str, Any]) -> None:
        self._announce("before", component, kwargs)

    def after(self, component: Any, kwargs: dict[str, Any]) -> None:
        self._announce("after", component, kwargs)


def install_component_hooks(ctx: UiContext, tab: TabForm) -> None:
    """Give ``tab`` its hooks (``common.make_component`` calls them around each field it creates)."""
    hooks = ComponentHooks(_registry(ctx), tab.tab == "img2img")
    if hooks:
        tab.extra["component_hooks"] = hooks


# -- script controls ------------------------------------------------------------------------------------------
def build_alwayson_scripts(ctx: UiContext, tab: TabForm) -> None:
    """The always-on scripts' ``ui()``, each in its own group, in load order; starts the tab's layout."""
    registry = _registry(ctx)
    is_img2img = tab.tab == "img2img"
    alwayson, selectable = tab_scripts(registry, is_img2img)
    builder = LayoutBuilder(is_img2img)
    tab.extra["script_layout"] = builder
    tab.extra["extension_selectable"] = selectable
    inputs: list[Any] = tab.extra.setdefault("script_inputs", [])
    spans: dict[str, tuple[int, int]] = tab.extra.setdefault("alwayson_spans", {})
    if not alwayson:
        return
    with gr.Column(elem_id=f"{tab.tab}_script_container"):
        for extension, script in alwayson:
            with gr.Group(elem_classes=["atelier-extension-script"]) as group:
                controls, error = render_ui(script, is_img2img)
            render_like_gradio3(group)
            script.group = group
            builder.add(script, extension, controls, error)
            spans[str(script.title())] = (len(inputs), len(inputs) + len(controls))
            inputs += controls


def build_selectable_scripts(ctx: UiContext, tab: TabForm, selected: str, groups: dict[str, Any],
                             spans: dict[str, tuple[int, int]]) -> None:
    """The extensions' selectable scripts: one hidden group each under the Script dropdown (shown while chosen);
    finishes the tab's layout."""
    builder: LayoutBuilder | None = tab.extra.get("script_layout")
    if builder is None:  # build_alwayson_scripts did not run for this tab: no extension scripts here
        return
    inputs: list[Any] = tab.extra.setdefault("script_inputs", [])
    for extension, script in tab.extra.get("extension_selectable", []):
        title = str(script.title())
        if title in groups:  # two scripts of one title: the first keeps it (A1111's title map does the same)
            builder.add(script, extension, [], f"another script is titled {title!r}")
            continue
        with gr.Group(visible=title == selected, elem_classes=["atelier-extension-script"]) as group:
            controls, error = render_ui(script, tab.tab == "img2img")
        render_like_gradio3(group)
        script.group = group
        builder.add(script, extension, controls, error)
        groups[title] = group
        spans[title] = (len(inputs), len(inputs) + len(controls))
        inputs += controls
    set_layout(_registry(ctx), builder.layout)


def alwayson_values(tab: TabForm, values: Sequence[Any], plain: Callable[[Any], Any]) -> dict[str, list[Any]]:
    """title → the always-on script's control values (``alwayson_scripts`` shape)."""
    return {title: [plain(v) for v in values[a:b]] for title, (a, b) in tab.extra.get("alwayson_spans", {}).items()}


# -- on_ui_tabs ------------------------------------------------------------------------------------------------
def extension_tabs(ctx: UiContext) -> list[tuple[Any, str, str]]:
    """(Blocks, label, id) of each tab the ``on_ui_tabs`` callbacks return (A1111 calls them before its main
    Blocks and renders each one as a tab). A failing callback or a malformed entry is recorded on its extension."""
    registry = _registry(ctx)
    tabs: list[tuple[Any, str, str]] = []
    for cb in list(registry.callbacks.get("ui_tabs", ())):
        try:
            with gradio3_keywords():  # its event listeners may pass gradio 3's `_js=`
                result = cb.fn() or []
        except Exception as exc:  # noqa: BLE001
            registry.note_error(cb.extension, f"on_ui_tabs callback failed: {type(exc).__name__}: {exc}")
            continue
        for item in result:
            if not isinstance(item, (tuple, list)) or len(item) < 2 or not isinstance(item[0], gr.Blocks):
                registry.note_error(cb.extension, f"on_ui_tabs: expected (gr.Blocks, title, elem_id), got {item!r:.80}")
                continue
            render_like_gradio3(item[0])  # invisible blocks stay in the page, as in gradio 3
            label = str(item[1])
            ident = str(item[2]) if len(item) > 2 and item[2] else label.lower().replace(" ", "_")
            tabs.append((item[0], label, ident))
    return tabs


def render_extension_tabs(ctx: UiContext, tabs: Sequence[tuple[Any, str, str]]) -> None:
    """Each extension tab as ``gr.Tab(label, id=ident, elem_id="tab_<ident>")`` (A1111's ids), in the current Tabs."""
    from app.ui import guarded

    for blocks, label, ident in tabs:
        with gr.Tab(label, id=ident, elem_id=f"tab_{ident}"):
            guarded(label, blocks.render)
