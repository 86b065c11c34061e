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
from app.ui.refiner import build_refiner

#: A1111's InputAccordion ids: the accordion, its enable checkbox and the "from WxH to WxH" label in its header.
HR_ACCORDION = "txt2img_hr"
HR_CHECKBOX = "txt2img_hr-checkbox"
HR_FINAL_RESOLUTION = "txtimg_hr_finalres"  # sic: A1111's id (extensions and styles look for it)
#: The fields the final-resolution label follows.
HR_RESOLUTION_INPUTS = ("enable_hr", "width", "height", "hr_scale", "hr_resize_x", "hr_resize_y")


def hires_resolution_text(enable: Any, width: Any, height: Any, scale: Any, resize_x: Any, resize_y: Any) -> str:
    """A1111's header label: `from 512x512 to 1024x1024` while Hires. fix is on (empty when off or when the values
    do not make a size yet, e.g. a half-typed number)."""
    from app.engine.modes.hires_size import hires_target  # pure: no torch in the server process

    if not enable:
        return ""
    try:
        w, h = int(float(width)), int(float(height))
        target = hires_target(w, h, float(scale), int(float(resize_x or 0)), int(float(resize_y or 0)))
    except (TypeError, ValueError):
        return ""
    return (f"from <span class='resolution'>{w}x{h}</span> "
            f"to <span class='resolution'>{target.final_width}x{target.final_height}</span>")


def build_hires(ctx: UiContext, tab: TabForm, restored: dict[str, Any]) -> None:
    """Hires. fix as A1111's InputAccordion: the accordion `txt2img_hr` carries the enable checkbox and the
    "from WxH to WxH" label in its header (atelier.js moves both there; built just before it, they sit above the
    accordion if scripts are off). Ticking the box opens the accordion; opening the accordion ticks the box until
    the box is clicked by hand (A1111's behaviour)."""
    show_sampler = bool(ctx.settings.get("hires_fix_show_sampler", False))
    show_prompts = bool(ctx.settings.get("hires_fix_show_prompts", False))
    open_ = bool(restored.get("enable_hr", False))
    enabled = G.field(ctx, tab, "enable_hr", restored, elem_id=HR_CHECKBOX, elem_classes=["input-accordion-checkbox"],
                      container=False)
    final = gr.HTML("", elem_id=HR_FINAL_RESOLUTION, elem_classes=["input-accordion-extra"], min_height=0,
                    padding=False)
    with gr.Accordion("Hires. fix", open=open_, elem_id=HR_ACCORDION, elem_classes=["input-accordion"]) as acc:
        with gr.Row(elem_id="txt2img_hires_fix_row1"):
            G.field(ctx, tab, "hr_upscaler", restored)
            G.field(ctx, tab, "hr_second_pass_steps", restored)
            G.field(ctx, tab, "denoising_strength", restored)
        with gr.Row(elem_id="txt2img_hires_fix_row2"):
            G.field(ctx, tab, "hr_scale", restored)
            G.field(ctx, tab, "hr_resize_x", restored)
            G.field(ctx, tab, "hr_resize_y", restored)
        with gr.Row(elem_id="txt2img_hires_fix_row3"):
            # with or without its [hash]: the list is built before a first run hashes the files
            G.field(ctx, tab, "hr_checkpoint_name", restored, visible=show_sampler, allow_custom_value=True)
            G.field(ctx, tab, "hr_sampler_name", restored, visible=show_sampler)
            G.field(ctx, tab, "hr_scheduler", restored, visible=show_sampler)
        with gr.Row(elem_id="txt2img_hires_fix_row4"):
            G.field(ctx, tab, "hr_prompt", restored, visible=show_prompts)
            G.field(ctx, tab, "hr_negative_prompt", restored, visible=show_prompts)

    def opened(on: bool) -> Any:  # a pasted infotext with hires on opens the accordion too
        return gr.Accordion(open=True) if on else gr.skip()

    enabled.change(opened, enabled, acc, queue=False, show_progress="hidden")
    tab.extra["hires_accordion"] = acc
    tab.extra["hires_final_resolution"] = final


def wire_hires_resolution(tab: TabForm) -> None:
    """Keep the header label in step with the size fields (built after the accordion, so wired afterwards)."""
    inputs = tab.ordered(HR_RESOLUTION_INPUTS)
    final = tab.extra["hires_final_resolution"]
    for component in inputs:
        component.change(hires_resolution_text, inputs, final, queue=False, show_progress="hidden")
    tab.extra.setdefault("on_load", []).append((hires_resolution_text, inputs, final))


def build_txt2img(ctx: UiContext) -> TabForm:
    tab = TabForm("txt2img", extra={"kind": "txt2img"})
    restored = ctx.restore_values("txt2img")
    G.build_toprow(ctx, tab, restored)
    with gr.Row(elem_id="txt2img_settings_row", equal_height=False):
        with gr.Column(scale=4, elem_id="txt2img_settings"):
            G.build_sampler(ctx, tab, restored)
            build_hires(ctx, tab, restored)
            build_refiner(ctx, tab, restored)
            G.build_size(ctx, tab, restored)
            wire_hires_resolution(tab)
            G.build_batch_cfg(ctx, tab, restored)
            G.build_seed(ctx, tab, restored)
            G.build_scripts(ctx, tab, restored)
        G.build_output(ctx, tab)

    def build_params(values: dict[str, Any], _extra: Sequence[Any]) -> Any:
        return F.values_to_params("txt2img", values)

    tab.extra["build_params"] = build_params
    G.wire_common(ctx, tab, [], build_params)
    return tab
