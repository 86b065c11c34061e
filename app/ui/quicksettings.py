"""The quicksettings row (`#quicksettings`): the settings named in `quicksettings_list` (default checkpoint,
VAE, clip skip) with a 🔄 refresh button. A change the user makes calls `settings.set` (config.json is saved; a
checkpoint change loads through the job queue); a rejected value is reported and the control shows the old value
again. The controls are bound live to the store (`app.ui.settings_bind`): they show the current value on each page
load and tab switch, and only the user's own input (the `input` event, never a refresh) writes a setting."""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from app.ui.common import tool_button
from app.ui.context import UiContext
from app.ui.settings_bind import (
    SettingsBinding,
    coerce_input,
    current_checkpoint,
    setting_component,
    shown_choices,
    shown_value,
)

log = logging.getLogger(__name__)


def quicksettings_keys(ctx: UiContext) -> list[str]:
    keys = ctx.settings.get("quicksettings_list") or []
    if isinstance(keys, str):
        keys = [k.strip() for k in keys.split(",") if k.strip()]
    known = []
    for key in keys:
        try:
            ctx.settings.info(key)
        except KeyError:
            log.warning("quicksettings_list: unknown setting %r ignored", key)
            continue
        known.append(key)
    return known


def set_setting(ctx: UiContext, key: str, value: Any) -> Any:
    """Apply one quicksetting; on failure raise a gr.Error (toast) after showing the old value again."""
    value = coerce_input(ctx, key, value)
    old = ctx.settings.get(key)
    if key == "sd_model_checkpoint" and not old:
        old = current_checkpoint(ctx)  # what the row shows while the setting is empty
    if value == coerce_input(ctx, key, old):  # e.g. the same checkpoint with and without its [hash]
        return gr.skip()
    try:
        ctx.settings.set(key, value)
    except Exception as exc:  # noqa: BLE001 - validation error, frozen settings, a model that fails to load
        gr.Warning(f"{ctx.settings.info(key).label}: {exc}")
        return old
    return gr.skip()


def build_quicksettings(ctx: UiContext, binding: SettingsBinding) -> dict[str, Any]:
    """The row; each control joins `binding` as a live key. Returns key → component."""
    components: dict[str, Any] = {}
    with gr.Row(elem_id="quicksettings", equal_height=True):
        for key in quicksettings_keys(ctx):
            with gr.Column(scale=3 if key == "sd_model_checkpoint" else 2, min_width=200,
                           elem_classes=["quicksetting"]):
                comp = setting_component(ctx, key)
            components[key] = comp
            binding.add(key, comp, live=True)
            # The user's input only, never a refresh. A textbox listens to `change`: gradio 6 sends no input event
            # for deletions; a refresh puts the stored value there, which `set_setting` skips as unchanged.
            event = comp.change if isinstance(comp, gr.Textbox) else comp.input
            event(lambda v, _k=key: set_setting(ctx, _k, v), comp, comp, show_progress="minimal",
                  trigger_mode="always_last")
        with gr.Column(scale=0, min_width=48, elem_classes=["quicksetting"]):
            refresh = tool_button("🔄", "refresh_sd_model_checkpoint", "Refresh the lists of checkpoints and VAEs")

    gr.HTML("", elem_id="quicksettings_spacer", visible=False)
    dropdown_keys = [k for k, c in components.items() if isinstance(c, gr.Dropdown)]

    def refresh_lists() -> list[Any]:
        catalog = ctx.catalog
        if catalog is not None:
            catalog.refresh()
        updates = []
        for key in dropdown_keys:
            value = shown_value(ctx, key)
            updates.append(gr.Dropdown(choices=shown_choices(ctx, key, value), value=value))
        return updates

    refresh.click(refresh_lists, None, [components[k] for k in dropdown_keys])
    return components

