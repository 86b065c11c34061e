"""Job kind → runner: what the job service calls for "txt2img", "img2img" and "extras" jobs.

A runner takes the job context and returns a ``JobResult``. The img2img runner also dispatches
img2img's own variants: a folder batch (``extras["img2img_batch"]``), the "SD upscale" script, and
plain img2img / inpaint. An extension's selectable script takes the job before any of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.engine.modes.extras import run_extras_job
from app.engine.modes.img2img import run_prepared
from app.engine.modes.img2img_batch import run_img2img_batch
from app.engine.modes.merge import run_merge_job
from app.engine.modes.sd_upscale import run_sd_upscale
from app.engine.modes.txt2img import run_txt2img
from app.engine.scripts import run_builtin_script
from app.jobs.job import JobResult
from app.plugins.compat.adapter import run_script_job


def run_txt2img_job(ctx: Any) -> JobResult:
    """Runner for kind "txt2img" (or an extension's selectable script)."""
    if (result := run_script_job(ctx)) is not None:
        return result
    if (result := run_builtin_script("txt2img", ctx.manager, ctx.params, ctx.settings, ctx)) is not None:
        return result  # Prompt matrix, Prompts from file or textbox
    return run_txt2img(ctx.manager, ctx.params, ctx.settings, ctx)


def run_img2img_job(ctx: Any) -> JobResult:
    """Runner for kind "img2img" (the "SD upscale" script included)."""
    if (result := run_script_job(ctx)) is not None:  # an extension's selectable script
        return result
    return run_img2img(ctx.manager, ctx.params, ctx.settings, ctx)


def run_img2img(manager: Any, params: Any, settings: Any, job_ctx: Any = None) -> JobResult:
    """Run an img2img / inpaint job (folder batch and SD upscale included); returns what exists when interrupted."""
    batch = params.extras.get("img2img_batch") if isinstance(params.extras, dict) else None
    if batch:
        if not isinstance(batch, dict):
            raise ValueError("extras['img2img_batch'] must be a dict (input_dir, output_dir, inpaint_mask_dir, ...)")
        return run_img2img_batch(manager, params, settings, job_ctx, **batch)
    if params.img2img is None:
        raise ValueError("img2img needs params.img2img (init images); submit plain generation as kind='txt2img'")
    script = (params.script.name if params.script is not None else "").strip().lower()
    if script == "sd upscale":
        return run_sd_upscale(manager, params, settings, job_ctx)
    if (result := run_builtin_script("img2img", manager, params, settings, job_ctx)) is not None:
        return result  # Prompt matrix, Prompts from file, Loopback, the outpaintings
    if script and script != "none":
        raise ValueError(f"script {params.script.name!r} is not available for img2img")
    return run_prepared(manager, params, settings, job_ctx)


#: The built-in job kinds and their runners (the Runtime hands this table to ``app.jobs.service.JobService``).
RUNNERS: dict[str, Callable[[Any], JobResult]] = {
    "txt2img": run_txt2img_job,
    "img2img": run_img2img_job,
    "extras": run_extras_job,
    "merge": run_merge_job,  # Checkpoint Merger (app/engine/modes/merge.py)
}


def register_runners(service: Any) -> None:
    """Register the built-in runners (:data:`RUNNERS`) on *service* (for tests and custom services; the Runtime
    passes the table when it builds its service). Jobs use their model manager's upscalers (``manager.upscalers``).
    """
    for kind, runner in RUNNERS.items():
        service.register_runner(kind, runner)
