"""The img2img tab: mode sub-tabs (Tabs `mode_img2img`: img2img, Sketch, Inpaint, Inpaint sketch, Inpaint upload,
Batch), resize mode and size, denoising, the inpaint controls, and the shared generation controls. Generate
builds `Img2ImgParams` (init image and mask as PIL) and submits an "img2img" job."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from app.ui import form as F
from app.ui import generation as G
from app.ui.common import TabForm, error_html, info_html, stream_job
from app.ui.context import UiContext
from app.ui.refiner import build_refiner

log = logging.getLogger(__name__)

MODES = ("img2img", "Sketch", "Inpaint", "Inpaint sketch", "Inpaint upload", "Batch")
INPAINT_MODES = (2, 3, 4)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".avif", ".tif", ".tiff")


# -- images from the editors -------------------------------------------------------------------------------------
def editor_parts(value: Any) -> tuple[Any, list[Any], Any]:
    """(background, layers, composite) of a gr.ImageEditor value (dict or EditorValue), PIL images or None."""
    if value is None:
        return None, [], None
    get = value.get if isinstance(value, dict) else (lambda k, d=None: getattr(value, k, d))
    return get("background"), [x for x in (get("layers") or []) if x is not None], get("composite")


def mask_from_layers(layers: Sequence[Any], size: tuple[int, int]) -> Any:
    """The brush strokes of every layer (alpha > 0) as an "L" mask (255 = inpaint)."""
    from PIL import Image, ImageChops

    mask = Image.new("L", size, 0)
    for layer in layers:
        layer = layer.convert("RGBA")
        if layer.size != size:
            layer = layer.resize(size)
        alpha = layer.getchannel("A").point(lambda a: 255 if a > 0 else 0)
        mask = ImageChops.lighter(mask, alpha)
    return mask


def mask_from_difference(original: Any, edited: Any) -> Any:
    """Inpaint sketch: the pixels the user painted over (changed versus the original) as an "L" mask."""
    from PIL import ImageChops

    diff = ImageChops.difference(original.convert("RGB"), edited.convert("RGB").resize(original.size))
    return diff.convert("L").point(lambda v: 255 if v > 0 else 0)


def images_for_mode(mode: int, inputs: Sequence[Any]) -> tuple[Any, Any]:
    """(init image, mask or None) for the selected mode; ValueError with a clear message when missing."""
    init_img, sketch, inpaint, inpaint_sketch, upload, upload_mask = inputs[:6]
    if mode == 0:
        image, mask = init_img, None
    elif mode == 1:
        bg, _layers, composite = editor_parts(sketch)
        image, mask = composite or bg, None
    elif mode == 2:
        bg, layers, composite = editor_parts(inpaint)
        image = bg or composite
        mask = mask_from_layers(layers, image.size) if image is not None else None
    elif mode == 3:
        bg, _layers, composite = editor_parts(inpaint_sketch)
        image = composite or bg
        mask = mask_from_difference(bg, composite) if bg is not None and composite is not None else None
    elif mode == 4:
        image, mask = upload, upload_mask
        if image is not None and mask is None:
            raise ValueError("Inpaint upload: upload a mask image too")
    else:
        raise ValueError(f"img2img mode {mode} has no single image")
    if image is None:
        raise ValueError(f"{MODES[mode]}: no input image (upload one first)")
    image = image.convert("RGB") if image.mode not in ("RGB",) else image
    if mask is not None and mask.getbbox() is None:
        mask = None  # a blank mask: plain img2img, as A1111 does
    return image, mask


def build_params(values: dict[str, Any], extra: Sequence[Any]) -> Any:
    mode = int(extra[0] or 0)
    params = F.values_to_params("img2img", values)
    image, mask = images_for_mode(mode, extra[1:])
    alpha = float(values.get("mask_alpha") or 0)
    if mode == 3 and alpha > 0:  # Inpaint sketch "Mask transparency": the strokes show the original through
        from PIL import Image

        original = editor_parts(extra[4])[0]
        if original is not None:
            image = Image.blend(image, original.convert("RGB").resize(image.size), min(alpha, 100) / 100)
    params.img2img.init_images = [image]
    params.img2img.mask = mask  # as given: the engine applies the alpha-or-luminance rule (app/engine/inpaint.py)
    if params.img2img.scale_by is not None:
        params.width = max(8, int(image.width * params.img2img.scale_by) // 8 * 8)
        params.height = max(8, int(image.height * params.img2img.scale_by) // 8 * 8)
    return params


# -- batch -------------------------------------------------------------------------------------------------------
def batch_files(folder: str) -> list[Path]:
    path = Path(folder or "").expanduser()
    if not folder or not path.is_dir():
        raise ValueError(f"Batch: input directory {folder!r} does not exist")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"Batch: no images in {folder!r}")
    return files


def dirs_hidden(ctx: UiContext) -> bool:
    """`--hide-ui-dir-config`, or listening on the network without a password (`Runtime.folder_lock_reason`):
    the UI must not read or write server folders named by the user."""
    if getattr(ctx.runtime, "folder_lock_reason", None):
        return True
    return bool(getattr(getattr(ctx.runtime, "args", None), "hide_ui_dir_config", False))


def _dirs_reason(ctx: UiContext) -> str:
    return getattr(ctx.runtime, "folder_lock_reason", None) or "--hide-ui-dir-config"


def run_batch(ctx: UiContext, values: dict[str, Any], input_dir: str, output_dir: str, mask_dir: str
              ) -> Iterator[tuple[Any, Any, Any, Any]]:

    if dirs_hidden(ctx):
        yield gr.skip(), error_html(f"Batch from a directory is disabled ({_dirs_reason(ctx)})"), "", gr.skip()
        return
    try:
        files = batch_files(input_dir)  # fail fast with a readable message for a missing folder
        params = F.values_to_params("img2img", values)
    except ValueError as exc:
        yield gr.skip(), error_html(str(exc)), "", gr.skip()
        return
    # One job: the engine's folder batch (app/engine/modes/img2img_batch.py) reads the images and masks.
    params.extras["img2img_batch"] = {"input_dir": input_dir, "output_dir": output_dir, "inpaint_mask_dir": mask_dir}
    for update in stream_job(ctx.service, params, "img2img"):
        if update.error:
            yield gr.skip(), error_html(update.error), "", gr.skip()
            return
        if not update.done:
            yield gr.skip(), gr.skip(), update.progress, gr.skip()
            continue
        images, infotexts = update.images, update.infotexts
        yield images, info_html(infotexts[0] if infotexts else "", (), f"Batch: {len(files)} images"), "", {
            "images": images, "infotexts": infotexts, "seeds": [], "subseeds": []}


# -- layout ------------------------------------------------------------------------------------------------------
def editor(elem_id: str, label: str, brush_color: str | None = None) -> gr.ImageEditor:
    brush = gr.Brush(colors=[brush_color], color_mode="fixed", default_size=24) if brush_color else gr.Brush()
    return gr.ImageEditor(label=label, elem_id=elem_id, type="pil", image_mode="RGBA", brush=brush,
                          sources=("upload", "clipboard"), height=480, layers=False, format="png")


def build_img2img(ctx: UiContext) -> TabForm:
    tab = TabForm("img2img", extra={"kind": "img2img"})
    restored = ctx.restore_values("img2img")
    G.build_toprow(ctx, tab, restored)
    x = tab.extra
    with gr.Row(elem_id="img2img_settings_row", equal_height=False):
        with gr.Column(scale=4, elem_id="img2img_settings"):
            mode = gr.State(0)
            with gr.Tabs(elem_id="mode_img2img") as mode_tabs:
                with gr.Tab("img2img", id="img2img_img2img_tab", elem_id="img2img_img2img_tab") as t0:
                    x["init_img"] = gr.Image(label="Image for img2img", elem_id="img2img_image", type="pil",
                                             image_mode="RGBA", sources=["upload", "clipboard"], height=480)
                with gr.Tab("Sketch", id="img2img_img2img_sketch_tab", elem_id="img2img_img2img_sketch_tab") as t1:
                    x["sketch"] = editor("img2img_sketch", "Image for img2img")
                with gr.Tab("Inpaint", id="img2img_inpaint_tab", elem_id="img2img_inpaint_tab") as t2:
                    x["inpaint"] = editor("img2maskimg", "Image for inpainting with mask", "#ffffff")
                with gr.Tab("Inpaint sketch", id="img2img_inpaint_sketch_tab",
                            elem_id="img2img_inpaint_sketch_tab") as t3:
                    x["inpaint_sketch"] = editor("inpaint_sketch", "Color sketch inpainting")
                with gr.Tab("Inpaint upload", id="img2img_inpaint_upload_tab",
                            elem_id="img2img_inpaint_upload_tab") as t4:
                    x["upload"] = gr.Image(label="Image for img2img", elem_id="img_inpaint_base", type="pil",
                                           sources=["upload", "clipboard"])
                    x["upload_mask"] = gr.Image(label="Mask", elem_id="img_inpaint_mask", type="pil",
                                                image_mode="L", sources=["upload", "clipboard"])
                with gr.Tab("Batch", id="img2img_batch_tab", elem_id="img2img_batch_tab") as t5:
                    editable = not dirs_hidden(ctx)
                    if not editable:
                        gr.HTML(error_html(f"Batch from a directory is disabled ({_dirs_reason(ctx)})"))
                    x["batch_in"] = gr.Textbox(label="Input directory", elem_id="img2img_batch_input_dir",
                                               interactive=editable)
                    x["batch_out"] = gr.Textbox(label="Output directory", elem_id="img2img_batch_output_dir",
                                                interactive=editable)
                    x["batch_mask"] = gr.Textbox(label="Inpaint batch mask directory (required for inpaint batch "
                                                 "processing only)", elem_id="img2img_batch_inpaint_mask_dir",
                                                 interactive=editable)
            x["mode"], x["mode_tabs"] = mode, mode_tabs
            with gr.Row():
                G.field(ctx, tab, "resize_mode", restored)
            G.build_sampler(ctx, tab, restored)
            build_refiner(ctx, tab, restored)  # A1111's "accordions" section follows the sampler
            with gr.Row():
                resize_tab = G.field(ctx, tab, "resize_tab", restored)
            by = resize_tab.value == F.RESIZE_BY
            with gr.Group(visible=not by) as size_group:
                G.build_size(ctx, tab, restored)
            scale_by = G.field(ctx, tab, "scale_by", restored, visible=by)
            resize_tab.change(lambda v: (gr.Group(visible=v != F.RESIZE_BY), gr.Slider(visible=v == F.RESIZE_BY)),
                              resize_tab, [size_group, scale_by], queue=False, show_progress="hidden")
            G.build_batch_cfg(ctx, tab, restored)
            G.field(ctx, tab, "image_cfg_scale", restored, visible=False)
            G.field(ctx, tab, "denoising_strength", restored)
            G.build_seed(ctx, tab, restored)
            with gr.Group(elem_id="img2img_inpaint_controls", visible=False) as inpaint_controls:
                G.field(ctx, tab, "mask_blur", restored)
                G.field(ctx, tab, "mask_alpha", restored, visible=False)
                G.field(ctx, tab, "inpainting_mask_invert", restored)
                G.field(ctx, tab, "inpainting_fill", restored)
                with gr.Row():
                    G.field(ctx, tab, "inpaint_full_res", restored)
                    G.field(ctx, tab, "inpaint_full_res_padding", restored)
            G.build_scripts(ctx, tab, restored)
        G.build_output(ctx, tab)

    def select_mode(i: int) -> Any:
        def fn() -> tuple[int, Any, Any]:
            return i, gr.Group(visible=i in INPAINT_MODES), gr.Slider(visible=i == 3)
        return fn

    for i, t in enumerate((t0, t1, t2, t3, t4, t5)):
        t.select(select_mode(i), None, [mode, inpaint_controls, tab.components["mask_alpha"]], queue=False)

    images = [x[k] for k in ("init_img", "sketch", "inpaint", "inpaint_sketch", "upload", "upload_mask")]
    batch = [x["batch_in"], x["batch_out"], x["batch_mask"]]
    x["build_params"] = build_params
    G.wire_common(ctx, tab, [mode, *images, *batch], build_params, batch_aware_generate(ctx, tab))
    x["inpaint_controls"] = inpaint_controls
    return tab


def batch_aware_generate(ctx: UiContext, tab: TabForm) -> Any:
    """Wrap the Generate handler so mode 5 (Batch) runs every file of the input directory."""
    normal = G.make_generate(ctx, tab, build_params)

    def generate(*args: Any, request: gr.Request = None):  # noqa: ANN202
        values, extra, _scripts = G.split_args(tab, args)
        if extra and int(extra[0] or 0) == 5:  # extra: mode, 6 image inputs, 3 batch folders
            ctx.last_used.save("img2img", values)
            yield from run_batch(ctx, values, *extra[7:10])
        else:
            yield from normal(*args, request=request)

    return generate
