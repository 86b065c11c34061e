"""Shared parts of the built-in selectable scripts (Prompt matrix, Prompts from file, Loopback, outpainting).

A script runs ordinary txt2img / img2img jobs ("sub-jobs") with changed params through the job context of the
whole job (``SubJobContext``: one progress bar, interrupt and skip reach every sub-job), then merges their results
into one ``JobResult`` (images, infotexts, seeds, prompts, the API ``info``) and, where A1111 does, adds a grid
in front (``index_of_first_image = 1``) and saves it like a job grid.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from PIL import Image

from app.engine.modes.img2img import SubJobContext, run_prepared
from app.engine.modes.txt2img import run_txt2img
from app.engine.plan import EffectiveSettings
from app.jobs.job import JobResult
from app.outputs.filenames import NamingContext
from app.outputs.job import JobSaver


def script_args(params: Any, defaults: Sequence[Any]) -> list[Any]:
    """The script's positional args padded with *defaults* (A1111's API fills missing args from the UI's)."""
    values = list(params.script.args if params.script is not None else [])
    return pad_args(values, defaults, params.script.name if params.script is not None else "script")


def pad_args(values: Sequence[Any], defaults: Sequence[Any], title: str) -> list[Any]:
    """*values* padded with *defaults*; more values than the script has args is an error."""
    if len(values) > len(defaults):
        raise ValueError(f"{title}: expected at most {len(defaults)} script_args, got {len(values)}")
    return list(values) + list(defaults[len(values):])


def as_bool(value: Any, label: str) -> bool:
    """A checkbox arg (bool, 0/1 or "true"/"false")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{label} must be true or false, got {value!r}")


def as_number(value: Any, label: str, minimum: float, maximum: float, integer: bool = False) -> Any:
    """A slider arg within [minimum, maximum]."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{label} must be a number, got {value!r}") from None
    if not minimum <= number <= maximum:
        raise ValueError(f"{label} must be between {minimum:g} and {maximum:g}, got {value!r}")
    if integer:
        if not number.is_integer():
            raise ValueError(f"{label} must be a whole number, got {value!r}")
        return int(number)
    return number


def as_choice(value: Any, label: str, choices: Sequence[str]) -> str:
    """A radio/dropdown arg: one of *choices* (case-insensitive), or its index."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(choices):
        return choices[value]
    for choice in choices:
        if isinstance(value, str) and value.strip().lower() == choice.lower():
            return choice
    raise ValueError(f"{label} must be one of {', '.join(choices)}; got {value!r}")


def sub_params(params: Any) -> Any:
    """A copy of *params* for one sub-job: no script, no grid of its own."""
    sub = params.copy()
    sub.script = None
    sub.save_grid = False
    return sub


def run_sub(manager: Any, params: Any, settings: Any, job_ctx: Any, offset: int,
            extra: dict[str, Any] | None = None) -> JobResult:
    """Run one sub-job (img2img when ``params.img2img`` is set, else txt2img) as part of *job_ctx*'s job;
    *extra* (infotext keys) is for img2img sub-jobs only."""
    ctx = SubJobContext(job_ctx, offset) if job_ctx is not None else None
    if params.img2img is not None:
        return run_prepared(manager, params, settings, ctx, begin=False, extra=extra)
    if extra:
        raise ValueError("infotext extras are only supported for img2img sub-jobs")
    return run_txt2img(manager, params, settings, ctx)


def stopped(job_ctx: Any) -> bool:
    """Whether the user interrupted the whole job."""
    return job_ctx is not None and bool(getattr(job_ctx, "interrupted", False))


def merge(results: Sequence[JobResult], grid: Image.Image | None = None, saved: Sequence[str] = (),
          interrupted: bool = False) -> JobResult:
    """One result from the sub-jobs' results, with *grid* first when given (its infotext is the first image's)."""
    out = JobResult(interrupted=interrupted)
    for res in results:
        first = int(res.info.get("index_of_first_image", 0) or 0) if res.info else 0
        out.images += res.images[first:]
        out.infotexts += res.infotexts[first:]
        out.seeds += res.seeds
        out.subseeds += res.subseeds
        out.all_prompts += res.all_prompts
        out.all_negative_prompts += res.all_negative_prompts
        out.warnings += [w for w in res.warnings if w not in out.warnings]
        out.saved_paths += res.saved_paths
        out.interrupted = out.interrupted or res.interrupted
    info = dict(results[0].info) if results and results[0].info else {}
    index = 0
    if grid is not None and out.images:
        out.images.insert(0, grid)
        out.infotexts.insert(0, out.infotexts[0])
        index = 1
    out.saved_paths += list(saved)
    if info:
        info.update(all_prompts=out.all_prompts, all_negative_prompts=out.all_negative_prompts,
                    all_seeds=out.seeds, all_subseeds=out.subseeds, infotexts=out.infotexts,
                    index_of_first_image=index)
        errors = [e for res in results for e in res.info.get("save_errors", [])]
        if errors:
            info["save_errors"] = errors
    out.info = info
    return out


def job_saver(manager: Any, params: Any, settings: Any, job_ctx: Any, kind: str, warn: Any) -> JobSaver:
    """The job's saver over its effective settings (for the script's own grid or combined image)."""
    eff = EffectiveSettings(settings, params.override_settings)
    paths = getattr(job_ctx, "paths", None) or getattr(manager, "paths", None)
    make = getattr(job_ctx, "saver", None) if job_ctx is not None else None
    if make is not None:
        return make(kind, params, eff, paths, warn)
    return JobSaver(kind, params, eff, paths, warn)


def save_image(saver: JobSaver, image: Image.Image, text: str, params: Any, seed: int, prompt: str,
               grid: bool) -> list[str]:
    """Save a grid (when the settings save grids) or a combined sample (when they save samples); the paths."""
    wanted = saver.wants_grid() if grid else saver.wants_samples()
    if not wanted:
        return []
    image.info["parameters"] = text
    path = saver.save(image, text, NamingContext(params=params, seed=seed, prompt=prompt, image=image), grid=grid)
    return [str(path)] if path is not None else []


def return_grid(settings: Any, params: Any) -> bool:
    """Setting "Show grid in gallery" (``return_grid``)."""
    return bool(EffectiveSettings(settings, params.override_settings).get("return_grid", True))


def with_margins(images: Sequence[Image.Image], rows: int, margin: int) -> Image.Image:
    """Images in *rows* rows (row-major), cells the first image's size, *margin* white pixels between cells."""
    cols = -(-len(images) // rows)
    w, h = images[0].width, images[0].height
    grid = Image.new("RGB", (cols * w + (cols - 1) * margin, rows * h + (rows - 1) * margin), "white")
    for i, image in enumerate(images):
        grid.paste(image, ((i % cols) * (w + margin), (i // cols) * (h + margin)))
    return grid


def set_size(text: str, width: int, height: int) -> str:
    """An infotext with its ``Size:`` changed (a combined image is bigger than the tiles it was made of)."""
    return re.sub(r"Size: \d+x\d+", f"Size: {width}x{height}", text, count=1)


def result_of(first: JobResult, images: list[Image.Image], infotexts: list[str], seeds: list[int],
              grid: Image.Image | None = None, saved: Sequence[str] = (), interrupted: bool = False) -> JobResult:
    """A result of images the script composed itself (outpainting), described by the first sub-job's result."""
    n = len(images)
    prompts = (first.all_prompts[:1] or [""]) * n
    negatives = (first.all_negative_prompts[:1] or [""]) * n
    subseeds = (first.subseeds[:1] or [0]) * n
    out = JobResult(images=list(images), infotexts=list(infotexts), seeds=list(seeds), subseeds=subseeds,
                    all_prompts=prompts, all_negative_prompts=negatives, warnings=list(first.warnings),
                    saved_paths=list(saved), interrupted=interrupted or first.interrupted)
    index = 0
    if grid is not None and images:
        out.images.insert(0, grid)
        out.infotexts.insert(0, out.infotexts[0])
        index = 1
    info = dict(first.info or {})
    if images:
        info.update(all_prompts=prompts, all_negative_prompts=negatives, all_seeds=out.seeds, all_subseeds=subseeds,
                    infotexts=out.infotexts, index_of_first_image=index, width=images[0].width,
                    height=images[0].height)
    out.info = info
    return out


def expand_geometry(width: int, height: int, pixels: int, directions: Sequence[str]) -> tuple[int, int, int, int,
                                                                                               int, int]:
    """Outpainting's canvas: (target_w, target_h, left, right, up, down); the canvas is the image plus *pixels*
    on each chosen side, rounded up to a multiple of 64, the rounding shared between opposite sides."""
    left = pixels if "left" in directions else 0
    right = pixels if "right" in directions else 0
    up = pixels if "up" in directions else 0
    down = pixels if "down" in directions else 0
    target_w = -(-(width + left + right) // 64) * 64
    target_h = -(-(height + up + down) // 64) * 64
    if left > 0:
        left = left * (target_w - width) // (left + right)
    if right > 0:
        right = target_w - width - left
    if up > 0:
        up = up * (target_h - height) // (up + down)
    if down > 0:
        down = target_h - height - up
    return target_w, target_h, left, right, up, down


DIRECTIONS = ("left", "right", "up", "down")


def as_directions(value: Any) -> list[str]:
    """The "Outpainting direction" checkbox group: a list of left/right/up/down (a comma-separated string too)."""
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value or [])
    out = []
    for item in items:
        if str(item).lower() not in DIRECTIONS:
            raise ValueError(f"Outpainting direction must be among {', '.join(DIRECTIONS)}; got {item!r}")
        out.append(str(item).lower())
    if not out:
        raise ValueError("Outpainting direction: choose at least one of left, right, up, down")
    return out
