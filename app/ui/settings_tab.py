"""Settings tab: one sub-tab per section of the settings registry, Apply settings (writes config.json through
`Settings.set_many`), Reload UI, and the Defaults view (ui-config.json changes). Also `setting_component`, used
by the quicksettings row."""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Sequence
from typing import Any

import gradio as gr

from app.ui.common import error_html
from app.ui.context import UiContext

log = logging.getLogger(__name__)


def setting_choices(ctx: UiContext, key: str) -> list[Any]:
    try:
        choices = list(ctx.settings.choices(key))
    except Exception:  # noqa: BLE001 - a broken provider must not break the page
        log.exception("could not list the choices of %s", key)
        choices = []
    if key == "sd_model_checkpoint" and not choices:
        choices = ctx.checkpoint_titles()
    return choices


def current_checkpoint(ctx: UiContext) -> str | None:
    """The checkpoint to show when the setting is empty: the loaded one, else the first (what a job would load)."""
    value = ctx.settings.get("sd_model_checkpoint")
    if value:
        return value
    manager = getattr(ctx.runtime, "_lazy", {}).get("manager")
    handle = getattr(manager, "current", None) if manager is not None else None
    if handle is not None and getattr(handle, "title", ""):
        return handle.title
    titles = ctx.checkpoint_titles()
    return titles[0] if titles else None


def setting_component(ctx: UiContext, key: str, elem_prefix: str = "setting_", **extra: Any) -> Any:
    """The gradio component of one setting (from its OptionInfo), showing the current value."""
    info = ctx.settings.info(key)
    value = ctx.settings.get(key, info.default)
    if key == "sd_model_checkpoint" and not value:
        value = current_checkpoint(ctx)
    locked = ctx.settings.locked_reason(key)  # a folder setting under --hide-ui-dir-config / open network access
    common = {"label": info.label, "elem_id": f"{elem_prefix}{key}",
              "interactive": not ctx.settings.frozen and locked is None, **extra}
    if info.comment or locked:
        common["info"] = f"locked: {locked}" if locked else info.comment
    comp = info.component
    if comp in ("dropdown", "radio"):
        choices = setting_choices(ctx, key)
        if info.multiselect:
            value = list(value or [])
            choices = list(dict.fromkeys([*choices, *value]))
        elif value is not None and value not in choices:
            choices = [*choices, value]
        if comp == "radio" and not info.multiselect:
            return gr.Radio(choices=choices, value=value, **common)
        return gr.Dropdown(choices=choices, value=value, multiselect=info.multiselect,
                           allow_custom_value=info.multiselect, **common)
    if comp == "slider":
        return gr.Slider(minimum=info.minimum, maximum=info.maximum, step=info.step or 1, value=value, **common)
    if comp == "checkbox":
        return gr.Checkbox(value=bool(value), **common)
    if comp == "number":
        return gr.Number(value=value, precision=0 if isinstance(info.default, int) else None, **common)
    if comp == "html":
        return gr.HTML(str(info.label), elem_id=common["elem_id"])
    if comp == "color":
        return gr.ColorPicker(value=value, **common)
    return gr.Textbox(value="" if value is None else str(value), **common)


def coerce_input(ctx: UiContext, key: str, value: Any) -> Any:
    """A value from a gradio component as the setting's type (numbers come back as floats)."""
    info = ctx.settings.info(key)
    t = info.value_type()
    if t is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if t is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if info.component == "textbox" and value == "" and info.default is None:
        return None
    return value


def apply_settings(ctx: UiContext, keys: Sequence[str], values: Sequence[Any]) -> str:
    """Apply the changed values; returns an HTML summary (or the error, nothing applied on a bad value)."""
    changes = {}
    for key, value in zip(keys, values, strict=True):
        value = coerce_input(ctx, key, value)
        if ctx.settings.get(key) != value:
            changes[key] = value
    if not changes:
        return "<p>Nothing changed.</p>"
    try:
        changed = ctx.settings.set_many(changes)
    except Exception as exc:  # noqa: BLE001 - bad values, frozen settings, a checkpoint that fails to load
        return error_html(str(exc))
    restart = [k for k in changed if ctx.settings.info(k).requires_restart]
    note = f" Restart needed for: {', '.join(restart)}." if restart else ""
    return f"<p>{len(changed)} settings changed: {html.escape(', '.join(changed))}.{note}</p>"


def ui_defaults_changes(ctx: UiContext, keys: Sequence[str], values: Sequence[Any]) -> dict[str, tuple[Any, Any]]:
    """ui-config key → (saved default, current field value) for the fields whose value differs."""
    saved = ctx.ui_config.data if ctx.ui_config is not None else {}
    return {k: (saved.get(k), v) for k, v in zip(keys, values, strict=True) if k in saved and saved.get(k) != v}


def build_settings(ctx: UiContext, ui_components: dict[str, Any], skip: Sequence[str] = ()) -> None:
    """`ui_components`: ui-config key → component of the generation tabs (for Defaults → View changes/Apply)."""
    keys: list[str] = []
    comps: list[Any] = []
    with gr.Row():
        apply = gr.Button("Apply settings", variant="primary", elem_id="settings_submit")
        reload_ui = gr.Button("Reload UI", elem_id="settings_restart_gradio")
    result = gr.HTML("", elem_id="settings_result")
    with gr.Tabs(elem_id="settings"):
        for section in ctx.settings.sections():
            options = [o for o in ctx.settings.options() if o.section.id == section.id and o.key not in skip]
            with gr.Tab(section.label, id=f"settings_{section.id}", elem_id=f"settings_{section.id}"):
                for info in options:
                    try:
                        comp = setting_component(ctx, info.key)
                    except Exception:  # noqa: BLE001 - one odd option must not break the tab
                        log.exception("could not build the setting %s", info.key)
                        continue
                    if info.component != "html":
                        keys.append(info.key)
                        comps.append(comp)
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

    apply.click(lambda *vals: apply_settings(ctx, keys, vals), comps, result)
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
