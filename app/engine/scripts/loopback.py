"""The "Loopback" script (img2img only; A1111 ``scripts/loopback.py``).

Each of ``n_iter`` batches starts again from the init image and runs ``loops`` img2img passes, each pass's output
the next pass's input, at batch size 1. The seed goes up by 1 per pass. The denoising strength moves from the
UI's value (first pass) to "Final denoising strength" (last pass) along the curve: progress ``t = i / (loops-1)``
after pass ``i``; Linear ``t``, Aggressive ``sin(t*pi/2)``, Lazy ``1 - cos(t*pi/2)``. After the first pass masked
content becomes "original". With one batch every pass's image is returned, else each batch's last; a one-row grid
of those goes first when there is more than one. Infotext: the pass's ``Denoising strength`` plus ``Final denoising
strength`` and ``Denoising curve``. "Append interrogated prompt" accepts only "None": no interrogator (CLIP /
DeepBooru) is installed, and any other value is refused. Args: ``[loops, final_denoising_strength,
denoising_curve, append_interrogation]``.
"""

from __future__ import annotations

import math
from typing import Any

from app.engine import rng
from app.engine.scripts import common
from app.jobs.job import JobResult
from app.outputs.save import make_grid

TITLE = "Loopback"
DEFAULTS = (4, 0.5, "Linear", "None")
CURVES = ("Aggressive", "Linear", "Lazy")
INTERROGATORS = ("None",)


def strength_at(loop: int, loops: int, initial: float, final: float, curve: str) -> float:
    """The denoising strength of pass *loop* (0-based) of *loops*."""
    if loops == 1 or loop == 0:
        return initial
    progress = loop / (loops - 1)
    if curve == "Aggressive":
        shaped = math.sin(progress * math.pi * 0.5)
    elif curve == "Lazy":
        shaped = 1 - math.cos(progress * math.pi * 0.5)
    else:
        shaped = progress
    return initial + (final - initial) * shaped


def run_loopback(manager: Any, params: Any, settings: Any, job_ctx: Any = None) -> JobResult:
    """``n_iter`` chains of ``loops`` img2img passes."""
    if params.img2img is None or not params.img2img.init_images:
        raise ValueError("Loopback is an img2img script: it needs an init image")
    loops, final, curve, interrogate = common.script_args(params, DEFAULTS)
    loops = common.as_number(loops, "Loops", 1, 32, integer=True)
    final = common.as_number(final, "Final denoising strength", 0, 1)
    curve = common.as_choice(curve, "Denoising strength curve", CURVES)
    if str(interrogate) not in INTERROGATORS:
        raise ValueError(f"Append interrogated prompt at each iteration: {interrogate!r} is not available "
                         f"(no interrogator is installed); use 'None'")
    initial = params.img2img.denoising_strength
    batch_count = max(1, int(params.n_iter))
    seed = rng.resolve_seed(params.seed.seed)
    subseed = rng.resolve_seed(params.seed.subseed)
    extra = {"Final denoising strength": final, "Denoising curve": curve}
    if job_ctx is not None:
        job_ctx.begin(job_count=loops * batch_count, textinfo=f"Loopback: {loops} loops x {batch_count}")
    kept: list[JobResult] = []
    interrupted = False
    for n in range(batch_count):
        image = params.img2img.init_images[0]
        last: JobResult | None = None
        for i in range(loops):
            if common.stopped(job_ctx):
                interrupted = True
                break
            sub = common.sub_params(params)
            sub.batch_size = sub.n_iter = 1
            sub.seed.seed, sub.seed.subseed = seed, subseed
            sub.img2img.init_images = [image]
            sub.img2img.denoising_strength = strength_at(i, loops, initial, final, curve)
            if i > 0:
                sub.img2img.inpainting_fill = 1  # "original" after the first pass
            res = common.run_sub(manager, sub, settings, job_ctx, n * loops + i, extra=extra)
            if not res.images:
                interrupted = True
                break
            seed, subseed = seed + 1, subseed + 1
            last = res
            image = res.images[-1]
            if batch_count == 1:
                kept.append(res)
            if job_ctx is not None and getattr(job_ctx, "skipped", False):
                break
        if batch_count > 1 and last is not None and not interrupted:
            kept.append(last)
        if interrupted:
            break
    if not kept:
        return JobResult(interrupted=True)
    merged = common.merge(kept, interrupted=interrupted)
    if len(merged.images) < 2:
        return merged
    grid = make_grid(merged.images, rows=1)
    warnings: list[str] = []
    saver = common.job_saver(manager, params, settings, job_ctx, "img2img", warnings.append)
    saved = common.save_image(saver, grid, merged.infotexts[0], params, merged.seeds[0], params.prompt, grid=True)
    final_result = common.merge(kept, grid=grid if common.return_grid(settings, params) else None, saved=saved,
                                interrupted=interrupted)
    final_result.warnings += warnings
    return final_result
