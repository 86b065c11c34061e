"""The img2img outpainting scripts: "Poor man's outpainting" and "Outpainting mk2" (A1111
``scripts/poor_mans_outpainting.py`` and ``scripts/outpainting_mk_2.py``).

Both grow the init image by "Pixels to expand" on the chosen sides (the canvas rounded up to a multiple of 64,
``common.expand_geometry``) and inpaint the new border.

Poor man's: the image on a black canvas, a mask that is white outside the original (the original kept, shrunk by
2 x blur on the expanded sides), cut into Width x Height tiles overlapping by the pixels; every tile touching the
border is inpainted with the chosen masked content (seed + 1 per tile), mask blur 2 x the slider; the tiles are
blended back (one image per job). Args: ``[pixels, mask_blur, inpainting_fill (index or name), direction]``.

mk2: one side after the other (left, right, up, down), each a strip at most Width (or Height) wide holding the new
pixels and the edge of the picture, filled first with noise shaped like the picture (``outpaint_noise``), then
inpainted with masked content "original" and mask blur 4 x the slider; ``batch_size`` pictures per batch,
``n_iter`` batches (batch ``i`` starts at seed + i * batch_size; A1111 reuses one seed for every batch). A grid
goes first when there is more than one picture. Args: ``[info, pixels, mask_blur, direction, noise_q,
color_variation]`` (A1111's leading info HTML value may be left out).

A1111 also hands the sampler a sharper "latent mask"; our inpainting uses the blurred mask for both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from app.engine import rng
from app.engine.image.tiles import combine_grid, split_grid
from app.engine.scripts import common
from app.engine.scripts.outpaint_noise import matched_noise
from app.jobs.job import JobResult
from app.outputs.save import make_grid
from app.params import MASKED_CONTENT

POOR_TITLE = "Poor man's outpainting"
MK2_TITLE = "Outpainting mk2"
POOR_DEFAULTS = (128, 4, "fill", list(common.DIRECTIONS))
MK2_DEFAULTS = (128, 8, list(common.DIRECTIONS), 1.0, 0.05)


def _init(params: Any, title: str) -> Image.Image:
    if params.img2img is None or not params.img2img.init_images:
        raise ValueError(f"{title} is an img2img script: it needs an init image")
    return params.img2img.init_images[0].convert("RGB")


def _save(manager: Any, params: Any, settings: Any, job_ctx: Any, images: list[Image.Image], texts: list[str],
          seeds: list[int], warnings: list[str]) -> list[str]:
    """Save the composed pictures as samples (the sub-jobs saved nothing) and, for several, their grid."""
    saver = common.job_saver(manager, params, settings, job_ctx, "img2img", warnings.append)
    saved: list[str] = []
    for image, text, seed in zip(images, texts, seeds, strict=True):
        saved += common.save_image(saver, image, text, params, seed, params.prompt, grid=False)
    return saved


def run_poor_mans_outpainting(manager: Any, params: Any, settings: Any, job_ctx: Any = None) -> JobResult:
    """Tile the expanded canvas and inpaint the tiles on its border."""
    init = _init(params, POOR_TITLE)
    pixels, blur, fill, directions = common.script_args(params, POOR_DEFAULTS)
    pixels = common.as_number(pixels, "Pixels to expand", 8, 256, integer=True)
    blur = common.as_number(blur, "Mask blur", 0, 64, integer=True)
    fill_index = MASKED_CONTENT.index(common.as_choice(fill, "Masked content", MASKED_CONTENT))
    directions = common.as_directions(directions)
    if pixels >= min(params.width, params.height):
        raise ValueError(f"{POOR_TITLE}: Pixels to expand ({pixels}) must be smaller than the tile size "
                         f"{params.width}x{params.height} (the tiles overlap by that much)")
    target_w, target_h, left, right, up, down = common.expand_geometry(init.width, init.height, pixels, directions)
    canvas = Image.new("RGB", (target_w, target_h))
    canvas.paste(init, (left, up))
    mask = Image.new("L", canvas.size, "white")
    ImageDraw.Draw(mask).rectangle((
        left + (blur * 2 if left else 0), up + (blur * 2 if up else 0),
        target_w - right - (blur * 2 if right else 0), target_h - down - (blur * 2 if down else 0)), fill="black")
    grid = split_grid(canvas, tile_w=params.width, tile_h=params.height, overlap=pixels)
    mask_grid = split_grid(mask, tile_w=params.width, tile_h=params.height, overlap=pixels)
    work = []
    for row, mask_row in zip(grid.tiles, mask_grid.tiles, strict=True):
        for tile, mask_tile in zip(row.tiles, mask_row.tiles, strict=True):
            inside = (tile.x >= left and tile.x + tile.w <= target_w - right and row.y >= up
                      and row.y + row.h <= target_h - down)
            if not inside:
                work.append((tile, row.h, mask_tile.image))
    seed = rng.resolve_seed(params.seed.seed)
    subseed = rng.resolve_seed(params.seed.subseed)
    if job_ctx is not None:
        job_ctx.begin(job_count=len(work), textinfo=f"{POOR_TITLE}: {len(work)} tiles")
    first: JobResult | None = None
    interrupted = False
    for i, (tile, tile_h, tile_mask) in enumerate(work):
        if common.stopped(job_ctx):
            interrupted = True
            break
        sub = common.sub_params(params)
        sub.batch_size = sub.n_iter = 1
        sub.save_images = False
        sub.seed.seed, sub.seed.subseed = seed + i, subseed + i
        sub.img2img.init_images = [tile.image]
        sub.img2img.mask = tile_mask
        sub.img2img.mask_blur_x = sub.img2img.mask_blur_y = blur * 2
        sub.img2img.inpainting_fill = fill_index
        sub.img2img.inpaint_full_res = False
        sub.img2img.resize_mode = 0
        sub.img2img.scale_by = None
        res = common.run_sub(manager, sub, settings, job_ctx, i)
        if not res.images:
            interrupted = True
            break
        first = first or res
        done = res.images[0]
        tile.image = done if done.size == (tile.w, tile_h) else done.resize((tile.w, tile_h), Image.LANCZOS)
    if first is None:
        return JobResult(interrupted=True)
    combined = combine_grid(grid)
    text = common.set_size(first.infotexts[0], combined.width, combined.height)
    combined.info["parameters"] = text
    warnings: list[str] = []
    saved = _save(manager, params, settings, job_ctx, [combined], [text], [seed], warnings)
    out = common.result_of(first, [combined], [text], [seed], saved=saved, interrupted=interrupted)
    out.warnings += warnings
    return out



def _mk2_args(params: Any) -> tuple[int, int, list[str], float, float]:
    values = list(params.script.args if params.script is not None else [])
    if len(values) == 6 or (values and isinstance(values[0], str) and not values[0].strip().lstrip("-").isdigit()):
        values = values[1:]  # A1111's leading info HTML value
    pixels, blur, directions, falloff, variation = common.pad_args(values, MK2_DEFAULTS, MK2_TITLE)
    return (common.as_number(pixels, "Pixels to expand", 8, 256, integer=True),
            common.as_number(blur, "Mask blur", 0, 64, integer=True), common.as_directions(directions),
            common.as_number(falloff, "Fall-off exponent (lower=higher detail)", 0, 4),
            common.as_number(variation, "Color variation", 0, 1))


def _strip(image: Image.Image, pixels: int, blur: int, side: str, width: int, height: int, falloff: float,
           variation: float) -> tuple[Image.Image, Image.Image, Image.Image, tuple[int, int]]:
    """(noise-filled canvas, the strip to inpaint, its mask, the picture's final size) for one side."""
    horizontal = side in ("left", "right")
    res_w = image.width + (pixels if horizontal else 0)
    res_h = image.height + (0 if horizontal else pixels)
    canvas_w, canvas_h = -(-res_w // 64) * 64, -(-res_h // 64) * 64
    canvas = Image.new("RGB", (canvas_w, canvas_h))
    canvas.paste(image, (pixels if side == "left" else 0, pixels if side == "up" else 0))
    mask = Image.new("L", (canvas_w, canvas_h), "white")
    ImageDraw.Draw(mask).rectangle((
        pixels + blur if side == "left" else 0, pixels + blur if side == "up" else 0,
        canvas_w - pixels - blur if side == "right" else res_w,
        canvas_h - pixels - blur if side == "down" else res_h), fill="black")
    noised = matched_noise(np.asarray(canvas) / 255.0, np.asarray(mask) / 255.0, falloff, variation)
    filled = Image.fromarray((noised * 255.0).round().astype(np.uint8), "RGB")
    strip_w = min(width, res_w) if horizontal else canvas_w
    strip_h = canvas_h if horizontal else min(height, res_h)
    box = (0 if side == "left" else canvas_w - strip_w, 0 if side == "up" else canvas_h - strip_h,
           strip_w if side == "left" else canvas_w, strip_h if side == "up" else canvas_h)
    return filled, filled.crop(box), mask.crop(box), (res_w, res_h)


def run_outpainting_mk2(manager: Any, params: Any, settings: Any, job_ctx: Any = None) -> JobResult:
    """Grow every picture side by side; ``n_iter`` batches of ``batch_size`` pictures."""
    init = _init(params, MK2_TITLE)
    pixels, blur, directions, falloff, variation = _mk2_args(params)
    _, _, left, right, up, down = common.expand_geometry(init.width, init.height, pixels, directions)
    sides = [(side, amount) for side, amount in (("left", left), ("right", right), ("up", up), ("down", down))
             if amount > 0]
    batch_size, batch_count = max(1, int(params.batch_size)), max(1, int(params.n_iter))
    seed = rng.resolve_seed(params.seed.seed)
    subseed = rng.resolve_seed(params.seed.subseed)
    if job_ctx is not None:
        job_ctx.begin(job_count=batch_count * len(sides), textinfo=f"{MK2_TITLE}: {batch_count} batches")
    first: JobResult | None = None
    pictures: list[Image.Image] = []
    seeds: list[int] = []
    interrupted = False
    for b in range(batch_count):
        images = [init] * batch_size
        for s, (side, amount) in enumerate(sides):
            if common.stopped(job_ctx):
                interrupted = True
                break
            strips = [_strip(im, amount, blur, side, params.width, params.height, falloff, variation)
                      for im in images]
            sub = common.sub_params(params)
            sub.n_iter, sub.batch_size, sub.save_images = 1, batch_size, False
            sub.seed.seed, sub.seed.subseed = seed + b * batch_size, subseed + b * batch_size
            sub.width, sub.height = strips[0][1].size
            sub.img2img.init_images = [strip for _, strip, _, _ in strips]
            sub.img2img.mask = strips[0][2]
            sub.img2img.mask_blur_x = sub.img2img.mask_blur_y = blur * 4
            sub.img2img.inpainting_fill, sub.img2img.inpaint_full_res = 1, False
            sub.img2img.resize_mode, sub.img2img.scale_by = 0, None
            res = common.run_sub(manager, sub, settings, job_ctx, b * len(sides) + s)
            if len(res.images) < batch_size:
                interrupted = True
                break
            first = first or res
            grown = []
            for (filled, _, _, size), done in zip(strips, res.images, strict=False):
                filled.paste(done, (0 if side == "left" else filled.width - done.width,
                                    0 if side == "up" else filled.height - done.height))
                grown.append(filled.crop((0, 0, *size)))
            images = grown
        if interrupted:
            break
        pictures += images
        seeds += [seed + b * batch_size + j for j in range(batch_size)]
    if first is None or not pictures:
        return JobResult(interrupted=True)
    texts = [common.set_size(first.infotexts[0], im.width, im.height) for im in pictures]
    for image, text in zip(pictures, texts, strict=True):
        image.info["parameters"] = text
    warnings: list[str] = []
    saved = _save(manager, params, settings, job_ctx, pictures, texts, seeds, warnings)
    grid = None
    if len(pictures) > 1:
        grid = make_grid(pictures)
        saver = common.job_saver(manager, params, settings, job_ctx, "img2img", warnings.append)
        saved += common.save_image(saver, grid, texts[0], params, seeds[0], params.prompt, grid=True)
    out = common.result_of(first, pictures, texts, seeds, grid=grid if common.return_grid(settings, params) else None,
                           saved=saved, interrupted=interrupted)
    out.warnings += warnings
    return out
