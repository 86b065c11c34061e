"""PNG Info tab: drop an image, see its infotext and other info items, send the parameters to txt2img/img2img."""

from __future__ import annotations

import html
import logging
from typing import Any

import gradio as gr

from app.ui.common import error_html
from app.ui.context import UiContext

log = logging.getLogger(__name__)


def describe(path: str | None) -> tuple[str, str]:
    """(HTML of the infotext and other items, the infotext) of the image at `path`."""
    if not path:
        return "", ""
    from PIL import Image

    from app.infotext.storage import png_info

    try:
        with Image.open(path) as image:
            image.load()
            data = png_info(image)
    except Exception as exc:  # noqa: BLE001 - not an image, truncated file...
        return error_html(f"cannot read {path}: {exc}"), ""
    info = data["info"] or ""
    parts = []
    if info:
        parts.append(f"<div><p><b>parameters</b></p><p>{html.escape(info).replace(chr(10), '<br>')}</p></div>")
    for key, value in (data.get("items") or {}).items():
        if key == "parameters":
            continue
        parts.append(f"<div><p><b>{html.escape(str(key))}</b></p><p>{html.escape(str(value))}</p></div>")
    if not parts:
        parts.append("<div><p>Nothing found in the image.</p></div>")
    return '<div class="infotext">' + "".join(parts) + "</div>", info


def build_pnginfo(ctx: UiContext) -> dict[str, Any]:
    c: dict[str, Any] = {}
    with gr.Row(equal_height=False):
        with gr.Column():
            c["image"] = gr.Image(label="Source", elem_id="pnginfo_image", type="filepath",
                                  sources=["upload", "clipboard"], height=480)
        with gr.Column():
            c["html"] = gr.HTML("", elem_id="pnginfo_html_info")
            c["infotext"] = gr.Textbox(visible=False, elem_id="pnginfo_generation_info")
            with gr.Row():
                c["send_txt2img"] = gr.Button("Send to txt2img", elem_id="pnginfo_send_to_txt2img")
                c["send_img2img"] = gr.Button("Send to img2img", elem_id="pnginfo_send_to_img2img")
                c["send_inpaint"] = gr.Button("Send to inpaint", elem_id="pnginfo_send_to_inpaint")
                c["send_extras"] = gr.Button("Send to extras", elem_id="pnginfo_send_to_extras")
    c["image"].change(describe, c["image"], [c["html"], c["infotext"]])
    return c
