"""img2img "Batch" tab: every image of an input folder through img2img (optionally inpaint).

Submit as kind "img2img" with ``params.extras["img2img_batch"] = {"input_dir": ..., "output_dir": ...,
"inpaint_mask_dir": ..., "use_png_info": False, "png_info_props": [...], "png_info_dir": ""}``
(``params.img2img`` holds the other img2img settings; its init images are ignored).

A1111 behaviour: the seed is fixed once for the whole folder; images are read with their EXIF
orientation; an unreadable file is skipped with a warning; with a mask folder, a single mask file
is used for every image, otherwise the mask named like the image (``<stem>.*``) is used and an
image without one is skipped with a warning. With an output folder, results are written there
flat, named after the input (``<stem>.png``; numbered when a file gives several images).
``use_png_info`` takes Prompt (appended), Negative prompt (appended), Seed, CFG scale, Sampler and
Steps from the infotext of the image (or of the same-named file in ``png_info_dir``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from app.engine.image.resize import ImageInputError
from app.engine.modes.img2img import SubJobContext, run_prepared
from app.jobs.job import JobResult
from app.params import Img2ImgParams

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
PNG_INFO_PROPS = ("Prompt", "Negative prompt", "Seed", "CFG scale", "Sampler", "Steps")


def batch_files(input_dir: str | Path) -> list[Path]:
    """The images of *input_dir* (recursively, sorted); ``ImageInputError`` for a missing folder."""
    folder = Path(str(input_dir or "").strip())
    if not str(folder) or not folder.is_dir():
        raise ImageInputError(f"img2img batch: input directory {str(folder)!r} does not exist")
    return sorted((p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda p: str(p).lower())


def find_mask(image_path: Path, mask_dir: str | Path) -> Path | None:
    """The mask for *image_path*: the only file of *mask_dir*, else ``<stem>.*`` there, else None."""
    folder = Path(mask_dir)
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    if len(files) == 1:
        return files[0]
    matches = sorted(p for p in files if p.stem == image_path.stem)
    return matches[0] if matches else None


def _read(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return ImageOps.exif_transpose(im) or im.copy()


def _apply_png_info(params: Any, source: Image.Image, props: list[str], base: Any) -> None:
    from app.infotext.parse import parse_generation_parameters
    from app.infotext.storage import read_info_from_image

    text, _ = read_info_from_image(source)
    if not text:
        return
    parsed = parse_generation_parameters(text)
    if "Prompt" in props and parsed.get("Prompt"):
        params.prompt = f"{base.prompt} {parsed['Prompt']}".strip()
    if "Negative prompt" in props and parsed.get("Negative prompt"):
        params.negative_prompt = f"{base.negative_prompt} {parsed['Negative prompt']}".strip()
    if "Seed" in props and "Seed" in parsed:
        params.seed.seed = int(parsed["Seed"])
    if "CFG scale" in props and "CFG scale" in parsed:
        params.cfg_scale = float(parsed["CFG scale"])
    if "Sampler" in props and parsed.get("Sampler"):
        params.sampler_name = str(parsed["Sampler"])
    if "Steps" in props and "Steps" in parsed:
        params.steps = int(parsed["Steps"])


def run_img2img_batch(
    manager: Any,
    params: Any,
    settings: Any,
    job_ctx: Any = None,
    input_dir: str = "",
    output_dir: str = "",
    inpaint_mask_dir: str = "",
    use_png_info: bool = False,
    png_info_props: list[str] | tuple[str, ...] = PNG_INFO_PROPS,
    png_info_dir: str = "",
) -> JobResult:
    """Run img2img on every image of *input_dir*; returns all images (what exists when interrupted)."""
    from app.engine import rng

    files = batch_files(input_dir)
    if not files:
        raise ImageInputError(f"img2img batch: no images in {input_dir!r}")
    mask_dir = str(inpaint_mask_dir or "").strip()
    if mask_dir and not Path(mask_dir).is_dir():
        raise ImageInputError(f"img2img batch: inpaint mask directory {mask_dir!r} does not exist")
    base = params.copy()
    base.extras = {k: v for k, v in base.extras.items() if k != "img2img_batch"}
    if base.img2img is None:
        base.img2img = Img2ImgParams()
    base.seed.seed = rng.resolve_seed(base.seed.seed)
    base.seed.subseed = rng.resolve_seed(base.seed.subseed)
    out_dir = str(output_dir or "").strip()
    if job_ctx is not None:
        job_ctx.begin(job_count=len(files) * base.n_iter, textinfo=f"img2img batch: {len(files)} images")
    result = JobResult()
    for i, path in enumerate(files):
        if job_ctx is not None and job_ctx.interrupted:
            result.interrupted = True
            break
        try:
            image = _read(path)
        except (UnidentifiedImageError, OSError) as exc:
            result.warnings.append(f"{path}: not a readable image, skipped ({exc})")
            continue
        item = base.copy()
        item.img2img.init_images = [image]
        item.img2img.mask = None
        if mask_dir:
            mask_path = find_mask(path, mask_dir)
            if mask_path is None:
                result.warnings.append(f"{path}: no mask named {path.stem}.* in {mask_dir}, skipped")
                continue
            item.img2img.mask = _read(mask_path)
        if use_png_info:
            info_source = image
            if png_info_dir:
                candidates = sorted(Path(png_info_dir).glob(f"{path.stem}.*"))
                info_source = _read(candidates[0]) if candidates else image
            _apply_png_info(item, info_source, list(png_info_props), base)
        if out_dir:
            several = item.n_images > 1
            item.outpath_samples = out_dir
            item.override_settings = {
                **item.override_settings,
                "save_to_dirs": False,
                "samples_filename_pattern": path.stem.replace("[", "(").replace("]", ")"),
                "save_images_add_number": several,
            }
            item.save_images = True
        sub_ctx = SubJobContext(job_ctx, i * base.n_iter) if job_ctx is not None else None
        res = run_prepared(manager, item, settings, sub_ctx)
        result.images += res.images
        result.infotexts += res.infotexts
        result.seeds += res.seeds
        result.subseeds += res.subseeds
        result.all_prompts += res.all_prompts
        result.all_negative_prompts += res.all_negative_prompts
        result.saved_paths += res.saved_paths
        result.warnings += [w for w in res.warnings if w not in result.warnings]
        if not result.info:
            result.info = dict(res.info)
        if res.interrupted:
            result.interrupted = True
            break
    return result
