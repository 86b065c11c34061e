"""The Extra Networks panel (A1111's 🎴 under the prompt, spec §8) of txt2img and img2img.

The 🎴 button `<tab>_extra_networks` shows the panel: tabs `<tab>_extra_tabs` (Textual Inversion, Hypernetworks,
Checkpoints, Lora; tab ids `<tab>_<kind>`) of cards (`.card` with `.name`, `.actions`, A1111's markup classes) built
from the catalog (`app.models.catalog.cards`, no torch), with search, sort (name, date, path), a subfolder filter and
refresh. The cards' clicks are handled in the page (`static/extra_networks.js`): a LoRA or textual-inversion card
adds its text to the prompt last focused (a second click removes it); the card's ✎ and a checkpoint card go through
the hidden `<tab>_extra_action` box to the server (edit the user metadata, select the checkpoint). Previews are served
by `/sd_extra_networks/thumb` (`app.web.previews`), only from the model folders.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

import gradio as gr

from app.models.catalog import cards as C
from app.ui.common import TabForm, error_html, tool_button
from app.ui.context import UiContext

log = logging.getLogger(__name__)

THUMB_ROUTE = "sd_extra_networks/thumb"


def preview_url(ctx: UiContext, path: str, mtime: float) -> str:
    """The thumbnail route's address for a preview (under `--subpath` when set; mtime busts the browser cache)."""
    subpath = (getattr(getattr(ctx.runtime, "args", None), "subpath", None) or "").strip("/")
    base = f"/{subpath}/" if subpath else "/"
    return f"{base}{THUMB_ROUTE}?filename={quote(path)}&mtime={int(mtime)}"


def note(text: str) -> str:
    return f'<div class="atelier-info"><p class="atelier-comment">{html.escape(text)}</p></div>'


def tab_cards(ctx: UiContext, kind: str) -> list[C.NetworkCard]:
    catalog = ctx.catalog
    if catalog is None:
        return []
    multiplier = ctx.settings.get("extra_networks_default_multiplier", 1.0)
    return C.list_cards(catalog, kind, default_multiplier=float(1.0 if multiplier is None else multiplier),
                        lora_name_preference=str(ctx.settings.get("lora_preferred_name", "Alias from file")))


def card_html(ctx: UiContext, tab: str, card: C.NetworkCard) -> str:
    attrs = {"data-kind": card.kind, "data-name": card.name, "data-filename": card.filename,
             "data-prompt": card.prompt, "data-negative": card.negative, "data-checkpoint": card.checkpoint,
             "data-tab": tab}
    attr_text = " ".join(f'{k}="{html.escape(v, quote=True)}"' for k, v in attrs.items())
    preview = ""
    if card.preview:
        mtime = Path(card.preview).stat().st_mtime if Path(card.preview).exists() else 0
        preview = (f'<img class="preview" loading="lazy" alt="" '
                   f'src="{html.escape(preview_url(ctx, card.preview, mtime), quote=True)}">')
    description = html.escape(card.description)
    return (f'<div class="card" {attr_text} title="{html.escape(card.filename, quote=True)}">{preview}'
            f'<div class="button-row"><div class="metadata-button edit-button card-button" data-action="edit" '
            f'title="Edit metadata">✎</div></div>'
            f'<div class="actions"><div class="additional"><span class="search_terms" hidden>'
            f'{html.escape(card.search_text)}</span></div>'
            f'<span class="name">{html.escape(card.name)}</span>'
            f'<span class="description">{description}</span></div></div>')


def render(ctx: UiContext, tab: str, kind: str, search: str, sort: str, descending: bool, folder: str) -> str:
    """The HTML of one tab's cards after search, folder filter and sort."""
    try:
        all_cards = tab_cards(ctx, kind)
        shown = C.sort_cards(C.filter_cards(all_cards, search or "", folder or C.ALL_FOLDERS), sort or "name",
                             bool(descending))
    except Exception as exc:  # noqa: BLE001 - a broken folder must not break the page
        log.exception("could not list %s", kind)
        return error_html(f"could not list {kind}: {exc}")
    if kind == "hypernetworks":
        empty = "Hypernetworks are not supported; nothing to show."
    else:
        empty = "Nothing here. Add some content to the model folders." if not all_cards else "No match."
    body = "".join(card_html(ctx, tab, c) for c in shown) or f'<div class="nocards">{html.escape(empty)}</div>'
    return f'<div class="extra-network-cards" id="{tab}_{kind}_cards">{body}</div>'


def folder_choices(ctx: UiContext) -> list[str]:
    every: list[C.NetworkCard] = []
    for kind, _title in C.KINDS:
        try:
            every += tab_cards(ctx, kind)
        except Exception:  # noqa: BLE001
            log.exception("could not list %s", kind)
    return C.subfolders(every)


def refresh_catalog(ctx: UiContext) -> None:
    catalog = ctx.catalog
    if catalog is not None:
        for name in ("refresh_loras", "refresh_embeddings", "refresh_checkpoints"):
            getattr(catalog, name)()


def find_card(ctx: UiContext, kind: str, filename: str) -> C.NetworkCard:
    """The card of a catalog file (the editor writes only next to files the catalog lists)."""
    for card in tab_cards(ctx, kind):
        if card.filename == filename:
            return card
    raise ValueError(f"{kind}: {filename!r} is not in the model list (refresh the list)")


def build_button(tab: TabForm) -> None:
    """The 🎴 tool button (in the top row's tools)."""
    tab.extra["extra_networks_button"] = tool_button("🎴", f"{tab.tab}_extra_networks", "Show/hide extra networks")


def build_panel(ctx: UiContext, tab: TabForm) -> None:
    """The hidden panel under the top row; `wire` connects it once the output panel exists."""
    t = tab.tab
    x: dict[str, Any] = {}
    with gr.Column(visible=False, elem_id=f"{t}_extra_networks_panel", elem_classes=["extra-networks"]) as panel:
        with gr.Row(elem_id=f"{t}_extra_controls", equal_height=True):
            x["search"] = gr.Textbox(placeholder="Search...", show_label=False, container=False, scale=4,
                                     elem_id=f"{t}_extra_search", elem_classes=["search"])
            x["sort"] = gr.Dropdown(list(C.SORT_KEYS), value="name", label="Sort by", elem_id=f"{t}_extra_sort",
                                    min_width=90, scale=1)
            x["descending"] = gr.Checkbox(False, label="Descending", elem_id=f"{t}_extra_sort_dir", min_width=90)
            x["folder"] = gr.Dropdown([C.ALL_FOLDERS], value=C.ALL_FOLDERS, label="Folder", min_width=120, scale=1,
                                      elem_id=f"{t}_extra_folder")
            x["refresh"] = tool_button("🔄", f"{t}_extra_refresh", "Refresh the lists")
        with gr.Tabs(elem_id=f"{t}_extra_tabs"):
            for kind, title in C.KINDS:
                with gr.Tab(title, id=f"{t}_{kind}", elem_id=f"{t}_{kind}"):
                    x[f"html_{kind}"] = gr.HTML("", elem_id=f"{t}_{kind}_cards_html", min_height=0)
        x["message"] = gr.HTML("", elem_id=f"{t}_extra_message", min_height=0)
        with gr.Row(elem_classes=["atelier-hidden"]):
            x["action"] = gr.Textbox("", elem_id=f"{t}_extra_action", show_label=False)
            x["action_button"] = gr.Button("action", elem_id=f"{t}_extra_action_button")
        with gr.Group(visible=False, elem_id=f"{t}_extra_edit") as editor:
            x["edit_title"] = gr.HTML("", elem_id=f"{t}_extra_edit_title", min_height=0)
            x["edit_description"] = gr.Textbox(label="Description", lines=2, elem_id=f"{t}_extra_edit_description")
            with gr.Row():
                x["edit_activation"] = gr.Textbox(label="Activation text", elem_id=f"{t}_extra_edit_activation")
                x["edit_weight"] = gr.Number(0.0, label="Preferred weight (0: default)", step=0.05,
                                             elem_id=f"{t}_extra_edit_weight")
            x["edit_negative"] = gr.Textbox(label="Negative text", elem_id=f"{t}_extra_edit_negative")
            x["edit_notes"] = gr.Textbox(label="Notes", lines=3, elem_id=f"{t}_extra_edit_notes")
            with gr.Row():
                x["edit_save"] = gr.Button("Save", variant="primary", elem_id=f"{t}_extra_edit_save")
                x["edit_preview"] = gr.Button("Replace preview", elem_id=f"{t}_extra_edit_preview")
                x["edit_close"] = gr.Button("Close", elem_id=f"{t}_extra_edit_close")
        x["edit_target"] = gr.State(None)
        x["editor"] = editor
    x["panel"] = panel
    x["shown"] = gr.State(False)
    tab.extra["extra_networks"] = x


def wire(ctx: UiContext, tab: TabForm) -> None:
    """Connect the panel: show/hide, re-render on search/sort/folder/refresh, the card actions and the editor."""
    t, x = tab.tab, tab.extra["extra_networks"]
    htmls = [x[f"html_{kind}"] for kind, _ in C.KINDS]
    controls = [x["search"], x["sort"], x["descending"], x["folder"]]

    def all_html(search: str, sort: str, descending: bool, folder: str) -> list[str]:
        return [render(ctx, t, kind, search, sort, descending, folder) for kind, _ in C.KINDS]

    def toggle(shown: bool, *values: Any) -> list[Any]:
        now = not shown
        rendered = all_html(*values) if now else [gr.skip()] * len(htmls)
        folders = gr.Dropdown(choices=folder_choices(ctx)) if now else gr.skip()
        return [now, gr.Column(visible=now), folders, *rendered]

    tab.extra["extra_networks_button"].click(toggle, [x["shown"], *controls],
                                             [x["shown"], x["panel"], x["folder"], *htmls], queue=False)
    for control in controls:
        control.change(all_html, controls, htmls, queue=False, show_progress="hidden")

    def refresh(*values: Any) -> list[Any]:
        refresh_catalog(ctx)
        return [gr.Dropdown(choices=folder_choices(ctx)), *all_html(*values)]

    x["refresh"].click(refresh, controls, [x["folder"], *htmls])

    editor_fields = [x["edit_description"], x["edit_activation"], x["edit_weight"], x["edit_negative"],
                     x["edit_notes"]]

    def action(raw: str) -> list[Any]:
        """`{"action": "edit"|"select", "kind", "filename"}` from a card's click."""
        skip_editor = [gr.skip()] * (3 + len(editor_fields))
        try:
            data = json.loads(raw or "{}")
            card = find_card(ctx, str(data.get("kind", "")), str(data.get("filename", "")))
        except (ValueError, TypeError) as exc:
            return [error_html(str(exc)), *skip_editor]
        if data.get("action") == "select":
            if card.kind != "checkpoints":
                return [error_html("only a checkpoint card selects a model"), *skip_editor]
            try:
                ctx.settings.set("sd_model_checkpoint", card.checkpoint)
            except Exception as exc:  # noqa: BLE001 - a failed load rolls the setting back; say why
                return [error_html(f"could not select {card.checkpoint}: {exc}"), *skip_editor]
            return [note(f"Checkpoint: {card.checkpoint}"), *skip_editor]
        meta = card.user_metadata
        values = [str(meta.get(k) or "") for k in ("description", "activation text")]
        try:
            weight = float(meta.get("preferred weight") or 0.0)
        except (TypeError, ValueError):
            weight = 0.0
        title = f"<h3>{html.escape(card.name)}</h3><p>{html.escape(card.filename)}</p>"
        return ["", {"kind": card.kind, "filename": card.filename}, gr.Group(visible=True), title, *values, weight,
                str(meta.get("negative text") or ""), str(meta.get("notes") or "")]

    # `build_blocks` refreshes the settings-bound controls after it (a checkpoint card changes the top row's model)
    x["action_event"] = x["action_button"].click(
        action, x["action"], [x["message"], x["edit_target"], x["editor"], x["edit_title"], *editor_fields],
        queue=False)

    def save(target: dict | None, description: str, activation: str, weight: Any, negative: str, notes: str,
             *values: Any) -> list[Any]:
        if not target:
            return [error_html("no network is being edited"), *[gr.skip()] * len(htmls)]
        try:
            card = find_card(ctx, target["kind"], target["filename"])
            C.save_user_metadata(card.filename, {"description": description, "activation text": activation,
                                                 "preferred weight": weight, "negative text": negative,
                                                 "notes": notes})
        except (OSError, ValueError) as exc:
            return [error_html(f"could not save the metadata: {exc}"), *[gr.skip()] * len(htmls)]
        return [note(f"Saved {C.metadata_path(card.filename)}"), *all_html(*values)]

    x["edit_save"].click(save, [x["edit_target"], *editor_fields, *controls], [x["message"], *htmls], queue=False)

    def replace_preview(target: dict | None, state: dict, index: int, *values: Any) -> list[Any]:
        from app.ui.paste import selected_image

        skip = [gr.skip()] * len(htmls)
        if not target:
            return [error_html("no network is being edited"), *skip]
        image, _info = selected_image(state, index)
        if image is None:
            return [error_html("generate an image first: the selected result becomes the preview"), *skip]
        try:
            card = find_card(ctx, target["kind"], target["filename"])
            path = C.save_preview(card.filename, _png_bytes(image))
        except (OSError, ValueError) as exc:
            return [error_html(f"could not save the preview: {exc}"), *skip]
        return [note(f"Preview saved: {path}"), *all_html(*values)]

    x["edit_preview"].click(replace_preview, [x["edit_target"], tab.extra["result"], tab.extra["selected"],
                                              *controls], [x["message"], *htmls], queue=False)
    x["edit_close"].click(lambda: (None, gr.Group(visible=False)), None, [x["edit_target"], x["editor"]],
                          queue=False)


def _png_bytes(image: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
