"""Extensions tab: the folders in `extensions/` with enable/disable (stored in the `disabled_extensions`
setting; a restart applies it), their load errors, and install from a git URL (only when
`runtime.extension_install_allowed`); update checks and the A1111 extension index are in
`app.ui.extensions_index`."""

from __future__ import annotations

import html
import logging
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import gradio as gr

from app.ui.common import error_html
from app.ui.context import UiContext
from app.ui.extensions_index import build_available, build_updates

log = logging.getLogger(__name__)

INSTALL_DISABLED = ("Installing extensions is disabled because the server listens on the network. "
                    "Start with --enable-insecure-extension-access to allow it.")


def list_extensions(ctx: UiContext) -> list[dict[str, Any]]:
    """Every extension folder: name, path, enabled, error (from the runtime's loader when it reports one)."""
    folder = Path(ctx.paths.extensions_dir)
    disabled = set(ctx.settings.get("disabled_extensions") or [])
    errors = _load_errors(ctx)
    if not folder.is_dir():
        return []
    result = []
    for path in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        result.append({"name": path.name, "path": str(path), "enabled": path.name not in disabled,
                       "error": errors.get(path.name, "")})
    return result


def plugin_registry(ctx: UiContext) -> Any:
    """The runtime's extensions registry (`runtime.plugins`), or None."""
    return getattr(ctx.runtime, "plugins", None) or getattr(ctx.runtime, "extensions", None)


def _load_errors(ctx: UiContext) -> dict[str, str]:
    source = plugin_registry(ctx)
    errors: dict[str, str] = {}
    items = getattr(source, "extensions", source) if source is not None else []
    for item in items if isinstance(items, (list, tuple)) else []:
        name = getattr(item, "name", None)
        error = getattr(item, "error", None)
        if name and error:
            errors[str(name)] = str(error)
    return errors


def extensions_html(items: list[dict[str, Any]]) -> str:
    if not items:
        return "<p>No extensions installed (put them in the <code>extensions/</code> folder).</p>"
    rows = []
    for e in items:
        state = "enabled" if e["enabled"] else "disabled"
        err = f'<span class="atelier-error">{html.escape(e["error"])}</span>' if e["error"] else ""
        rows.append(f"<tr><td>{html.escape(e['name'])}</td><td>{state}</td>"
                    f"<td><code>{html.escape(e['path'])}</code></td><td>{err}</td></tr>")
    return ('<table id="extensions_table"><tr><th>Extension</th><th>State</th><th>Folder</th><th>Errors</th></tr>'
            + "".join(rows) + "</table>")


def install_from_url(ctx: UiContext, url: str, name: str) -> str:
    if not getattr(ctx.runtime, "extension_install_allowed", False):
        return error_html(INSTALL_DISABLED)
    url = (url or "").strip()
    if not re.match(r"^(https?://|git@|file://)\S+$", url):
        return error_html(f"not a git URL: {url!r}")
    name = (name or "").strip() or url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    if not re.match(r"^[\w.-]+$", name) or name in (".", ".."):
        return error_html(f"bad folder name for the extension: {name!r}")
    target = Path(ctx.paths.extensions_dir) / name
    if target.exists():
        return error_html(f"extension folder already exists: {target}")
    git = shutil.which("git")
    if git is None:
        return error_html("git is not installed")
    proc = subprocess.run([git, "clone", "--depth", "1", "--", url, str(target)], capture_output=True, text=True,
                          timeout=300, check=False)
    if proc.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        return error_html(f"git clone failed: {proc.stderr.strip()[-500:]}")
    return f"<p>Installed into {html.escape(str(target))}. Restart Atelier to load it.</p>"


def build_extensions(ctx: UiContext) -> dict[str, Any]:
    c: dict[str, Any] = {}
    items = list_extensions(ctx)
    with gr.Tabs(elem_id="tabs_extensions"):
        with gr.Tab("Installed", id="extensions_installed_tab", elem_id="extensions_installed_tab"):
            with gr.Row():
                c["apply"] = gr.Button("Apply (takes effect after a restart)", variant="primary", elem_id="extensions_apply")
                c["check"] = gr.Button("Refresh list", elem_id="extensions_refresh")
            names = [e["name"] for e in items]
            c["enabled"] = gr.CheckboxGroup(names, value=[e["name"] for e in items if e["enabled"]],
                                            label="Enabled extensions", elem_id="extensions_enabled")
            c["table"] = gr.HTML(extensions_html(items), elem_id="extensions_installed_html")
            from app.ui.extensions_report import extension_report_html

            c["report"] = gr.HTML(extension_report_html(plugin_registry(ctx)), elem_id="extensions_report")
            c["result"] = gr.HTML("", elem_id="extensions_result")
            c["updates"] = build_updates(ctx)
        with gr.Tab("Available", id="extensions_available_tab", elem_id="extensions_available_tab"):
            c["available"] = build_available(ctx, lambda url, name: install_from_url(ctx, url, name))
        with gr.Tab("Install from URL", id="extensions_install_tab", elem_id="extensions_install_tab"):
            allowed = bool(getattr(ctx.runtime, "extension_install_allowed", False))
            if not allowed:
                gr.HTML(error_html(INSTALL_DISABLED), elem_id="extensions_install_disabled")
            c["url"] = gr.Textbox(label="URL for extension's git repository", elem_id="install_url",
                                  interactive=allowed)
            c["dirname"] = gr.Textbox(label="Local directory name", placeholder="Leave empty for auto",
                                      elem_id="install_dirname", interactive=allowed)
            c["install"] = gr.Button("Install", elem_id="install_extension_button", interactive=allowed)
            c["install_result"] = gr.HTML("", elem_id="extension_install_result")

    def apply(enabled: list[str]) -> tuple[str, str]:
        all_names = [e["name"] for e in list_extensions(ctx)]
        disabled = [n for n in all_names if n not in (enabled or [])]
        keep = [n for n in (ctx.settings.get("disabled_extensions") or []) if n not in all_names]
        try:
            ctx.settings.set("disabled_extensions", keep + disabled)
        except Exception as exc:  # noqa: BLE001
            return error_html(str(exc)), gr.skip()
        return (f"<p>Saved: {len(disabled)} disabled. Restart Atelier to apply.</p>",
                extensions_html(list_extensions(ctx)))

    def refresh() -> tuple[Any, str]:
        items = list_extensions(ctx)
        return (gr.CheckboxGroup(choices=[e["name"] for e in items], value=[e["name"] for e in items if e["enabled"]]),
                extensions_html(items))

    c["apply"].click(apply, c["enabled"], [c["result"], c["table"]])
    c["check"].click(refresh, None, [c["enabled"], c["table"]])
    c["install"].click(lambda u, n: install_from_url(ctx, u, n), [c["url"], c["dirname"]], c["install_result"])
    return c
