"""The API's `info` JSON of a finished job (A1111 `Processed.js()`, spec §10.2). Pure data."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from app.infotext.format import DEFAULT_VERSION
from app.params import GenerationParams

#: The keys of the `info` object, in A1111's order.
INFO_KEYS: tuple[str, ...] = (
    "prompt", "all_prompts", "negative_prompt", "all_negative_prompts", "seed", "all_seeds", "subseed",
    "all_subseeds", "subseed_strength", "width", "height", "sampler_name", "cfg_scale", "steps", "batch_size",
    "restore_faces", "face_restoration_model", "sd_model_name", "sd_model_hash", "sd_vae_name", "sd_vae_hash",
    "seed_resize_from_w", "seed_resize_from_h", "denoising_strength", "extra_generation_params",
    "index_of_first_image", "infotexts", "styles", "job_timestamp", "clip_skip",
    "is_using_inpainting_conditioning", "version",
)

_UNSET: Any = object()


def _json_safe(value: Any) -> Any:
    """What `json.dumps(..., default=lambda o: None)` would make of a value (A1111's encoder)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Mapping):
        return _json_safe_dict(value)
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return None


def _json_safe_dict(value: Mapping[Any, Any]) -> dict[str, Any]:
    """`_json_safe` of a mapping: string keys, JSON-safe values."""
    return {str(k): _json_safe(v) for k, v in value.items()}


def info_json(
    params: GenerationParams,
    *,
    all_prompts: Sequence[str],
    all_negative_prompts: Sequence[str],
    all_seeds: Sequence[int],
    all_subseeds: Sequence[int],
    infotexts: Sequence[str],
    index_of_first_image: int = 0,
    sd_model_name: str | None = None,
    sd_model_hash: str | None = None,
    sd_vae_name: str | None = None,
    sd_vae_hash: str | None = None,
    extra_generation_params: Mapping[str, Any] | None = None,
    job_timestamp: str = "",
    clip_skip: int | None = None,
    sampler_name: str | None = None,
    width: int | None = None,
    height: int | None = None,
    denoising_strength: float | None = _UNSET,
    restore_faces: bool = False,
    face_restoration_model: str | None = None,
    is_using_inpainting_conditioning: bool = False,
    version: str | None = _UNSET,
    save_errors: Sequence[str] = (),
) -> dict[str, Any]:
    """The `info` dict for a job run with `params` (JSON-safe; serialise with `info_to_string`).

    `prompt`/`negative_prompt`/`seed`/`subseed` are the first entries of the `all_*` lists (falling
    back to params when a list is empty), as A1111 reports them. `denoising_strength` defaults to
    the img2img strength, else the hires strength. `clip_skip` defaults to `params.clip_skip` or 1;
    `version` to our infotext Version (pass None for null). Callables in `extra_generation_params` become null.
    `save_errors` (why images were not written to disk; they are still returned) adds the key `save_errors`
    after A1111's keys, only when there are any.
    """
    if version is _UNSET:
        version = DEFAULT_VERSION
    if denoising_strength is _UNSET:
        denoising_strength = (params.img2img.denoising_strength if params.img2img is not None
                              else params.hires.denoising_strength)
    seeds = params.seed
    info: dict[str, Any] = {
        "prompt": all_prompts[0] if all_prompts else params.prompt,
        "all_prompts": list(all_prompts),
        "negative_prompt": all_negative_prompts[0] if all_negative_prompts else params.negative_prompt,
        "all_negative_prompts": list(all_negative_prompts),
        "seed": all_seeds[0] if all_seeds else seeds.seed,
        "all_seeds": list(all_seeds),
        "subseed": all_subseeds[0] if all_subseeds else seeds.subseed,
        "all_subseeds": list(all_subseeds),
        "subseed_strength": seeds.subseed_strength,
        "width": params.width if width is None else width,
        "height": params.height if height is None else height,
        "sampler_name": params.sampler_name if sampler_name is None else sampler_name,
        "cfg_scale": params.cfg_scale,
        "steps": params.steps,
        "batch_size": params.batch_size,
        "restore_faces": restore_faces,
        "face_restoration_model": face_restoration_model if restore_faces else None,
        "sd_model_name": sd_model_name,
        "sd_model_hash": sd_model_hash,
        "sd_vae_name": sd_vae_name,
        "sd_vae_hash": sd_vae_hash,
        "seed_resize_from_w": seeds.seed_resize_from_w,
        "seed_resize_from_h": seeds.seed_resize_from_h,
        "denoising_strength": denoising_strength,
        "extra_generation_params": _json_safe(dict(extra_generation_params or {})),
        "index_of_first_image": index_of_first_image,
        "infotexts": list(infotexts),
        "styles": list(params.styles),
        "job_timestamp": job_timestamp,
        "clip_skip": clip_skip if clip_skip is not None else (params.clip_skip or 1),
        "is_using_inpainting_conditioning": is_using_inpainting_conditioning,
        "version": version,
    }
    if save_errors:
        info["save_errors"] = [str(e) for e in save_errors]
    return _json_safe_dict(info)


def eta_relative(elapsed: float, progress: float) -> float:
    """Seconds left for a job `progress` (0..1) done after `elapsed` seconds (A1111's `elapsed / progress - elapsed`),
    never negative nor NaN/infinite: progress is clamped to [0.01, 1] and a clock that went back counts as 0."""
    if not math.isfinite(elapsed) or elapsed < 0:
        elapsed = 0.0
    if not math.isfinite(progress):
        progress = 0.01
    progress = min(max(progress, 0.01), 1.0)
    return max(elapsed / progress - elapsed, 0.0)


def info_to_string(info: Mapping[str, Any]) -> str:
    """The `info` string of an API response (non-JSON values become null, as in A1111)."""
    return json.dumps(info, default=lambda _o: None)
