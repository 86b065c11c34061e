"""The Checkpoint Merger tab (A1111's elem_ids `modelmerger_*`, spec §8): primary / secondary / tertiary model,
multiplier, method (weighted sum, add difference, no interpolation), fp16, "Copy config from" (the `name.yaml` beside
an input, when it has one), a VAE to bake in, "Discard weights with matching name" (a regular expression), metadata,
custom name.

The tab only builds the job: the merge itself is the job kind "merge" (`app.engine.modes.merge`, torch, on the
worker), so this module imports no torch. When the job is done the checkpoint lists are refreshed and the new file is
offered in the model dropdowns (and in the quicksettings list after its 🔄 or a tab switch). Output: safetensors only.
The model dropdowns accept a checkpoint with or without its `[hash]` (a first run hashes the files while the page is
open: a pick made before a refresh is still the same model) and a refresh shows the picked models' current titles.
"""

from __future__ import annotations

import html
import re
import time
from typing import Any

import gradio as gr

from app.params import GenerationParams
from app.ui.common import error_html, progress_html, tool_button
from app.ui.context import UiContext

METHODS = ("No interpolation", "Weighted sum", "Add difference")
CONFIG_SOURCES = ("A, B or C", "B", "C", "Don't")  # A1111's "Copy config from"; the job gets the index
POLL_SECONDS = 0.25
NONE = "None"


def merge_options(primary: str | None, secondary: str | None, tertiary: str | None, method: str, multiplier: Any,
                  half: bool, vae: str | None, save_metadata: bool, custom_name: str, config_source: Any = 0,
                  discard_weights: str = "") -> dict[str, Any]:
    """The job's `params.extras["merge"]` from the tab's values (checked here so bad input never queues a job)."""
    if not primary:
        raise ValueError("choose a primary model")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    if method != "No interpolation" and not secondary:
        raise ValueError(f"{method} needs a secondary model")
    if method == "Add difference" and not tertiary:
        raise ValueError("Add difference needs a tertiary model")
    if config_source not in range(len(CONFIG_SOURCES)):
        raise ValueError(f"unknown config source {config_source!r}")
    try:
        re.compile(discard_weights or "")
    except re.error as exc:
        raise ValueError(f"Discard weights: {discard_weights!r} is not a valid regular expression ({exc})") from None
    return {"primary": primary, "secondary": secondary or "", "tertiary": tertiary or "", "method": method,
            "multiplier": float(multiplier), "half": bool(half), "vae": vae or NONE,
            "save_metadata": bool(save_metadata), "custom_name": (custom_name or "").strip(),
            "config_source": int(config_source), "discard_weights": discard_weights or ""}


def build_merger(ctx: UiContext) -> dict[str, Any]:
    x: dict[str, Any] = {}
    titles = ctx.checkpoint_titles()
    with gr.Row(equal_height=False, elem_id="modelmerger_row"):
        with gr.Column(variant="compact"):
            gr.HTML("<p>A merged checkpoint is written to the checkpoint folder as <code>.safetensors</code>. "
                    "Weighted sum: A·(1-M) + B·M. Add difference: A + (B-C)·M.</p>", min_height=0)
            with gr.Row():
                for key, label in (("primary", "Primary model (A)"), ("secondary", "Secondary model (B)"),
                                   ("tertiary", "Tertiary model (C)")):
                    x[key] = gr.Dropdown(titles, value=None, label=label, elem_id=f"modelmerger_{key}_model_name",
                                         allow_custom_value=True)
                x["refresh"] = tool_button("🔄", "refresh_checkpoint_Z", "Refresh the checkpoint list")
            x["custom_name"] = gr.Textbox(label="Custom Name (Optional)", elem_id="modelmerger_custom_name")
            x["multiplier"] = gr.Slider(0.0, 1.0, value=0.3, step=0.05, label="Multiplier (M) - set to 0 to get model A",
                                        elem_id="modelmerger_interp_amount")
            x["method"] = gr.Radio(list(METHODS), value="Weighted sum", label="Interpolation Method",
                                   elem_id="modelmerger_interp_method")
            with gr.Row():
                x["format"] = gr.Radio(["safetensors"], value="safetensors", label="Checkpoint format",
                                       elem_id="modelmerger_checkpoint_format")
                x["half"] = gr.Checkbox(False, label="Save as float16", elem_id="modelmerger_save_as_half")
            x["config_source"] = gr.Radio(list(CONFIG_SOURCES), value=CONFIG_SOURCES[0], type="index",
                                          label="Copy config from", elem_id="modelmerger_config_method",
                                          info="copies the input's name.yaml next to the merged model, if it has one")
            x["vae"] = gr.Dropdown([NONE, *[v.name for v in _vaes(ctx)]], value=NONE, label="Bake in VAE",
                                   elem_id="modelmerger_bake_in_vae")
            x["discard_weights"] = gr.Textbox(label="Discard weights with matching name",
                                              elem_id="modelmerger_discard_weights",
                                              info="a regular expression; matching tensors are left out")
            x["save_metadata"] = gr.Checkbox(True, label="Save metadata", elem_id="modelmerger_save_metadata")
            x["merge"] = gr.Button("Merge", variant="primary", elem_id="modelmerger_merge")
        with gr.Column(variant="compact", elem_id="modelmerger_results_container"):
            x["result"] = gr.HTML("", elem_id="modelmerger_result")
    _wire(ctx, x)
    return x


def _vaes(ctx: UiContext) -> list[Any]:
    catalog = ctx.catalog
    try:
        return list(catalog.vaes()) if catalog is not None else []
    except Exception:  # noqa: BLE001 - the tab still builds
        return []


def _model_updates(ctx: UiContext, picked: list[Any]) -> list[Any]:
    """The three model lists with the current titles, each keeping its pick (as its current title)."""
    titles = ctx.checkpoint_titles()
    return [gr.Dropdown(choices=titles, value=ctx.canonical_checkpoint(value) or None) for value in picked]


def _wire(ctx: UiContext, x: dict[str, Any]) -> None:
    models = [x["primary"], x["secondary"], x["tertiary"]]

    def refresh(*picked: Any) -> list[Any]:
        catalog = ctx.catalog
        if catalog is not None:
            catalog.refresh_checkpoints()
            catalog.refresh_vaes()
        return [*_model_updates(ctx, list(picked)), gr.Dropdown(choices=[NONE, *[v.name for v in _vaes(ctx)]])]

    x["refresh"].click(refresh, models, [*models, x["vae"]], queue=False)

    def run(*values: Any):  # noqa: ANN202 - gradio generator
        skip = [gr.skip()] * 3
        try:
            options = merge_options(*values)
        except (TypeError, ValueError) as exc:
            yield [error_html(str(exc)), *skip]
            return
        service = ctx.service
        if service is None:
            yield [error_html("the job service is not available"), *skip]
            return
        try:
            job = service.submit(GenerationParams(extras={"merge": options}), kind="merge", origin="ui")
        except Exception as exc:  # noqa: BLE001 - e.g. a full queue
            yield [error_html(str(exc)), *skip]
            return
        while not job.done:
            p = job.progress
            yield [progress_html(p.fraction, p.eta_seconds, "Merging checkpoints"), *skip]
            time.sleep(POLL_SECONDS)
        if job.error:
            yield [error_html(f"Merge failed: {job.error}"), *skip]
            return
        result = job.wait(0)
        catalog = ctx.catalog
        if catalog is not None:
            catalog.refresh_checkpoints()
        filename = html.escape(str(result.info.get("filename", "")))
        yield [f'<div class="atelier-info"><p class="atelier-comment">Checkpoint saved to {filename}</p></div>',
               *_model_updates(ctx, list(values[:3]))]

    inputs = [*models, x["method"], x["multiplier"], x["half"], x["vae"], x["save_metadata"], x["custom_name"],
              x["config_source"], x["discard_weights"]]
    x["merge"].click(run, inputs, [x["result"], *models], show_progress="hidden")
