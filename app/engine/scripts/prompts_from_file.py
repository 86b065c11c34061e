"""The "Prompts from file or textbox" script (txt2img and img2img; A1111 ``scripts/prompts_from_file.py``, §8.4).

Every non-empty line of the list is one job. A line with ``--`` in it is read shell-style as ``--key value``
options (``--prompt`` and ``--negative_prompt`` take every word up to the next ``--``); the keys and their types
are A1111's (:data:`LINE_OPTIONS`). A line that does not parse runs as a plain prompt, with a job warning saying
why (A1111 logs the error and does the same). A line's prompt goes before ("start") or after ("end") the UI's
prompt, joined by a space; the same for its negative prompt. Seeds: "Iterate seed every line" adds
``batch_size * n_iter`` (the UI's) to the seed after every line; with it or "Use same random seed for all lines"
a -1 seed is fixed once first, else every line draws its own. No grid (as A1111). Args: ``[checkbox_iterate,
checkbox_iterate_batch, prompt_position ("start"|"end"), prompt_txt]``.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from app.engine import rng
from app.engine.sampling.names import SAMPLER_NAMES, find_sampler_name
from app.engine.scripts import common
from app.jobs.job import JobResult

TITLE = "Prompts from file or textbox"
DEFAULTS = (False, False, "start", "")
MAX_LINES = 10_000


def _string(value: str) -> str:
    return value


def _boolean(value: str) -> bool:
    return value == "true"  # as A1111: anything else is False


#: A1111's allowed ``--key`` options and how each value is read.
LINE_OPTIONS: dict[str, Callable[[str], Any]] = {
    "sd_model": _string, "outpath_samples": _string, "outpath_grids": _string, "prompt_for_display": _string,
    "prompt": _string, "negative_prompt": _string, "styles": _string, "seed": int, "subseed_strength": float,
    "subseed": int, "seed_resize_from_h": int, "seed_resize_from_w": int, "sampler_index": int,
    "sampler_name": _string, "batch_size": int, "n_iter": int, "steps": int, "cfg_scale": float, "width": int,
    "height": int, "restore_faces": _boolean, "tiling": _boolean, "do_not_save_samples": _boolean,
    "do_not_save_grid": _boolean,
}


def parse_line(line: str) -> dict[str, Any]:
    """``--key value ...`` → {key: typed value}; ``ValueError`` saying what is wrong."""
    words = shlex.split(line)
    out: dict[str, Any] = {}
    pos = 0
    while pos < len(words):
        word = words[pos]
        if not word.startswith("--"):
            raise ValueError(f'must start with "--": {word}')
        if pos + 1 >= len(words):
            raise ValueError(f"missing argument for command line option {word}")
        key = word[2:]
        if key in ("prompt", "negative_prompt"):
            pos += 1
            text = [words[pos]]
            pos += 1
            while pos < len(words) and not words[pos].startswith("--"):
                text.append(words[pos])
                pos += 1
            out[key] = " ".join(text)
            continue
        reader = LINE_OPTIONS.get(key)
        if reader is None:
            raise ValueError(f"unknown commandline option: {word}")
        try:
            out[key] = reader(words[pos + 1])
        except ValueError:
            raise ValueError(f"{word}: bad value {words[pos + 1]!r}") from None
        pos += 2
    return out


def parse_lines(text: str, warn: Callable[[str], None]) -> list[dict[str, Any]]:
    """The jobs of the list: one dict of options per non-empty line."""
    lines = [x.strip() for x in str(text or "").splitlines()]
    lines = [x for x in lines if x]
    if len(lines) > MAX_LINES:
        raise ValueError(f"Prompts from file: at most {MAX_LINES} lines, got {len(lines)}")
    jobs = []
    for number, line in enumerate(lines, 1):
        if "--" in line:
            try:
                jobs.append(parse_line(line))
                continue
            except ValueError as exc:
                warn(f"Prompts from file: line {number} is not valid options ({exc}); used as a prompt")
        jobs.append({"prompt": line})
    return jobs


def apply_line(params: Any, options: dict[str, Any], position: str) -> Any:
    """A copy of *params* with one line's options applied."""
    sub = common.sub_params(params)
    seeds = sub.seed
    direct = {"steps", "cfg_scale", "width", "height", "batch_size", "n_iter", "tiling", "outpath_samples"}
    for key, value in options.items():
        if key in direct:
            setattr(sub, key, value)
        elif key in ("seed", "subseed", "subseed_strength", "seed_resize_from_h", "seed_resize_from_w"):
            setattr(seeds, key, value)
        elif key == "sd_model":
            sub.checkpoint = value
        elif key == "styles":
            sub.styles = [s.strip() for s in value.split(",") if s.strip()]
        elif key == "sampler_name":
            sub.sampler_name = find_sampler_name(value).name
        elif key == "sampler_index":
            if not 0 <= value < len(SAMPLER_NAMES):
                raise ValueError(f"--sampler_index {value} out of range 0..{len(SAMPLER_NAMES) - 1}")
            sub.sampler_name = SAMPLER_NAMES[value].name
        elif key == "do_not_save_samples":
            sub.save_images = not value
        elif key == "restore_faces" and value:
            raise ValueError("--restore_faces true: face restoration is not available")
        # prompt / negative_prompt below; outpath_grids, prompt_for_display, do_not_save_grid: no grid is made
    for key in ("prompt", "negative_prompt"):
        line_text, ui_text = options.get(key), getattr(params, key)
        if line_text and ui_text:
            setattr(sub, key, f"{line_text} {ui_text}" if position == "start" else f"{ui_text} {line_text}")
        elif line_text:
            setattr(sub, key, line_text)
    return sub


def run_prompts_from_file(manager: Any, params: Any, settings: Any, job_ctx: Any = None) -> JobResult:
    """One sub-job per line; their images in order (no grid)."""
    iterate, same_seed, position, text = common.script_args(params, DEFAULTS)
    iterate = common.as_bool(iterate, "Iterate seed every line")
    same_seed = common.as_bool(same_seed, "Use same random seed for all lines")
    position = common.as_choice(position, "Insert prompts at the", ("start", "end"))
    warnings: list[str] = []
    jobs = parse_lines(str(text or ""), warnings.append)
    if not jobs:
        raise ValueError("Prompts from file or textbox: the list of prompt inputs is empty")
    subs = [apply_line(params, options, position) for options in jobs]  # every line checked before anything runs
    seed = params.seed.seed
    if iterate or same_seed:
        seed = rng.resolve_seed(seed)  # a -1 seed is drawn once for all lines
    total = sum(s.n_iter for s in subs)
    if job_ctx is not None:
        job_ctx.begin(job_count=total, textinfo=f"Prompts from file: {len(subs)} lines in {total} jobs")
    results: list[JobResult] = []
    offset = 0
    for options, sub in zip(jobs, subs, strict=True):
        if common.stopped(job_ctx):
            break
        if "seed" not in options:
            sub.seed.seed = seed
        results.append(common.run_sub(manager, sub, settings, job_ctx, offset))
        offset += sub.n_iter
        if iterate:
            seed = seed + params.batch_size * params.n_iter
    if not results:
        return JobResult(interrupted=True, warnings=warnings)
    merged = common.merge(results, interrupted=len(results) < len(subs))
    merged.warnings = warnings + [w for w in merged.warnings if w not in warnings]
    return merged
