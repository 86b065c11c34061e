"""Extras tab: upscale one image or a batch with upscaler 1 (+ upscaler 2 blended by visibility), scale by or
to a size. Submits "extras" jobs whose params are the A1111 `/extra-single-image` fields as a dict
(`image`, `resize_mode` 0 = scale by / 1 = scale to, `upscaling_resize`, `upscaling_resize_w/h`,
`upscaling_crop`, `upscaler_1`, `upscaler_2`, `extras_upscaler_2_visibility`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from app.ui.common import error_html, info_html, stream_job
from app.ui.context import UiContext

SCALE_BY, SCALE_TO = "Scale by", "Scale to"


def extras_params(image: Any, scale_tab: str, scale: float, width: int, height: int, crop: bool,
                  upscaler_1: str, upscaler_2: str, visibility: float) -> dict[str, Any]:
    if image is None:
        raise ValueError("Extras: no input image (upload one first)")
    return {
        "image": image.convert("RGB") if image.mode != "RGB" else image,
        "resize_mode": 1 if scale_tab == SCALE_TO else 0,
        "upscaling_resize": float(scale), "upscaling_resize_w": int(width), "upscaling_resize_h": int(height),
        "upscaling_crop": bool(crop), "upscaler_1": upscaler_1 or "None", "upscaler_2": upscaler_2 or "None",
        "extras_upscaler_2_visibility": float(visibility),
    }


def build_extras(ctx: UiContext) -> dict[str, Any]:
    names = ctx.upscaler_names()
    c: dict[str, Any] = {}
    with gr.Row(equal_height=False):
        with gr.Column(scale=4):
            with gr.Tabs(elem_id="mode_extras"):
                with gr.Tab("Single Image", id="single_image", elem_id="extras_single_tab") as single:
                    # format="png": an image sent here ("Send to extras") reaches the job with its `parameters`
                    # text chunk (gradio's default webp drops it), so the upscaled copy keeps the infotext (A1111)
                    c["image"] = gr.Image(label="Source", elem_id="extras_image", type="pil", format="png",
                                          sources=["upload", "clipboard"], height=400)
                with gr.Tab("Batch Process", id="batch_process", elem_id="extras_batch_process_tab") as batch:
                    c["files"] = gr.File(label="Batch Process", file_count="multiple", elem_id="extras_image_batch",
                                         file_types=["image"])
            c["mode"] = gr.State(0)
            single.select(lambda: 0, None, c["mode"])
            batch.select(lambda: 1, None, c["mode"])
            c["submit"] = gr.Button("Generate", elem_id="extras_generate", variant="primary")
            c["scale_tab"] = gr.Radio([SCALE_BY, SCALE_TO], value=SCALE_BY, label="Resize", elem_id="extras_scale_tab")
            c["scale"] = gr.Slider(1.0, 8.0, value=4.0, step=0.05, label="Resize", elem_id="extras_upscaling_resize")
            with gr.Row(visible=False) as size_row:
                c["width"] = gr.Slider(64, 8192, value=512, step=8, label="Width", elem_id="extras_upscaling_resize_w")
                c["height"] = gr.Slider(64, 8192, value=512, step=8, label="Height",
                                        elem_id="extras_upscaling_resize_h")
                c["crop"] = gr.Checkbox(True, label="Crop to fit", elem_id="extras_upscaling_crop")
            with gr.Row():
                c["upscaler_1"] = gr.Dropdown(names, value=names[0], label="Upscaler 1", elem_id="extras_upscaler_1")
                c["upscaler_2"] = gr.Dropdown(names, value=names[0], label="Upscaler 2", elem_id="extras_upscaler_2")
                c["visibility"] = gr.Slider(0.0, 1.0, value=0.0, step=0.001, label="Upscaler 2 visibility",
                                            elem_id="extras_upscaler_2_visibility")
        with gr.Column(scale=5, elem_id="extras_results"):
            c["progress"] = gr.HTML("", elem_id="extras_progress")
            c["gallery"] = gr.Gallery(label="Result", show_label=False, elem_id="extras_gallery", columns=3,
                                      height=480, format="png", interactive=False)
            c["info"] = gr.HTML("", elem_id="html_info_extras")

    c["scale_tab"].change(lambda v: (gr.Slider(visible=v == SCALE_BY), gr.Row(visible=v == SCALE_TO)),
                          c["scale_tab"], [c["scale"], size_row], queue=False, show_progress="hidden")
    settings = [c[k] for k in ("scale_tab", "scale", "width", "height", "crop", "upscaler_1", "upscaler_2",
                               "visibility")]

    def run(mode: int, image: Any, files: Any, *opts: Any) -> Iterator[tuple[Any, Any, Any]]:
        from PIL import Image

        if int(mode or 0) == 1:
            sources = [Image.open(getattr(f, "name", f)) for f in (files or [])]
        else:
            sources = [image] if image is not None else []
        if not sources:
            yield gr.skip(), error_html("Extras: no input image (upload one first)"), ""
            return
        images: list[Any] = []
        for source in sources:
            try:
                params = extras_params(source, *opts)
            except (ValueError, TypeError) as exc:
                yield gr.skip(), error_html(str(exc)), ""
                return
            for update in stream_job(ctx.service, params, "extras"):
                if update.error:
                    yield gr.skip(), update.info, ""
                    return
                if update.done:
                    images += update.images
                else:
                    yield gr.skip(), gr.skip(), update.progress
        yield images, info_html(f"{len(images)} image(s) processed"), ""

    c["submit"].click(run, [c["mode"], c["image"], c["files"], *settings], [c["gallery"], c["info"], c["progress"]],
                      show_progress="hidden")
    return c
