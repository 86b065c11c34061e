"""Settings tab: a search box (`app.ui.settings_search`), one sub-tab per section of the settings registry, Apply
settings (writes the fields the user changed through `Settings.set_many`), Reload UI, and the Defaults view
(ui-config.json changes). The setting components are bound to the store by `app.ui.settings_bind`."""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import gradio as gr

from app.ui.common import error_html
from app.ui.context import UiContext
from app.ui.settings_bind import SettingsBinding, setting_component, user_edits
from app.ui.settings_search import SettingsSearch

log = logging.getLogger(__name__)


def apply_changes(ctx: UiContext, changes: Mapping[str, Any]) -> tuple[str, bool]:
    """Write `changes` (all or nothing on a bad value); returns an HTML summary and whether it succeeded."""
    if not changes:
        return "<p>Nothing changed.</p>", True
    try:
        changed = ctx.settings.set_many(dict(changes))
    except Exception as exc:  # noqa: BLE001 - bad values, frozen settings, a checkpoint that fails to load
        return error_html(str(exc)), False
    if not changed:
        return "<p>Nothing changed.</p>", True
    restart = [k for k in changed if ctx.settings.info(k).requires_restart]
    note = f" Restart needed for: {', '.join(restart)}." if restart else ""
    return f"<p>{len(changed)} settings changed: {html.escape(', '.join(changed))}.{note}</p>", True


def apply_edits(ctx: UiContext, keys: Sequence[str], values: Sequence[Any], shown: Mapping[str, Any] | None = None,
                live: Collection[str] = ()) -> tuple[str, bool]:
    """Apply the fields the user changed (see `user_edits`: values that differ from `shown`, what the page was last
    given); untouched fields and `live` ones (quicksettings, applied on their own) are never written. Returns an
    HTML summary (or the error, nothing applied on a bad value) and whether it succeeded."""
    edits = {k: v for k, v in user_edits(ctx, keys, values, shown).items() if k not in live}
    return apply_changes(ctx, edits)


def apply_settings(ctx: UiContext, keys: Sequence[str], values: Sequence[Any],
                   shown: Mapping[str, Any] | None = None, live: Collection[str] = ()) -> str:
    """`apply_edits` for callers that only want the summary."""
    return apply_edits(ctx, keys, values, shown, live)[0]


def ui_defaults_changes(ctx: UiContext, keys: Sequence[str], values: Sequence[Any]) -> dict[str, tuple[Any, Any]]:
    """ui-config key → (saved default, current field value) for the fields whose value differs."""
    saved = ctx.ui_config.data if ctx.ui_config is not None else {}
    return {k: (saved.get(k), v) for k, v in zip(keys, values, strict=True) if k in saved and saved.get(k) != v}


def build_settings(ctx: UiContext, ui_components: dict[str, Any], binding: SettingsBinding,
                   skip: Sequence[str] = ()) -> None:
    """The Settings tab. Its setting components join `binding` (refreshed from the store on page load, see
    `app.ui.settings_bind`); `skip` keys (the quicksettings row) are not repeated here. `ui_components`: ui-config
    key → component of the generation tabs (for Defaults → View changes/Apply)."""
    search = SettingsSearch(ctx)
    with gr.Row():
        apply = gr.Button("Apply settings", variant="primary", elem_id="settings_submit")
        reload_ui = gr.Button("Reload UI", elem_id="settings_restart_gradio")
    query = gr.Textbox(label="Search", placeholder="Search settings...", elem_id="settings_search", max_lines=1,
                       show_label=False, container=False)
    found = gr.HTML("", elem_id="settings_search_result")
    result = gr.HTML("", elem_id="settings_result")
    with gr.Tabs(elem_id="settings") as tabs:
        for section in ctx.settings.sections():
            options = [o for o in ctx.settings.options()
                       if o.section.id == section.id and o.key not in skip and not o.hidden]
            if not options:
                continue
            with gr.Tab(section.label, id=f"settings_{section.id}", elem_id=f"settings_{section.id}") as tab:
                search.add_section(section.id, tab)
                for info in options:
                    try:
                        comp = setting_component(ctx, info.key)
                    except Exception:  # noqa: BLE001 - one odd option must not break the tab
                        log.exception("could not build the setting %s", info.key)
                        continue
                    search.add_setting(info, comp)
                    if info.component != "html":
                        binding.add(info.key, comp)
        with gr.Tab("Defaults", id="settings_defaults", elem_id="settings_tab_defaults"):
            gr.Markdown("Saved defaults of the txt2img/img2img fields (ui-config.json). *View changes* compares "
                        "the fields' current values with the saved ones; *Apply* saves the current values.")
            with gr.Row():
                view = gr.Button("View changes", elem_id="ui_defaults_view")
                apply_defaults = gr.Button("Apply", elem_id="ui_defaults_apply")
            defaults_out = gr.HTML("", elem_id="ui_defaults_review")
        with gr.Tab("Sysinfo", id="settings_sysinfo", elem_id="settings_tab_sysinfo"):
            gr.Code(json.dumps({"config": str(ctx.settings.path), "ui_config": str(getattr(ctx.ui_config, "path", ""))},
                               indent=2), language="json")
    search.wire(query, found, tabs)

    binding.add_apply(apply, result, lambda values, shown: apply_edits(ctx, binding.keys, values, shown, binding.live))
    reload_ui.click(None, js="() => { setTimeout(() => location.reload(), 300); }")

    cfg_keys = list(ui_components)
    cfg_comps = [ui_components[k] for k in cfg_keys]

    def diff(*vals: Any) -> dict[str, tuple[Any, Any]]:
        return ui_defaults_changes(ctx, cfg_keys, vals)

    def view_changes(*vals: Any) -> str:
        changes = diff(*vals)
        if not changes:
            return "<p>No changes.</p>"
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(repr(a))}</td><td>{html.escape(repr(b))}</td></tr>"
                       for k, (a, b) in changes.items())
        return f"<table><tr><th>Path</th><th>Old value</th><th>New value</th></tr>{rows}</table>"

    def apply_ui_defaults(*vals: Any) -> str:
        changes = diff(*vals)
        if ctx.ui_config is None:
            return error_html("ui-config.json is not available")
        ctx.ui_config.update({k: new for k, (_, new) in changes.items()})
        return f"<p>{len(changes)} defaults written to {html.escape(str(ctx.ui_config.path))}.</p>"

    view.click(view_changes, cfg_comps, defaults_out)
    apply_defaults.click(apply_ui_defaults, cfg_comps, defaults_out)
