"""The quicksettings row (`#quicksettings`): the settings named in `quicksettings_list` (default checkpoint,
VAE, clip skip) with a 🔄 refresh button. A change calls `settings.set` (config.json is saved; a checkpoint
change loads through the job queue); a rejected value is reported and the control shows the old value again."""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from app.ui.common import tool_button
from app.ui.context import UiContext
from app.ui.settings_tab import coerce_input, current_checkpoint, setting_choices, setting_component

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
    if value == old:
        return gr.skip()
    try:
        ctx.settings.set(key, value)
    except Exception as exc:  # noqa: BLE001 - validation error, frozen settings, a model that fails to load
        gr.Warning(f"{ctx.settings.info(key).label}: {exc}")
        return old
    return gr.skip()


def build_quicksettings(ctx: UiContext) -> dict[str, Any]:
    components: dict[str, Any] = {}
    with gr.Row(elem_id="quicksettings", equal_height=True):
        for key in quicksettings_keys(ctx):
            with gr.Column(scale=3 if key == "sd_model_checkpoint" else 2, min_width=200,
                           elem_classes=["quicksetting"]):
                comp = setting_component(ctx, key)
            components[key] = comp
            comp.change(lambda v, _k=key: set_setting(ctx, _k, v), comp, comp, show_progress="minimal",
                        trigger_mode="always_last")
        with gr.Column(scale=0, min_width=48, elem_classes=["quicksetting"]):
            refresh = tool_button("🔄", "refresh_sd_model_checkpoint", "Refresh the lists of checkpoints and VAEs")

    gr.HTML("", elem_id="quicksettings_spacer", visible=False)
    dropdown_keys = [k for k, c in components.items() if isinstance(c, gr.Dropdown)]

    def refresh_lists() -> list[Any]:
        catalog = ctx.catalog
        if catalog is not None:
            catalog.refresh()
        return current_lists()

    def current_lists() -> list[Any]:
        values = {k: ctx.settings.get(k) or (current_checkpoint(ctx) if k == "sd_model_checkpoint" else None)
                  for k in dropdown_keys}
        return [gr.Dropdown(choices=list(dict.fromkeys([*setting_choices(ctx, k), *_as_items(values[k])])),
                            value=values[k]) for k in dropdown_keys]

    refresh.click(refresh_lists, None, [components[k] for k in dropdown_keys])
    components["_on_load"] = (current_lists, [components[k] for k in dropdown_keys])
    return components


def _as_items(value: Any) -> list[Any]:
    """A dropdown value as choice items: a multiselect's list (``forge_additional_modules``) item by item."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value] if value else []
