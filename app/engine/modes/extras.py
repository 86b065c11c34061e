"""Extras tab / ``/extra-single-image`` / ``/extra-batch-images``: upscale images without diffusion.

Job params are the A1111 API fields as a dict (what ``app.api`` and ``app.ui.extras`` submit):
``image`` (one PIL image) or ``images`` (+ ``names``, the original file names) or ``input_dir``
(+ ``output_dir``: batch from a folder); ``resize_mode`` 0 = scale by ``upscaling_resize``,
1 = scale to ``upscaling_resize_w x upscaling_resize_h`` (``upscaling_crop``: centre-crop to
exactly that size); ``upscaler_1``, ``upscaler_2`` and ``extras_upscaler_2_visibility`` (the
second result blended over the first); ``save_output`` (default True), ``show_extras_results``.

Each image is saved (``app.outputs.job.save_extras_image``) to ``outputs/extras-images`` (setting ``outdir_extras_samples``; with
``use_original_name_batch`` a batch image keeps its file name) with its original ``parameters``
text and an ``extras`` text chunk holding the postprocess info, e.g.
``Postprocess upscale by: 2, Postprocess upscaler: Lanczos``. That text is also the job's
infotext (the tab's html info).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from app.engine.image import upscalers as up
from app.engine.image.resize import ImageInputError, check_image, check_size
from app.jobs.job import JobResult
from app.outputs.job import extras_folder, save_extras_image
from app.settings import setting_value

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".avif")


@dataclass
class ExtrasOptions:
    resize_mode: int = 0
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0.0
    save_output: bool = True
    show_extras_results: bool = True
    output_dir: str = ""

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ExtrasOptions:
        known = cls.__dataclass_fields__
        opts = cls(**{k: v for k, v in params.items() if k in known and v is not None})
        if int(opts.resize_mode) not in (0, 1):
            raise ImageInputError(f"resize_mode must be 0 (scale by) or 1 (scale to), got {opts.resize_mode!r}")
        if int(opts.resize_mode) == 0 and not float(opts.upscaling_resize) > 0:
            raise ImageInputError(f"upscaling_resize must be > 0, got {opts.upscaling_resize}")
        if int(opts.resize_mode) == 1 and (int(opts.upscaling_resize_w) < 1 or int(opts.upscaling_resize_h) < 1):
            raise ImageInputError(
                f"upscaling_resize_w/h must be >= 1, got {opts.upscaling_resize_w}x{opts.upscaling_resize_h}"
            )
        if not 0.0 <= float(opts.extras_upscaler_2_visibility) <= 1.0:
            raise ImageInputError(
                f"extras_upscaler_2_visibility must be within [0, 1], got {opts.extras_upscaler_2_visibility}"
            )
        return opts


def info_text(info: dict[str, Any]) -> str:
    from app.infotext.format import quote

    return ", ".join(f"{k}: {quote(str(v))}" for k, v in info.items() if v is not None)


def _upscale_one(registry: up.UpscalerRegistry, image: Image.Image, name: str, opts: ExtrasOptions,
                 info: dict[str, Any], should_stop: Any) -> Image.Image:
    if int(opts.resize_mode) == 1:
        w, h = int(opts.upscaling_resize_w), int(opts.upscaling_resize_h)
        scale = max(w / image.width, h / image.height)
        info["Postprocess upscale to"] = f"{w}x{h}"
    else:
        scale = float(opts.upscaling_resize)
        info["Postprocess upscale by"] = opts.upscaling_resize
    out = registry.upscale(image, name, scale, should_stop=should_stop)
    if int(opts.resize_mode) == 1 and opts.upscaling_crop:
        w, h = int(opts.upscaling_resize_w), int(opts.upscaling_resize_h)
        canvas = Image.new("RGB", (w, h))
        canvas.paste(out, (w // 2 - out.width // 2, h // 2 - out.height // 2))
        out = canvas
        info["Postprocess crop to"] = f"{w}x{h}"
    return out


def postprocess(image: Image.Image, opts: ExtrasOptions, registry: up.UpscalerRegistry,
                should_stop: Any = None) -> tuple[Image.Image, dict[str, Any]]:
    """One image through upscaler 1 (and 2, blended by visibility); returns ``(image, info)``."""
    info: dict[str, Any] = {}
    first = registry.find(opts.upscaler_1)  # unknown names fail before any work
    second = registry.find(opts.upscaler_2) if opts.upscaler_2 and opts.upscaler_2 != "None" else None
    source = image.convert("RGB")
    if first.id == "none":
        return source, info
    result = _upscale_one(registry, source, first.name, opts, info, should_stop)
    info["Postprocess upscaler"] = first.name
    visibility = float(opts.extras_upscaler_2_visibility)
    if second is not None and second.id != "none" and visibility > 0:
        other = _upscale_one(registry, source, second.name, opts, info, should_stop)
        if other.size != result.size:
            other = other.resize(result.size, Image.Resampling.LANCZOS)
        result = Image.blend(result, other.convert(result.mode), visibility)
        info["Postprocess upscaler 2"] = second.name
    return result, info


def _inputs(params: dict[str, Any]) -> tuple[list[Image.Image], list[str]]:
    if params.get("input_dir"):
        folder = Path(str(params["input_dir"]))
        if not folder.is_dir():
            raise ImageInputError(f"input_dir: {folder} is not a folder")
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        images, names = [], []
        for path in files:
            try:
                images.append(Image.open(path))
                names.append(str(path))
            except OSError as exc:
                raise ImageInputError(f"input_dir: {path} is not a readable image ({exc})") from exc
        if not images:
            raise ImageInputError(f"input_dir: no images in {folder}")
        return images, names
    if params.get("image") is not None:
        return [params["image"]], [str(params.get("name", "") or "")]
    images = list(params.get("images") or [])
    if not images:
        raise ImageInputError("extras: no input image (give image, images or input_dir)")
    names = [str(n or "") for n in (params.get("names") or [])]
    return images, names + [""] * (len(images) - len(names))


def run_extras(params: dict[str, Any], settings: Any = None, paths: Any = None, job_ctx: Any = None,
               registry: up.UpscalerRegistry | None = None) -> JobResult:
    """Upscale every input image; returns what is done when interrupted."""
    if not isinstance(params, dict):
        raise ImageInputError(f"extras params must be a dict of A1111 extras fields, got {type(params).__name__}")
    opts = ExtrasOptions.from_params(params)
    registry = registry or up.UpscalerRegistry(paths, settings)
    images, names = _inputs(params)
    limit = float(setting_value(settings, "img_max_size_mp", 200.0) or 0)
    for i, image in enumerate(images):
        check_image(image, f"extras image {names[i] or i}", limit)
    registry.find(opts.upscaler_1)
    if job_ctx is not None:
        job_ctx.begin(job_count=len(images), textinfo="Extras")
    should_stop = job_ctx.should_stop if job_ctx is not None else None
    result = JobResult()
    outdir = extras_folder(settings, paths, opts.output_dir)
    for i, image in enumerate(images):
        if job_ctx is not None:
            if job_ctx.interrupted:
                result.interrupted = True
                break
            job_ctx.set_job_no(i)
        w, h = _final_size(image, opts)
        check_size(w, h, f"extras result for image {names[i] or i}", limit)
        try:
            out, info = postprocess(image, opts, registry, should_stop)
        except InterruptedError:
            result.interrupted = True
            break
        text = info_text(info)
        if "parameters" in image.info:
            out.info["parameters"] = image.info["parameters"]
        out.info["extras"] = text
        if opts.save_output:
            try:
                result.saved_paths.append(str(save_extras_image(out, image, text, names[i], outdir, settings)))
            except Exception as exc:  # noqa: BLE001 - the image is still returned
                msg = f"could not save extras image {names[i] or i}: {type(exc).__name__}: {exc}"
                log.warning(msg)
                result.warnings.append(msg)
        if opts.show_extras_results or not params.get("input_dir"):
            result.images.append(out)
            result.infotexts.append(text)
        if job_ctx is not None:
            job_ctx.step(1, 1)
    result.info = {"html_info": "<br>".join(result.infotexts)}
    result.value = {"html_info": result.info["html_info"]}
    return result


def _final_size(image: Image.Image, opts: ExtrasOptions) -> tuple[int, int]:
    if opts.upscaler_1 in ("", "None"):
        return image.size
    if int(opts.resize_mode) == 1:
        if opts.upscaling_crop:
            return int(opts.upscaling_resize_w), int(opts.upscaling_resize_h)
        scale = max(int(opts.upscaling_resize_w) / image.width, int(opts.upscaling_resize_h) / image.height)
    else:
        scale = float(opts.upscaling_resize)
    return int(image.width * scale), int(image.height * scale)


def registry_for(ctx: Any) -> up.UpscalerRegistry:
    """The upscaler registry of a job: its model manager's (``manager.upscalers``); a service without a model
    manager (extras need no checkpoint) gets a registry for the job's folders."""
    if ctx.manager is None:
        return up.UpscalerRegistry(ctx.paths, ctx.settings)
    return up.registry_of(ctx.manager)


def run_extras_job(ctx: Any) -> JobResult:
    """``JobService`` runner for kind "extras"."""
    paths = ctx.paths if ctx.paths is not None else getattr(ctx.manager, "paths", None)
    return run_extras(ctx.params, ctx.settings, paths, ctx, registry_for(ctx))
