"""The A1111-style gradio web UI. `build_ui(runtime)` → `(gr.Blocks, mount kwargs)` for `app.server`.

Tabs (elem_id `tab_<id>` inside Tabs `tabs`): txt2img, img2img, Extras, PNG Info, Checkpoint Merger, (extension
tabs), Queue, Settings, Extensions, under the quicksettings row. Every generation builds `GenerationParams` and goes through `runtime.service.submit`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"


def static_text(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf8")


def boot_data(settings: Any = None, theme: str | None = None, extension_scripts: int = 0) -> dict[str, Any]:
    """What atelier.js starts from: the hover texts, `opts` (the settings, as A1111's extension JS expects) and
    `--theme` (atelier.js applies it in the page, as gradio's `?__theme=` would, so the UI root answers 200 instead of
    redirecting and health checks on `/` keep working), and how many extension scripts the page loads (with any,
    atelier.js renders every tab before `onUiLoaded`, as gradio 3.41 did)."""
    from app.ui.common import TOOLTIPS

    return {"tooltips": TOOLTIPS, "opts": dict(settings.data) if settings is not None else {}, "theme": theme,
            "extension_scripts": extension_scripts}


def mount_kwargs() -> dict[str, Any]:
    """Options for `gr.mount_gradio_app` (gradio 6 takes them at mount time, not in `gr.Blocks`): our css. atelier.js
    is not gradio's `head` (gradio adds that after `DOMContentLoaded`): it comes with the page (`page_source`)."""
    return {"css": static_text("atelier.css")}


def page_source(runtime: Any) -> Any:
    """The page additions `app.server` inserts into the UI's HTML: atelier.js with its boot data first, then every
    enabled extension's JavaScript and CSS in A1111's order (`app.ui.page_assets`), and their `file=` files."""
    from app.plugins import registry_for
    from app.ui.page_assets import PageSource

    theme = getattr(getattr(runtime, "args", None), "theme", None)
    settings = getattr(runtime, "settings", None)
    return PageSource(lambda: registry_for(runtime).extensions, runtime.paths.data_dir,
                      lambda: boot_data(settings, theme),
                      static_text("atelier.js") + "\n" + static_text("extra_networks.js"))


TAB_IDS = ("txt2img", "img2img", "extras", "pnginfo", "modelmerger", "settings", "extensions")


def start_tab(ctx: Any) -> str | None:
    """ui-config.json `webui/Tabs@tabs/selected`: the tab id shown first (null = txt2img)."""
    cfg = ctx.ui_config
    value = cfg.get_or_default("webui/Tabs@tabs/selected", None) if cfg is not None else None
    return value if value in TAB_IDS else None


def guarded(title: str, builder: Any, *args: Any, **kwargs: Any) -> Any:
    """Build a secondary tab; if it fails, the tab shows the error and the rest of the UI still works."""
    import gradio as gr

    from app.ui.common import error_html

    try:
        return builder(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - one broken tab must not stop the server
        log.exception("the %s tab could not be built", title)
        gr.HTML(error_html(f"The {title} tab could not be built: {type(exc).__name__}: {exc}"))
        return None


def build_blocks(runtime: Any) -> tuple[Any, Any]:
    """Build the Blocks; returns `(blocks, ui)` where `ui` (a `BuiltUi`) gives tests access to the components."""
    import gradio as gr

    from app.ui import styles_editor
    from app.ui.context import UiContext
    from app.ui.extension_scripts import extension_tabs, render_extension_tabs
    from app.ui.extensions_tab import build_extensions
    from app.ui.extras import build_extras
    from app.ui.family_fields import wire as wire_family_fields
    from app.ui.firstrun import build_first_run
    from app.ui.img2img import build_img2img
    from app.ui.merger import build_merger
    from app.ui.pnginfo import build_pnginfo
    from app.ui.queue_tab import build_queue
    from app.ui.quicksettings import build_quicksettings
    from app.ui.sendto import BuiltUi, wire_send_to
    from app.ui.settings_bind import SettingsBinding
    from app.ui.settings_tab import build_settings
    from app.ui.txt2img import build_txt2img

    ctx = UiContext(runtime)
    binding = SettingsBinding(ctx)
    ext_tabs = extension_tabs(ctx)  # on_ui_tabs: built before the page, rendered as tabs (A1111's order)
    with gr.Blocks(title="Atelier", analytics_enabled=False) as demo:
        binding.build_state()
        quick = build_quicksettings(ctx, binding)
        first_run, first_run_load = build_first_run(runtime)  # the "no model yet" guide, above the tabs
        with gr.Tabs(elem_id="tabs", selected=start_tab(ctx)) as tabs:
            with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img"):
                txt = build_txt2img(ctx)
            with gr.Tab("img2img", id="img2img", elem_id="tab_img2img"):
                img = build_img2img(ctx)
            with gr.Tab("Extras", id="extras", elem_id="tab_extras"):
                extras = guarded("Extras", build_extras, ctx)
            with gr.Tab("PNG Info", id="pnginfo", elem_id="tab_pnginfo"):
                pnginfo = guarded("PNG Info", build_pnginfo, ctx)
            with gr.Tab("Checkpoint Merger", id="modelmerger", elem_id="tab_modelmerger"):
                guarded("Checkpoint Merger", build_merger, ctx)
            render_extension_tabs(ctx, ext_tabs)
            with gr.Tab("Queue", id="queue", elem_id="tab_queue"):
                queue = guarded("Queue", build_queue, ctx)
            with gr.Tab("Settings", id="settings", elem_id="tab_settings"):
                ui_components = {t.config_keys[n]: c for t in (txt, img) for n, c in t.components.items()}
                guarded("Settings", build_settings, ctx, ui_components, binding, skip=list(quick))
            with gr.Tab("Extensions", id="extensions", elem_id="tab_extensions"):
                exts = guarded("Extensions", build_extensions, ctx)
        ui = BuiltUi(ctx=ctx, blocks=demo, tabs=tabs, quicksettings=quick, txt2img=txt, img2img=img,
                     extras=extras, pnginfo=pnginfo, extensions=exts, settings=binding)
        wire_send_to(ui)
        binding.wire(demo, tabs)  # every settings-bound control shows the store's value on load and tab switch
        # ... and after a checkpoint card's click (it sets sd_model_checkpoint): the top row shows it at once
        binding.refresh_after(*[t.extra["extra_networks"]["action_event"] for t in (txt, img)])
        # Distilled CFG Scale / Shift / CFG defaults follow the family of the checkpoint picked in the top row
        wire_family_fields(ctx, demo, tabs, quick.get("sd_model_checkpoint"), [txt, img])
        styles_editor.wire_tabs(ctx, [txt, img], demo)  # a style saved on one tab shows in both tabs' lists
        demo.load(first_run_load, None, first_run, queue=False, show_progress="hidden")
        if queue:
            demo.load(queue["load"], None, queue["outputs"], queue=False, show_progress="hidden")
        for tab in (txt, img):
            for fn, inputs, output in tab.extra.get("on_load", []):
                demo.load(fn, inputs, output, queue=False, show_progress="hidden")
    return demo, ui



def build_ui(runtime: Any) -> tuple[Any, dict[str, Any]]:
    """The gradio UI for `runtime` plus the mount options (css) and `page`: what `app.server` adds to the page."""
    demo, _ui = build_blocks(runtime)
    return demo, {**mount_kwargs(), "page": page_source(runtime)}
