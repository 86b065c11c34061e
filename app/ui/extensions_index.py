"""Extensions tab parts: "Available" (A1111's extension index, read from the ``extensions_index_url`` setting or
a URL/file typed in the box, with search, hide-installed, sort and install by name) and "Check for updates" /
"Update" for installed git checkouts. Installing and updating follow A1111's rule: only when
``runtime.extension_install_allowed`` (loopback, or ``--enable-insecure-extension-access``)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import gradio as gr

from app.plugins.extension_index import (
    DEFAULT_INDEX_URL,
    IndexEntry,
    IndexError_,
    check_for_update,
    filter_index,
    installed_urls,
    read_index,
    update,
)
from app.ui.common import error_html
from app.ui.context import UiContext

SORTS = ("name", "stars", "added")


def _installed(ctx: UiContext) -> list[Any]:
    registry = getattr(ctx.runtime, "plugins", None)
    return list(getattr(registry, "extensions", []) or [])


def _allowed(ctx: UiContext) -> bool:
    return bool(getattr(ctx.runtime, "extension_install_allowed", False))


def index_html(rows: list[tuple[IndexEntry, bool]]) -> str:
    """The index as a table (name linked to its URL, description, tags, installed)."""
    if not rows:
        return "<p>No extension matches.</p>"
    out = []
    for entry, done in rows:
        url = html.escape(entry.url, quote=True)
        name = html.escape(entry.name)
        link = f'<a href="{url}" target="_blank" rel="noopener">{name}</a>' if entry.url.startswith("http") else name
        state = "installed" if done else ""
        out.append(f"<tr><td>{link}</td><td>{html.escape(entry.description)}</td>"
                   f"<td>{html.escape(', '.join(entry.tags))}</td><td>{state}</td></tr>")
    return ('<table id="available_extensions_table"><tr><th>Extension</th><th>Description</th><th>Tags</th>'
            "<th></th></tr>" + "".join(out) + "</table>")


def build_available(ctx: UiContext, install: Any) -> dict[str, Any]:
    """The "Available" tab; ``install(url, name)`` is the Install-from-URL action (returns HTML)."""
    c: dict[str, Any] = {}
    state: dict[str, list[IndexEntry]] = {"entries": []}
    with gr.Row():
        c["source"] = gr.Textbox(value=str(ctx.settings.get("extensions_index_url", DEFAULT_INDEX_URL) or ""),
                                 label="Extension index (URL or local file)", elem_id="extensions_index_url", scale=4)
        c["load"] = gr.Button("Load from:", variant="primary", elem_id="extensions_index_load", scale=1)
    with gr.Row():
        c["search"] = gr.Textbox(label="Search", elem_id="extensions_index_search", scale=3)
        c["hide"] = gr.Checkbox(value=True, label="Hide installed", elem_id="extensions_index_hide")
        c["sort"] = gr.Radio(list(SORTS), value="name", label="Order", elem_id="extensions_index_sort")
    c["table"] = gr.HTML("", elem_id="extensions_index_html")
    with gr.Row():
        c["choice"] = gr.Dropdown([], label="Extension to install", elem_id="extensions_index_choice",
                                  interactive=_allowed(ctx), scale=4)
        c["install"] = gr.Button("Install", elem_id="extensions_index_install", interactive=_allowed(ctx), scale=1)
    c["result"] = gr.HTML("", elem_id="extensions_index_result")

    def view(search: str, hide: bool, sort: str) -> tuple[str, Any]:
        rows = filter_index(state["entries"], installed_urls(_installed(ctx)), search or "", bool(hide), sort)
        return index_html(rows), gr.Dropdown(choices=[e.name for e, done in rows if not done], value=None)

    def load(source: str, search: str, hide: bool, sort: str) -> tuple[str, Any, str]:
        try:
            state["entries"] = read_index(source)
        except IndexError_ as exc:
            return gr.skip(), gr.skip(), error_html(str(exc))
        table, choices = view(search, hide, sort)
        return table, choices, f"<p>{len(state['entries'])} extensions in the index.</p>"

    def install_chosen(name: str) -> str:
        entry = next((e for e in state["entries"] if e.name == name), None)
        if entry is None:
            return error_html("choose an extension of the loaded index first")
        return install(entry.url, "")

    filters = [c["search"], c["hide"], c["sort"]]
    c["load"].click(load, [c["source"], *filters], [c["table"], c["choice"], c["result"]])
    for control in filters:
        control.change(view, filters, [c["table"], c["choice"]])
    c["install"].click(install_chosen, c["choice"], c["result"])
    return c


def build_updates(ctx: UiContext) -> dict[str, Any]:
    """"Check for updates" and "Update" buttons with a result table (inside the Installed tab)."""
    c: dict[str, Any] = {}
    with gr.Row():
        c["check"] = gr.Button("Check for updates", elem_id="extensions_check_updates", interactive=_allowed(ctx))
        c["update"] = gr.Button("Update the ones behind (restart to load)", elem_id="extensions_update",
                                interactive=_allowed(ctx))
    c["status"] = gr.HTML("", elem_id="extensions_update_status")

    def folders() -> list[Path]:
        root = Path(ctx.paths.extensions_dir)
        return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []

    def table(rows: list[tuple[str, str]]) -> str:
        body = "".join(f"<tr><td>{html.escape(n)}</td><td>{html.escape(s)}</td></tr>" for n, s in rows)
        return f'<table id="extensions_updates_table"><tr><th>Extension</th><th>Status</th></tr>{body}</table>'

    def check() -> str:
        if not _allowed(ctx):
            return error_html("checking for updates runs git: not allowed while listening on the network "
                              "without --enable-insecure-extension-access")
        return table([(p.name, check_for_update(p)) for p in folders()])

    def apply_updates() -> str:
        if not _allowed(ctx):
            return error_html("updating runs git: not allowed while listening on the network "
                              "without --enable-insecure-extension-access")
        rows = []
        for p in folders():
            status = check_for_update(p)
            rows.append((p.name, update(p) if status.startswith("behind") else status))
        return table(rows)

    c["check"].click(check, None, c["status"])
    c["update"].click(apply_updates, None, c["status"])
    return c
