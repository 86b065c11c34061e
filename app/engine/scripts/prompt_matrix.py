"""The "Prompt matrix" script (txt2img and img2img; A1111 ``scripts/prompt_matrix.py``, spec §8.3).

The prompt (or the negative prompt) ``base|a|b|c`` is split at ``|``: the first part is always there, the others
are switched on and off in every combination, 2^(parts-1) images in combination order (image ``k`` has part ``i``
when bit ``i`` of ``k`` is set), joined with ``", "`` or ``" "``, the variable parts after the base or (with "Put
variable parts at start of prompt") before it. Every image gets the same seed, or seed + k with "Use different
seed for each picture". The grid has 2^(n//2) rows (n = variable parts); the first half of the parts label the
columns, the rest the rows, each label struck through where that part is off; "Grid margins (px)" puts white space
between the cells. Args (A1111's positional ``script_args``): ``[put_at_start, different_seeds, prompt_type
("positive"|"negative"), variations_delimiter ("comma"|"space"), margin_size]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.engine import rng
from app.engine.scripts import common
from app.jobs.job import JobResult
from app.plugins.compat.grid_annotations import draw_prompt_matrix

TITLE = "Prompt matrix"
DEFAULTS = (False, False, "positive", "comma", 0)
#: Above this many variable parts (2^12 = 4096 images) the job is refused before anything runs.
MAX_PARTS = 12


@dataclass(frozen=True)
class MatrixArgs:
    put_at_start: bool
    different_seeds: bool
    prompt_type: str
    delimiter: str
    margin: int


def parse_args(params: Any) -> MatrixArgs:
    """``script_args`` → ``MatrixArgs`` (``ValueError`` naming the bad argument)."""
    put_at_start, different, prompt_type, joining, margin = common.script_args(params, DEFAULTS)
    return MatrixArgs(
        common.as_bool(put_at_start, "Put variable parts at start of prompt"),
        common.as_bool(different, "Use different seed for each picture"),
        common.as_choice(prompt_type, "Select prompt", ("positive", "negative")),
        ", " if common.as_choice(joining, "Select joining char", ("comma", "space")) == "comma" else " ",
        common.as_number(margin, "Grid margins (px)", 0, 500, integer=True),
    )


def combinations(prompt: str, delimiter: str = ", ", put_at_start: bool = False) -> tuple[list[str], list[str]]:
    """(the matrix parts, every combination's prompt in A1111's order)."""
    parts = prompt.split("|")
    if len(parts) - 1 > MAX_PARTS:
        raise ValueError(f"Prompt matrix: at most {MAX_PARTS} '|' parts (2^{MAX_PARTS} images), got {len(parts) - 1}")
    prompts = []
    for k in range(2 ** (len(parts) - 1)):
        chosen = [text.strip().strip(",") for i, text in enumerate(parts[1:]) if k & (1 << i)]
        prompts.append(delimiter.join(chosen + [parts[0]] if put_at_start else [parts[0]] + chosen))
    return parts, prompts


def run_prompt_matrix(manager: Any, params: Any, settings: Any, job_ctx: Any = None) -> JobResult:
    """Run every combination as its own image, then the labelled grid in front."""
    args = parse_args(params)
    source = params.prompt if args.prompt_type == "positive" else params.negative_prompt
    parts, prompts = combinations(source, args.delimiter, args.put_at_start)
    seed = rng.resolve_seed(params.seed.seed)
    subseed = rng.resolve_seed(params.seed.subseed)
    if job_ctx is not None:
        job_ctx.begin(job_count=len(prompts), textinfo=f"Prompt matrix: {len(prompts)} images")
    results: list[JobResult] = []
    for k, prompt in enumerate(prompts):
        if common.stopped(job_ctx):
            break
        sub = common.sub_params(params)
        sub.batch_size = sub.n_iter = 1
        if args.prompt_type == "positive":
            sub.prompt = prompt
        else:
            sub.negative_prompt = prompt
        sub.seed.seed = seed + (k if args.different_seeds else 0)
        sub.seed.subseed = subseed + k
        results.append(common.run_sub(manager, sub, settings, job_ctx, k))
    if not results or not any(r.images for r in results):
        return JobResult(interrupted=True)
    merged = common.merge(results, interrupted=len(results) < len(prompts))
    images = merged.images
    if len(images) < 2 or len(images) != len(prompts):
        return merged  # interrupted part way: no grid of a partial matrix
    rows = 1 << ((len(parts) - 1) // 2)
    grid = common.with_margins(images, rows, args.margin)
    grid = draw_prompt_matrix(grid, images[0].width, images[0].height, parts, args.margin)
    warnings: list[str] = []
    saver = common.job_saver(manager, params, settings, job_ctx, "img2img" if params.img2img else "txt2img",
                             warnings.append)
    saved = common.save_image(saver, grid, merged.infotexts[0], params, seed, source, grid=True)
    final = common.merge(results, grid=grid if common.return_grid(settings, params) else None, saved=saved)
    final.warnings += warnings
    return final
