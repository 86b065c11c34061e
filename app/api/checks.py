"""Checks of a converted job that need the running app: settings overrides, models, the size grid and the memory
limit (`app.api.convert` applies them; `validate_overrides` also checks `POST /options`).

A1111's leniency is followed where clients rely on it: a missing checkpoint/VAE in a job's overrides falls back to
the current one with a warning, sizes are floored to the model's latent grid. What stays refused: unknown setting
keys in `override_settings` and invalid setting values (A1111 fails on them too), sizes below one latent pixel, and
a batch larger than the setting `api_max_generation_megapixels` (a memory-safety limit, 413 naming the setting).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from app.api.errors import ApiError
from app.params import GenerationParams, InvalidParams, check_params, floor_to_grid

log = logging.getLogger("app.api.convert")


def warn(warnings: list[str], message: str) -> None:
    log.warning("API request: %s", message)
    warnings.append(message)


def check_checkpoint(value: Any, field_name: str, catalog: Any) -> str:
    if catalog is None or not value:
        return str(value or "")
    info = catalog.find_checkpoint(str(value))
    if info is None:
        titles = [c.title for c in catalog.checkpoints()]
        raise ApiError(422, f"{field_name}: checkpoint {value!r} not found; available: {', '.join(titles) or '(none)'}")
    return str(info.title)


def validate_overrides(overrides: dict[str, Any], ctx: Any, where: str = "override_settings",
                       warnings: list[str] | None = None) -> dict[str, Any]:
    """Each key must be a known setting with a valid value (422 naming it). A checkpoint or VAE that does not exist
    is a 422 too, unless `warnings` is given (a job's overrides): then, as A1111 does, the override is dropped (the
    job uses the current model) and the reason is added to `warnings`."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if warnings is not None and key in ("sd_model_checkpoint", "sd_vae") and missing_model(key, value, ctx):
            current = ctx.settings.get(key) if ctx.settings is not None else None
            warn(warnings, f"{where}.{key}: {value!r} not found; using the current one ({current or 'none'}) "
                            "instead")
            continue
        if ctx.settings is not None:
            try:
                value = ctx.settings.validate(key, value)
            except KeyError:
                raise ApiError(422, f"{where}: unknown setting {key!r}") from None
            except ValueError as exc:
                raise ApiError(422, f"{where}: {exc}") from None
        if key == "sd_model_checkpoint":
            value = check_checkpoint(value, f"{where}.sd_model_checkpoint", ctx.catalog)
        elif key == "sd_vae" and ctx.catalog is not None and value:
            choices = ctx.catalog.vae_choices()
            if value not in choices:
                raise ApiError(422, f"{where}.sd_vae: VAE {value!r} not found; available: {', '.join(choices)}")
        elif key == "forge_additional_modules" and ctx.catalog is not None and hasattr(ctx.catalog, "modules"):
            _check_modules(value, f"{where}.forge_additional_modules", ctx.catalog)
        bad = _non_finite(value)
        if bad is not None:
            raise ApiError(422, f"{where}.{key}: {bad!r} is not a finite number (NaN and Infinity are refused)")
        out[key] = value
    return out


def _check_modules(value: Any, field_name: str, catalog: Any) -> None:
    """Every ``forge_additional_modules`` entry must name a text encoder or VAE file (path or file name)."""
    from app.models.catalog.parts import find_module

    modules = catalog.modules()
    for entry in value or []:
        if not isinstance(entry, str) or find_module(modules, entry) is None:
            names = ", ".join(m.name for m in modules) or "(none)"
            raise ApiError(422, f"{field_name}: module {entry!r} not found; available: {names}")


def missing_model(key: str, value: Any, ctx: Any) -> bool:
    """Whether the checkpoint (`sd_model_checkpoint`) or VAE (`sd_vae`) named by `value` is not in the catalog."""
    if ctx.catalog is None or not value or not isinstance(value, str):
        return False
    if key == "sd_model_checkpoint":
        return ctx.catalog.find_checkpoint(value) is None
    return value not in ctx.catalog.vae_choices()


def _non_finite(value: Any) -> float | None:
    """The first NaN/Infinity in a setting value (a number or a list of them), else None."""
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if isinstance(item, float) and not math.isfinite(item):
            return item
    return None


def check_final(params: GenerationParams, ctx: Any, pasted: bool) -> None:
    from app.api.limits import limit

    where = " (after the infotext was applied)" if pasted else ""
    multiple = ctx.size_multiple
    for name in ("width", "height"):
        value = getattr(params, name)
        if isinstance(value, int) and 0 < value < multiple:
            raise ApiError(422, f"{name}: {value} is smaller than the model's latent grid of {multiple} px{where}")
        if isinstance(value, int) and value > 0:
            setattr(params, name, floor_to_grid(value, multiple))  # as A1111: 100 → 96
    try:
        check_params(params, max_prompt_length=int(limit(ctx.settings, "api_max_prompt_length")))
    except InvalidParams as exc:
        raise ApiError(422, f"{exc}{where}") from None
    _check_memory(params, float(limit(ctx.settings, "api_max_generation_megapixels")), where)


def generation_megapixels(params: GenerationParams) -> float:
    """Megapixels one batch of `params` makes at once: width × height × batch_size, at the hires fix target size
    when hires fix is on, or at the "Resize seed from" size when that is larger (its noise is made at that size)."""
    width, height = float(params.width), float(params.height)
    seed = params.seed
    if seed.seed_resize_from_w > 0 and seed.seed_resize_from_h > 0:  # the engine resizes only with both set
        seed_w, seed_h = float(seed.seed_resize_from_w), float(seed.seed_resize_from_h)
        if seed_w * seed_h > width * height:
            width, height = seed_w, seed_h
    hires = params.hires
    if params.img2img is None and hires.enabled:
        if hires.resize_x or hires.resize_y:
            rx = hires.resize_x or hires.resize_y * width / max(height, 1.0)
            ry = hires.resize_y or hires.resize_x * height / max(width, 1.0)
            width, height = max(width, float(rx)), max(height, float(ry))
        else:
            width, height = width * max(hires.scale, 1.0), height * max(hires.scale, 1.0)
    return width * height * params.batch_size / 1_000_000


def _check_memory(params: GenerationParams, most: float, where: str = "") -> None:
    """413 naming the setting when one batch of `params` is larger than `api_max_generation_megapixels`."""
    if most <= 0:
        return
    used = generation_megapixels(params)
    if used > most:
        size = f"{params.width}x{params.height}" + (" with hires fix" if params.img2img is None and
                                                     params.hires.enabled else "")
        raise ApiError(413, f"width x height x batch_size: {size} x {params.batch_size} is {used:.1f} megapixels "
                            f"at once, more than the limit of {most:g} (setting api_max_generation_megapixels); "
                            "lower the size or batch_size (n_iter runs batches one after another), or raise the "
                            f"setting{where}", error="RequestTooLarge")
