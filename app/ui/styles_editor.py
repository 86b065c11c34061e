"""The styles editor of txt2img and img2img (A1111's 🖌️ "Edit styles" dialog, spec §9.6).

`<tab>_styles_edit_button` (✏️ next to the styles dropdown) opens `<tab>_styles_dialog`: pick a style or type a new
name (`<tab>_edit_style_name`), edit its prompt and negative prompt, then Save (create or replace), Delete, "Copy from
prompt" (the current prompts into the editor) or "Apply to prompt" (A1111's apply: the edited style text goes into
the prompts, `{prompt}` standing for the current prompt). Saves go through `StyleDatabase` (styles.csv written
atomically, the file's other rows and columns kept). 🔄 (`refresh_<tab>_styles`) re-reads styles.csv from disk (an
edit made outside the page). After a save, a delete or a refresh, and on page load, `wire_tabs` puts the current list
into the styles dropdowns and editor lists of BOTH txt2img and img2img (a style made on one tab is at once pickable on
the other, as A1111's refresh does), keeping each tab's selection where the style still exists.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from app.prompts.styles import merge_prompts
from app.ui.common import TabForm, error_html, tool_button
from app.ui.context import UiContext

log = logging.getLogger(__name__)


def build_button(tab: TabForm) -> None:
    tab.extra["styles_edit_button"] = tool_button("✏️", f"{tab.tab}_styles_edit_button", "Edit styles")


def build_dialog(ctx: UiContext, tab: TabForm) -> None:
    t = tab.tab
    x: dict[str, Any] = {}
    with gr.Group(visible=False, elem_id=f"{t}_styles_dialog") as dialog:
        x["name"] = gr.Dropdown(ctx.style_names(), value=None, label="Style", allow_custom_value=True,
                                elem_id=f"{t}_edit_style_name", info="Pick a style, or type a new name")
        x["prompt"] = gr.Textbox(label="Prompt", lines=2, elem_id=f"{t}_edit_style_prompt",
                                 info="{prompt} stands for the prompt the style is applied to")
        x["negative"] = gr.Textbox(label="Negative prompt", lines=2, elem_id=f"{t}_edit_style_neg_prompt")
        with gr.Row():
            x["copy"] = gr.Button("Copy from prompt", elem_id=f"{t}_edit_style_copy", size="sm")
            x["apply"] = gr.Button("Apply to prompt", elem_id=f"{t}_edit_style_apply", size="sm")
            x["save"] = gr.Button("Save", variant="primary", elem_id=f"{t}_edit_style_save", size="sm")
            x["delete"] = gr.Button("Delete", variant="stop", elem_id=f"{t}_edit_style_delete", size="sm")
            x["close"] = gr.Button("Close", elem_id=f"{t}_edit_style_close", size="sm")
            x["refresh"] = tool_button("🔄", f"refresh_{t}_styles", "Re-read styles.csv")
        x["message"] = gr.HTML("", elem_id=f"{t}_edit_style_message", min_height=0)
    x["dialog"] = dialog
    x["shown"] = gr.State(False)
    tab.extra["styles_editor"] = x


def _message(text: str) -> str:
    import html

    return f'<div class="atelier-info"><p class="atelier-comment">{html.escape(text)}</p></div>'


def wire(ctx: UiContext, tab: TabForm) -> None:
    c, x = tab.components, tab.extra["styles_editor"]

    def toggle(shown: bool) -> list[Any]:
        now = not shown
        return [now, gr.Group(visible=now), gr.Dropdown(choices=ctx.style_names()) if now else gr.skip()]

    tab.extra["styles_edit_button"].click(toggle, x["shown"], [x["shown"], x["dialog"], x["name"]], queue=False)
    x["close"].click(lambda: (False, gr.Group(visible=False)), None, [x["shown"], x["dialog"]], queue=False)

    def pick(name: str | None) -> list[Any]:
        db = ctx.style_db
        style = db.get(name or "") if db is not None else None
        if style is None:
            return [gr.skip(), gr.skip()]  # a new name: keep what is typed
        return [style.prompt, style.negative_prompt]

    x["name"].change(pick, x["name"], [x["prompt"], x["negative"]], queue=False, show_progress="hidden")
    x["copy"].click(lambda p, n: (p, n), [c["prompt"], c["negative_prompt"]], [x["prompt"], x["negative"]],
                    queue=False)

    def apply(style_prompt: str, style_negative: str, prompt: str, negative: str) -> tuple[str, str]:
        return merge_prompts(style_prompt or "", prompt or ""), merge_prompts(style_negative or "", negative or "")

    x["apply"].click(apply, [x["prompt"], x["negative"], c["prompt"], c["negative_prompt"]],
                     [c["prompt"], c["negative_prompt"]], queue=False)

    def save(name: str | None, prompt: str, negative: str) -> list[Any]:
        db = ctx.style_db
        if db is None:
            return [error_html("styles.csv could not be read"), gr.skip()]
        try:
            style = db.add_style(name or "", prompt or "", negative or "")
        except (OSError, ValueError) as exc:
            return [error_html(f"could not save the style: {exc}"), gr.skip()]
        return [_message(f"Saved style {style.name!r}"), gr.Dropdown(choices=ctx.style_names(), value=style.name)]

    def delete(name: str | None) -> list[Any]:
        db = ctx.style_db
        if db is None:
            return [error_html("styles.csv could not be read"), gr.skip(), gr.skip(), gr.skip()]
        try:
            existed = db.delete_style(name or "")
        except (OSError, ValueError) as exc:
            return [error_html(f"could not delete the style: {exc}"), gr.skip(), gr.skip(), gr.skip()]
        if not existed:
            return [error_html(f"there is no style {name!r}"), gr.skip(), gr.skip(), gr.skip()]
        return [_message(f"Deleted style {name!r}"), gr.Dropdown(choices=ctx.style_names(), value=None), "", ""]

    def reread() -> str:
        count = ctx.reload_styles()
        if count is None:
            return error_html("styles.csv could not be read")
        return _message(f"Read {count} styles from styles.csv")

    # The events after which every tab's lists are brought up to date (`wire_tabs`).
    x["events"] = [
        x["save"].click(save, [x["name"], x["prompt"], x["negative"]], [x["message"], x["name"]], queue=False),
        x["delete"].click(delete, [x["name"]], [x["message"], x["name"], x["prompt"], x["negative"]], queue=False),
        x["refresh"].click(reread, None, [x["message"]], queue=False),
    ]


def current_lists(ctx: UiContext, selections: list[list[str] | None]) -> list[Any]:
    """Updates for the styles dropdowns (one selection per tab; styles that no longer exist are dropped), then for
    the editors' style lists (choices only: the typed or picked name stays)."""
    names = ctx.style_names()
    dropdowns = [gr.Dropdown(choices=names, value=[s for s in (sel or []) if s in names]) for sel in selections]
    return [*dropdowns, *[gr.Dropdown(choices=names) for _ in selections]]


def wire_tabs(ctx: UiContext, tabs: list[TabForm], demo: gr.Blocks) -> None:
    """Keep every tab's styles lists current: after any tab's save, delete or 🔄, and on page load (the page's
    built-in choices are those of server start)."""
    dropdowns = [tab.components["styles"] for tab in tabs]
    outputs = [*dropdowns, *[tab.extra["styles_editor"]["name"] for tab in tabs]]

    def update(*selections: list[str] | None) -> list[Any]:
        return current_lists(ctx, list(selections))

    for tab in tabs:
        for event in tab.extra["styles_editor"]["events"]:
            event.then(update, dropdowns, outputs, queue=False, show_progress="hidden")
    demo.load(update, dropdowns, outputs, queue=False, show_progress="hidden")
