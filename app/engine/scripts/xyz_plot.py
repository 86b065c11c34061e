"""The "X/Y/Z plot" script (txt2img and img2img; A1111 1.10 ``scripts/xyz_grid.py``, spec §8.2).

Every combination of the X, Y and Z values is one cell: an ordinary txt2img / img2img sub-job on the job's context
(one progress bar, interrupt and skip reach each cell). The costliest axis (checkpoint, VAE) is the outer loop, so
each checkpoint is loaded once; the job's own checkpoint and VAE are put back afterwards. The result is A1111's:
the grid first (then the per-Z sub grids with "Include Sub Grids", then the cells with "Include Sub Images");
``infotexts`` are the grid's (with ``Script``, ``X Type``, ``X Values``, ...) followed by every cell's; ``all_seeds``
and ``all_prompts`` are the cells'. The grid is saved like a job grid (``xyz_grid``); cells like samples.

Args (A1111's positional ``script_args``): ``[x_type, x_values, x_values_dropdown, y_type, y_values,
y_values_dropdown, z_type, z_values, z_values_dropdown, draw_legend, include_lone_images, include_sub_grids,
no_fixed_seeds, vary_seeds_x, vary_seeds_y, vary_seeds_z, margin_size, csv_mode]``; axis types are indices into
``app.xyz.axes.axes_for(kind)`` (or axis labels).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.engine import rng
from app.engine.plan import EffectiveSettings
from app.engine.scripts import common
from app.engine.scripts.xyz_grid import draw_plot, empty_cell, with_params
from app.jobs.job import JobResult
from app.plugins import hooks
from app.xyz import axes
from app.xyz import values as vals

log = logging.getLogger(__name__)

TITLE = "X/Y/Z plot"
DEFAULTS = (1, "", [], 0, "", [], 0, "", [], True, False, False, False, False, False, False, 0, False)


@dataclass
class AxisArgs:
    name: str  # "X", "Y" or "Z"
    axis: axes.Axis
    text: str
    values: list[Any]


@dataclass
class PlotArgs:
    x: AxisArgs
    y: AxisArgs
    z: AxisArgs
    draw_legend: bool
    include_lone_images: bool
    include_sub_grids: bool
    no_fixed_seeds: bool
    vary_seeds: tuple[bool, bool, bool]
    margin: int
    csv_mode: bool


def parse_args(params: Any, kind: str, choices: Any = None, extra: Sequence[axes.Axis] = ()) -> PlotArgs:
    """``script_args`` → ``PlotArgs`` with every axis's values parsed and checked (``ValueError`` naming the arg);
    *extra*: the extensions' axes (``extension_axes``)."""
    a = common.script_args(params, DEFAULTS)
    flags = [common.as_bool(v, label) for v, label in zip(a[9:16], (
        "Draw legend", "Include Sub Images", "Include Sub Grids", "Keep -1 for seeds", "Vary seeds for X",
        "Vary seeds for Y", "Vary seeds for Z"), strict=True)]
    margin = common.as_number(a[16], "Grid margins (px)", 0, 500, integer=True)
    csv_mode = common.as_bool(a[17], "Use text inputs instead of dropdowns")
    parsed = []
    for i, name in enumerate("XYZ"):
        axis = axes.find_axis(kind, a[i * 3], name, extra)
        why = axes.unavailable_reason(axis, kind)
        if why:
            raise ValueError(f"{name} type {axis.label!r} is not available: {why}")
        text = a[i * 3 + 1] if isinstance(a[i * 3 + 1], str) else vals.to_csv([str(v) for v in a[i * 3 + 1] or []])
        values = _ext_values(axis, params, text, a[i * 3 + 2], csv_mode, choices)
        vals.check_prompt_values(axis, values, params.prompt, params.negative_prompt)
        parsed.append(AxisArgs(name, axis, text if axis.choices is None or csv_mode else _dropdown_text(a, i, text),
                               values))
    return PlotArgs(*parsed, flags[0], flags[1], flags[2], flags[3], (flags[4], flags[5], flags[6]), margin, csv_mode)


def _ext_values(axis: axes.Axis, params: Any, text: str, dropdown: Any, csv_mode: bool, choices: Any) -> list[Any]:
    """An axis's values; an extension's axis also through its own ``prepare`` (typed text), ``type`` and
    ``confirm`` (A1111's order)."""
    ext = axis.ext
    if ext is None:
        return vals.axis_values(axis, text, dropdown, csv_mode, choices)
    typed = axis.choices is None or csv_mode or not dropdown
    try:
        if typed and getattr(ext, "prepare", None) is not None:
            values = list(ext.prepare(text))
        else:
            values = vals.axis_values(axis, text, dropdown, csv_mode, choices)
        values = ext.convert(params, values)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - the extension's check refused the values: a clear error
        raise ValueError(f"{axis.label}: {type(exc).__name__}: {exc}") from exc
    if not values:
        raise ValueError(f"{axis.label}: the values give no cell")
    return values


def extension_axes(manager: Any) -> tuple[axes.Axis, ...]:
    """The X/Y/Z axes the extensions loaded in this process added (A1111 ``xyz_grid.axis_options``)."""
    return axes.from_options(hooks.xyz_axis_options(hooks.registry_of(manager)))


def _dropdown_text(args: Sequence[Any], i: int, text: str) -> str:
    """The "X Values" infotext of a choice axis run from its dropdown: the selection as CSV (as A1111)."""
    chosen = args[i * 3 + 2]
    if isinstance(chosen, list | tuple) and chosen:
        return vals.to_csv([str(v) for v in chosen])
    return text


def choice_lists(manager: Any, params: Any) -> Any:
    """Name → choice list for validating typed values (checkpoints are checked through the catalog instead)."""
    def lists(name: str) -> list[str]:
        if name == "samplers":
            from app.engine.sampling.names import SAMPLER_NAMES
            return [n for s in SAMPLER_NAMES for n in s.names()]
        if name == "schedulers":
            from app.engine.sampling.schedules import SCHEDULE_TYPES
            return [n for s in SCHEDULE_TYPES for n in s.names()]
        if name == "vaes":
            catalog = getattr(manager, "catalog", None)
            return ["Automatic", "None", *[v.name for v in catalog.vaes()]] if catalog is not None else []
        if name == "hr_upscalers":
            from app.engine.image.upscalers import hires_upscaler_names, registry_of
            return hires_upscaler_names(registry_of(manager))
        if name == "styles":
            from app.prompts.styles import StyleDatabase
            paths = getattr(manager, "paths", None)
            files = getattr(paths, "styles_files", None) or []
            return StyleDatabase(list(files)).names() if files else []
        return []
    return lists


def _confirm_checkpoints(manager: Any, plot: PlotArgs) -> None:
    catalog = getattr(manager, "catalog", None)
    if catalog is None:
        return
    for ax in (plot.x, plot.y, plot.z):
        if ax.axis.choices in ("checkpoints", "checkpoints_or_none"):
            for value in ax.values:
                if value == "None" and ax.axis.choices == "checkpoints_or_none":
                    continue
                if catalog.find_checkpoint(str(value)) is None:
                    raise ValueError(f"Unknown checkpoint: {value}")


def run_xyz_plot(manager: Any, params: Any, settings: Any, job_ctx: Any = None) -> JobResult:
    """Run every cell, then build the grid(s) and the merged result."""
    kind = "img2img" if params.img2img is not None else "txt2img"
    plot = parse_args(params, kind, choice_lists(manager, params), extension_axes(manager))
    _confirm_checkpoints(manager, plot)
    base = params.copy()
    if not plot.no_fixed_seeds:
        base.seed.seed = rng.resolve_seed(base.seed.seed)
        base.seed.subseed = rng.resolve_seed(base.seed.subseed)
        for ax in (plot.x, plot.y, plot.z):
            ax.values = vals.fix_seeds(ax.axis, ax.values)
    if not common.return_grid(settings, params):
        base.batch_size = 1
    xs, ys, zs = plot.x.values, plot.y.values, plot.z.values
    max_mp = float(EffectiveSettings(settings, params.override_settings).get("img_max_size_mp", 200) or 0)
    vals.check_cell_count(len(xs), len(ys), len(zs), base.width, base.height, max_mp)
    first, second = vals.processing_order(plot.x.axis.cost, plot.y.axis.cost, plot.z.axis.cost)
    order = vals.cell_order(len(xs), len(ys), len(zs), first, second)
    count = len(order)
    if job_ctx is not None:
        job_ctx.begin(job_count=count * base.n_iter,
                      textinfo=f"X/Y/Z plot: {count} cells on {len(zs)} {len(xs)}x{len(ys)} grid(s)")
    results: list[JobResult | None] = [None] * count
    errors: list[BaseException] = []
    warnings: list[str] = []
    try:
        for done, (ix, iy, iz) in enumerate(order):
            if common.stopped(job_ctx):
                break
            cell = _cell_params(base, plot, ix, iy, iz)
            index = ix + iy * len(xs) + iz * len(xs) * len(ys)
            try:
                results[index] = common.run_sub(manager, cell, settings, job_ctx, done * base.n_iter)
            except Exception as exc:  # noqa: BLE001 - one bad cell leaves an empty cell, as A1111
                log.warning("X/Y/Z plot: cell %d failed: %s", index + 1, exc)
                errors.append(exc)
                warnings.append(f"X/Y/Z plot: cell {index + 1} failed: {exc}")
    finally:
        _restore_models(manager, params, plot)
    if not any(r is not None and r.images for r in results):
        if errors:
            raise errors[0]
        return JobResult(interrupted=True)
    return _assemble(manager, params, settings, job_ctx, base, plot, results, warnings)


def _cell_params(base: Any, plot: PlotArgs, ix: int, iy: int, iz: int) -> Any:
    cell = common.sub_params(base)
    cell.save_grid = base.save_grid  # a batch per cell: its grid is the cell's picture (A1111 with return_grid)
    for ax, i in ((plot.x, ix), (plot.y, iy), (plot.z, iz)):
        axes.apply(cell, ax.axis, ax.values[i], ax.values)
    vary_x, vary_y, vary_z = plot.vary_seeds
    nx = len(plot.x.values) if vary_x else 1
    ny = len(plot.y.values) if vary_y else 1
    offset = (ix if vary_x else 0) + (iy * nx if vary_y else 0) + (iz * nx * ny if vary_z else 0)
    if offset and cell.seed.seed != -1:
        cell.seed.seed += offset
    return cell


def _restore_models(manager: Any, params: Any, plot: PlotArgs) -> None:
    """Put the job's own checkpoint and VAE back after a checkpoint or VAE axis (A1111 reloads them too)."""
    if not any(ax.axis.target in ("checkpoint", "vae") for ax in (plot.x, plot.y, plot.z)):
        return
    if not hasattr(manager, "get"):
        return
    try:
        with manager.lock:
            checkpoint = params.checkpoint or params.override_settings.get("sd_model_checkpoint", "")
            vae = params.vae or params.override_settings.get("sd_vae", "") or None
            manager.get(checkpoint, vae=vae)
    except Exception as exc:  # noqa: BLE001 - the plot is done; the next job loads what it needs
        log.warning("X/Y/Z plot: could not restore the checkpoint: %s", exc)


def _grid_params(plot: PlotArgs, z: bool) -> dict[str, Any]:
    out: dict[str, Any] = {} if z else {"Script": TITLE}
    for ax in ((plot.z,) if z else (plot.x, plot.y)):
        if ax.axis.kind == "none":
            continue
        out[f"{ax.name} Type"] = ax.axis.label
        out[f"{ax.name} Values"] = ax.text
        if ax.axis.label in ("Seed", "Var. seed") and not plot.no_fixed_seeds:
            out[f"Fixed {ax.name} Values"] = ", ".join(str(v) for v in ax.values)
    return out


def _assemble(manager: Any, params: Any, settings: Any, job_ctx: Any, base: Any, plot: PlotArgs,
              results: list[JobResult | None], warnings: list[str]) -> JobResult:
    xs, ys, zs = plot.x.values, plot.y.values, plot.z.values
    per_z = len(xs) * len(ys)
    first = next(r for r in results if r is not None and r.images)
    like = first.images[0]
    cells = [r.images[0] if r is not None and r.images else empty_cell(like, base.width, base.height)
             for r in results]
    labels = [[axes.label(ax.axis, v) for v in ax.values] for ax in (plot.x, plot.y, plot.z)]
    whole, subs = draw_plot(cells, labels[0], labels[1], labels[2], plot.draw_legend, plot.margin)
    texts = [r.infotexts[0] if r is not None and r.infotexts else "" for r in results]
    seeds = [r.seeds[0] if r is not None and r.seeds else base.seed.seed for r in results]
    prompts = [r.all_prompts[0] if r is not None and r.all_prompts else base.prompt for r in results]
    negatives = [r.all_negative_prompts[0] if r is not None and r.all_negative_prompts else base.negative_prompt
                 for r in results]
    subseeds = [r.subseeds[0] if r is not None and r.subseeds else base.seed.subseed for r in results]
    sub_texts = [with_params(texts[iz * per_z] or texts[0], _grid_params(plot, False)) for iz in range(len(zs))]
    grid_text = with_params(sub_texts[0], _grid_params(plot, True))
    saver = common.job_saver(manager, params, settings, job_ctx, "img2img" if params.img2img else "txt2img",
                             warnings.append)
    saved = common.save_image(saver, whole, grid_text, params, seeds[0], prompts[0], grid=True)
    if plot.include_sub_grids and len(zs) > 1:
        for iz, sub in enumerate(subs):
            saved += common.save_image(saver, sub, sub_texts[iz], params, seeds[iz * per_z], prompts[iz * per_z],
                                       grid=True)
    images = [whole]
    infotexts = [grid_text]
    if plot.include_sub_grids:
        images += subs
        infotexts += sub_texts
        seeds = [seeds[iz * per_z] for iz in range(len(zs))] + seeds
        prompts = [prompts[iz * per_z] for iz in range(len(zs))] + prompts
    if plot.include_lone_images:
        images += cells
    infotexts += texts
    out = JobResult(images=images, infotexts=infotexts, seeds=seeds, subseeds=subseeds, all_prompts=prompts,
                    all_negative_prompts=negatives, saved_paths=list(saved), interrupted=any(r is None for r in results))
    for r in results:
        if r is not None:
            out.warnings += [w for w in r.warnings if w not in out.warnings]
            out.saved_paths += r.saved_paths
            out.interrupted = out.interrupted or r.interrupted
    out.warnings += warnings
    info = dict(first.info or {})
    info.update(all_prompts=prompts, all_negative_prompts=negatives, all_seeds=seeds, all_subseeds=subseeds,
                infotexts=infotexts, index_of_first_image=1)
    out.info = info
    return out
