"""The "SD upscale" img2img script (spec §8.1).

1. Fix the seed. 2. Flatten the init image onto the background colour. 3. Upscale it by the scale
factor with the chosen upscaler ("None" = no upscale). 4. Split it into ``width x height`` tiles
(the Width/Height sliders are the tile size) with the given overlap (``app.engine.image.tiles.split_grid``).
5. img2img the tiles ``batch_size`` at a time; ``n_iter`` is the number of whole upscales; upscale
``n`` starts at ``seed + n`` and every batch of tiles uses the previous batch's first seed + 1.
6. Recombine with linear blending across the overlaps (``combine_grid``). 7. Save each result
(``samples_save``; never a grid) with infotext keys ``SD upscale overlap`` / ``SD upscale upscaler``.

Memory stays flat: only one batch of tiles goes through the model at a time; the big image only
lives in RAM. Script args (``ScriptParams.args``): ``[overlap, upscaler, scale_factor]``, or with
A1111's leading info string ``["", overlap, upscaler, scale_factor]``, or a dict with those keys;
the upscaler is a name (case-insensitive) or an index into the upscaler list.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from PIL import Image

from app.engine import rng
from app.engine.image import upscalers as up
from app.engine.image.resize import ImageInputError, check_size, flatten
from app.engine.image.tiles import combine_grid, split_grid
from app.engine.modes.img2img import SubJobContext, resolve_params, run_plan
from app.engine.outputs import JobOutputs
from app.engine.plan import Batch, Plan
from app.jobs.job import JobResult

TITLE = "SD upscale"


@dataclasses.dataclass(frozen=True)
class SdUpscaleArgs:
    overlap: int = 64
    upscaler: up.UpscalerInfo | None = None
    scale_factor: float = 2.0


def parse_args(args: Any, registry: up.UpscalerRegistry) -> SdUpscaleArgs:
    """Script args → ``SdUpscaleArgs`` (``ImageInputError`` naming the bad argument)."""
    if isinstance(args, dict):
        overlap = args.get("overlap", args.get("Tile overlap", 64))
        upscaler = args.get("upscaler", args.get("upscaler_index", args.get("Upscaler", "None")))
        scale = args.get("scale_factor", args.get("Scale Factor", 2.0))
    else:
        values = list(args or [])
        if len(values) == 4 or (values and isinstance(values[0], str) and len(values) > 3):
            values = values[1:]  # A1111's leading "info" HTML value
        defaults = [64, "None", 2.0]
        overlap, upscaler, scale = (values + defaults[len(values) :])[:3]
    try:
        overlap = int(overlap)
    except (TypeError, ValueError):
        raise ImageInputError(f"SD upscale: Tile overlap must be an integer, got {overlap!r}") from None
    if overlap < 0:
        raise ImageInputError(f"SD upscale: Tile overlap must be >= 0, got {overlap}")
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise ImageInputError(f"SD upscale: Scale Factor must be a number, got {scale!r}") from None
    if not scale > 0:
        raise ImageInputError(f"SD upscale: Scale Factor must be > 0, got {scale}")
    choices = registry.list()
    if upscaler is None or upscaler == "":
        info = choices[0]
    elif isinstance(upscaler, int) and not isinstance(upscaler, bool):
        if not 0 <= upscaler < len(choices):
            raise ImageInputError(f"SD upscale: upscaler index {upscaler} out of range 0..{len(choices) - 1}")
        info = choices[upscaler]
    else:
        info = registry.find(str(upscaler))
    return SdUpscaleArgs(overlap, info, scale)


def run_sd_upscale(manager: Any, params: Any, settings: Any, job_ctx: Any = None) -> JobResult:
    i2i = params.img2img
    registry = up.registry_of(manager)
    args = parse_args(params.script.args if params.script is not None else [], registry)
    if args.overlap >= min(params.width, params.height):
        raise ImageInputError(
            f"SD upscale: Tile overlap ({args.overlap}) must be smaller than the tile size {params.width}x{params.height}"
        )
    resolve_params(params, settings)  # the usual input checks (image type, size limit, strength)
    seed = rng.resolve_seed(params.seed.seed)
    subseed = rng.resolve_seed(params.seed.subseed)
    background = _get(settings, params, "img2img_background_color", "#ffffff")
    init = flatten(i2i.init_images[0], str(background or "#ffffff"))
    upscaler = args.upscaler
    if upscaler is not None and upscaler.id != "none":
        w, h = int(init.width * args.scale_factor), int(init.height * args.scale_factor)
        check_size(w, h, "SD upscale result", float(_get(settings, params, "img_max_size_mp", 200.0) or 0))
        image = registry.upscale(init, upscaler.name, args.scale_factor)
    else:
        image = init
    grid = split_grid(image, tile_w=params.width, tile_h=params.height, overlap=args.overlap)
    tiles = [t for t in grid.iter_tiles()]
    work = [t.image for t in tiles]
    batch_size = max(1, int(params.batch_size))
    batch_count = math.ceil(len(work) / batch_size)
    upscale_count = max(1, int(params.n_iter))
    if job_ctx is not None:
        job_ctx.begin(job_count=batch_count * upscale_count, textinfo=f"SD upscale: {len(work)} tiles")
    extra = {"SD upscale overlap": args.overlap, "SD upscale upscaler": upscaler.name if upscaler else "None"}
    first_plan = None
    results: list[Image.Image] = []
    warnings: list[str] = []
    interrupted = False
    for n in range(upscale_count):
        current = seed + n
        done: list[Image.Image] = []
        for i in range(batch_count):
            if job_ctx is not None and job_ctx.interrupted:
                interrupted = True
                break
            sub = _tile_params(params, work[i * batch_size : (i + 1) * batch_size], current, subseed)
            sub_ctx = SubJobContext(job_ctx, n * batch_count + i) if job_ctx is not None else None
            plan, res = run_plan(manager, sub, settings, sub_ctx, begin=False, extra=extra)
            first_plan = first_plan or plan
            warnings += [w for w in res.warnings if w not in warnings]
            done += res.images
            current += 1
        for tile, new in zip(tiles, done, strict=False):
            tile.image = new
        results.append(combine_grid(grid))
        if interrupted:
            break
    if first_plan is None:
        return JobResult(interrupted=True, warnings=warnings)
    return _outputs(first_plan, params, results, seed, subseed, warnings, interrupted)


def _get(settings: Any, params: Any, key: str, default: Any) -> Any:
    if key in params.override_settings:
        return params.override_settings[key]
    if settings is None:
        return default
    value = settings.get(key, default)
    return default if value is None else value


def _tile_params(params: Any, tiles: list[Image.Image], seed: int, subseed: int) -> Any:
    sub = params.copy()
    sub.script = None
    sub.n_iter = 1
    sub.batch_size = len(tiles)
    sub.save_images = False
    sub.save_grid = False
    sub.seed.seed = seed
    sub.seed.subseed = subseed
    sub.img2img.init_images = list(tiles)
    sub.img2img.mask = None
    sub.img2img.scale_by = None
    sub.img2img.resize_mode = 0
    return sub


def _outputs(first: Plan, params: Any, results: list[Image.Image], seed: int, subseed: int,
             warnings: list[str], interrupted: bool) -> JobResult:
    """Infotext and saving of the recombined images through the usual job outputs."""
    final = params.copy()
    final.batch_size, final.n_iter, final.save_grid = 1, len(results), False
    final.img2img.scale_by = None
    n = len(results)
    plan = dataclasses.replace(
        first,
        params=final,
        seeds=[seed + i for i in range(n)],
        subseeds=[subseed + i for i in range(n)],
        all_prompts=first.all_prompts[:1] * n,
        all_negative_prompts=first.all_negative_prompts[:1] * n,
        warnings=list(warnings),
    )
    outputs = JobOutputs(plan)
    for i, image in enumerate(results):
        batch = Batch(i, plan.all_prompts[i : i + 1], plan.all_negative_prompts[i : i + 1], [plan.seeds[i]],
                           [plan.subseeds[i]])
        outputs.add_batch(batch, [image])
    result = outputs.finish()
    result.interrupted = result.interrupted or interrupted
    return result
