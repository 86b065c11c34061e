"""Built-in selectable scripts (A1111's scripts/ folder, our own code): title → runner, per job kind.

``run_builtin_script`` is what the txt2img / img2img runners call first; it returns None when the job names no
built-in script of this module. "SD upscale" stays in ``app.engine.modes.sd_upscale``. Which titles the UI and the
API offer is ``app.params.RUNNABLE_SCRIPTS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.jobs.job import JobResult


def _runners() -> dict[str, tuple[Callable[..., JobResult], tuple[str, ...]]]:
    from app.engine.scripts.loopback import run_loopback
    from app.engine.scripts.outpainting import run_outpainting_mk2, run_poor_mans_outpainting
    from app.engine.scripts.prompt_matrix import run_prompt_matrix
    from app.engine.scripts.prompts_from_file import run_prompts_from_file
    from app.engine.scripts.xyz_plot import run_xyz_plot

    both = ("txt2img", "img2img")
    return {
        "prompt matrix": (run_prompt_matrix, both),
        "prompts from file or textbox": (run_prompts_from_file, both),
        "loopback": (run_loopback, ("img2img",)),
        "outpainting mk2": (run_outpainting_mk2, ("img2img",)),
        "poor man's outpainting": (run_poor_mans_outpainting, ("img2img",)),
        "x/y/z plot": (run_xyz_plot, both),
    }


def run_builtin_script(kind: str, manager: Any, params: Any, settings: Any, job_ctx: Any = None) -> JobResult | None:
    """Run the job's built-in script, or None when it names none of them."""
    name = (params.script.name if params.script is not None else "").strip().lower()
    entry = _runners().get(name)
    if entry is None:
        return None
    runner, kinds = entry
    if kind not in kinds:
        raise ValueError(f"script {params.script.name!r} is not available for {kind}")
    return runner(manager, params, settings, job_ctx)
