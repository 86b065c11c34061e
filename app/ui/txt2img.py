"""The txt2img tab (A1111 layout and elem_ids): top row, sampler, Hires. fix, size, batch, CFG, seed, script,
and the output panel. Generate submits a "txt2img" job to the job service."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

from app.ui import form as F
from app.ui import generation as G
from app.ui.common import TabForm
from app.ui.context import UiContext


def hires_label(enabled: bool) -> str:
    """The accordion title says whether the pass is on, also while it is collapsed."""
    return "Hires. fix ✔ (enabled)" if enabled else "Hires. fix"


def build_hires(ctx: UiContext, tab: TabForm, restored: dict[str, Any]) -> None:
    """Hires. fix: the `txt2img_hr` checkbox opens the accordion with its controls (A1111's InputAccordion)."""
    show_sampler = bool(ctx.settings.get("hires_fix_show_sampler", False))
    show_prompts = bool(ctx.settings.get("hires_fix_show_prompts", False))
    open_ = bool(restored.get("enable_hr", False))
    with gr.Accordion(hires_label(open_), open=open_, elem_id="txt2img_hires_fix") as acc:
        enabled = G.field(ctx, tab, "enable_hr", restored)
        with gr.Row(elem_id="txt2img_hires_fix_row1"):
            G.field(ctx, tab, "hr_upscaler", restored)
            G.field(ctx, tab, "hr_second_pass_steps", restored)
            G.field(ctx, tab, "denoising_strength", restored)
        with gr.Row(elem_id="txt2img_hires_fix_row2"):
            G.field(ctx, tab, "hr_scale", restored)
            G.field(ctx, tab, "hr_resize_x", restored)
            G.field(ctx, tab, "hr_resize_y", restored)
        with gr.Row(elem_id="txt2img_hires_fix_row3"):
            G.field(ctx, tab, "hr_checkpoint_name", restored, visible=show_sampler)
            G.field(ctx, tab, "hr_sampler_name", restored, visible=show_sampler)
            G.field(ctx, tab, "hr_scheduler", restored, visible=show_sampler)
        with gr.Row(elem_id="txt2img_hires_fix_row4"):
            G.field(ctx, tab, "hr_prompt", restored, visible=show_prompts)
            G.field(ctx, tab, "hr_negative_prompt", restored, visible=show_prompts)
    def toggle(on: bool) -> Any:
        return gr.Accordion(open=True, label=hires_label(True)) if on else gr.Accordion(label=hires_label(False))

    enabled.change(toggle, enabled, acc, queue=False, show_progress="hidden")
    tab.extra["hires_accordion"] = acc


def build_txt2img(ctx: UiContext) -> TabForm:
    tab = TabForm("txt2img", extra={"kind": "txt2img"})
    restored = ctx.restore_values("txt2img")
    G.build_toprow(ctx, tab, restored)
    with gr.Row(elem_id="txt2img_extra_tabs", equal_height=False):
        with gr.Column(scale=4, elem_id="txt2img_settings"):
            G.build_sampler(ctx, tab, restored)
            build_hires(ctx, tab, restored)
            G.build_size(ctx, tab, restored)
            G.build_batch_cfg(ctx, tab, restored)
            G.build_seed(ctx, tab, restored)
            G.build_scripts(ctx, tab, restored)
        G.build_output(ctx, tab)

    def build_params(values: dict[str, Any], _extra: Sequence[Any]) -> Any:
        return F.values_to_params("txt2img", values)

    tab.extra["build_params"] = build_params
    G.wire_common(ctx, tab, [], build_params)
    return tab
