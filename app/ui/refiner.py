"""The Refiner accordion of txt2img and img2img (A1111's `processing_scripts/refiner.py` ui()).

An InputAccordion `<tab>_enable` with its checkbox `<tab>_enable-checkbox` in the header (atelier.js moves it there,
as for Hires. fix), the checkpoint dropdown `<tab>_checkpoint` ("" = no refiner, then the checkpoint titles) with a 🔄
refresh button `<tab>_checkpoint_refresh`, and the "Switch at" slider `<tab>_switch_at` (0.01-1.0, default 0.8). The
values go through `app.ui.form` like every other field (`refiner_checkpoint` / `refiner_switch_at` of the params), so
Paste, "Send to", last-used values and generate-forever carry them; the ui-config keys are A1111's
(`customscript/refiner.py/<tab>/...`)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.ui import generation as G
from app.ui.common import TabForm, tool_button
from app.ui.context import UiContext


def build_refiner(ctx: UiContext, tab: TabForm, restored: dict[str, Any]) -> None:
    t = tab.tab
    enabled = G.field(ctx, tab, "enable_refiner", restored, elem_id=f"{t}_enable-checkbox",
                      elem_classes=["input-accordion-checkbox"], container=False)
    with gr.Accordion("Refiner", open=bool(restored.get("enable_refiner", False)), elem_id=f"{t}_enable",
                      elem_classes=["input-accordion"]) as acc:
        with gr.Row():
            checkpoint = G.field(ctx, tab, "refiner_checkpoint", restored)
            refresh = tool_button("🔄", f"{t}_checkpoint_refresh", "Refresh the checkpoint list")
            G.field(ctx, tab, "refiner_switch_at", restored)

    def opened(on: bool) -> Any:  # ticking the box (or a pasted infotext with a refiner) opens the accordion
        return gr.Accordion(open=True) if on else gr.skip()

    def refreshed(current: str) -> Any:
        catalog = ctx.catalog
        if catalog is not None:
            catalog.refresh_checkpoints()
        choices = ctx.choices("refiner_checkpoints", t)
        return gr.Dropdown(choices=choices, value=current if current in choices else "")

    enabled.change(opened, enabled, acc, queue=False, show_progress="hidden")
    refresh.click(refreshed, checkpoint, checkpoint, queue=False, show_progress="hidden")
    tab.extra["refiner_accordion"] = acc
