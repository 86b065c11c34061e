"""Infotext: the A1111 "generation parameters" text stored in every image.

Layout (spec §4.1)::

    <prompt, may span lines>
    Negative prompt: <negative prompt>      (omitted when empty)
    Key: value, Key: value, ...             (one line)

This module is pure (no torch): it formats that text (`format_infotext`, `create_infotext`) with
A1111 v1.10 semantics. Parsing lives in `app.infotext.parse`, reading/writing the text inside image
files in `app.infotext.storage`, mapping parsed values onto `GenerationParams` in
`app.infotext.paste`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from app import __version__
from app.infotext.samplers import schedule_label
from app.params import MASKED_CONTENT, GenerationParams

log = logging.getLogger(__name__)

#: The `Version` we write. Deliberately NOT a bare semantic version: A1111 parses the Version
#: field and turns on back-compat switches for versions < 1.6/1.7/1.8, which must not happen for
#: our images. `atelier-0.1.0` fails A1111's version parse, so readers leave it alone.
DEFAULT_VERSION = f"atelier-{__version__}"

#: The fixed leading keys, in A1111's order (spec §4.1). Extra params follow, then Version, User.
FIXED_KEYS: tuple[str, ...] = (
    "Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed", "Face restoration",
    "Size", "Model hash", "Model", "FP8 weight", "Cache FP16 weight for LoRA", "VAE hash", "VAE",
    "Variation seed", "Variation seed strength", "Seed resize from", "Denoising strength",
    "Conditional mask weight", "Clip skip", "ENSD", "Token merging ratio", "Token merging ratio hr",
    "Init image hash", "RNG", "Tiling",
)


# ------------------------------------------------------------------------------------ formatting
def quote(value: Any) -> Any:
    """JSON-encode a value iff its text contains `,`, `:` or a newline (A1111's rule)."""
    text = str(value)
    if "," not in text and ":" not in text and "\n" not in text:
        return value
    return json.dumps(text, ensure_ascii=False)


def format_infotext(prompt: str, negative_prompt: str, pairs: Mapping[str, Any]) -> str:
    """Assemble an infotext from prompts and ordered key/value pairs.

    None values are left out; a value equal to its key is written as the bare key; values are
    quoted with `quote` and formatted with `str()` (so `7` and `7.0` stay distinct). The
    `Negative prompt:` line is omitted when the negative prompt is empty. The result is stripped.
    """
    params_line = ", ".join(
        key if key == value else f"{key}: {quote(value)}" for key, value in pairs.items() if value is not None
    )
    negative = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{params_line}".strip()


def _resolve_extra(key: str, value: Any, index: int, context: dict[str, Any]) -> Any:
    """A1111 extra_generation_params values: plain, a list indexed per image, or a callable.

    A callable that fails (e.g. a broken extension) drops its key instead of failing the job.
    """
    if isinstance(value, list):
        return value[index] if 0 <= index < len(value) else None
    if callable(value):
        try:
            return value(**context)
        except Exception:
            log.exception("infotext: the value callable for %r failed; the key is left out", key)
            return None
    return value


def _hires_pairs(params: GenerationParams, prompt: str, negative_prompt: str) -> dict[str, Any]:
    hr = params.hires
    pairs: dict[str, Any] = {"Denoising strength": hr.denoising_strength}
    if hr.checkpoint and hr.checkpoint != "Use same checkpoint":
        pairs["Hires checkpoint"] = hr.checkpoint
    if hr.sampler_name and hr.sampler_name not in ("Use same sampler", params.sampler_name):
        pairs["Hires sampler"] = hr.sampler_name
    pairs["Hires prompt"] = hr.prompt if hr.prompt and hr.prompt != prompt else None
    pairs["Hires negative prompt"] = (
        hr.negative_prompt if hr.negative_prompt and hr.negative_prompt != negative_prompt else None
    )
    pairs["Hires schedule type"] = None  # placeholder: the engine fills it through `extra`
    if hr.resize_x == 0 and hr.resize_y == 0:
        pairs["Hires upscale"] = hr.scale
    else:
        pairs["Hires resize"] = f"{hr.resize_x}x{hr.resize_y}"
    if hr.steps:
        pairs["Hires steps"] = hr.steps
    if hr.upscaler:
        pairs["Hires upscaler"] = hr.upscaler
    return pairs


def _img2img_pairs(params: GenerationParams) -> dict[str, Any]:
    i2i = params.img2img
    assert i2i is not None
    pairs: dict[str, Any] = {"Denoising strength": i2i.denoising_strength}
    if i2i.mask is not None:
        if i2i.inpainting_mask_invert:
            pairs["Mask mode"] = "Inpaint not masked"
        if i2i.mask_blur_x > 0 or i2i.mask_blur_y > 0:
            pairs["Mask blur"] = i2i.mask_blur_x if i2i.mask_blur_x == i2i.mask_blur_y else None
        if i2i.inpaint_full_res:
            pairs["Inpaint area"] = "Only masked"
            pairs["Masked area padding"] = i2i.inpaint_full_res_padding
        if i2i.inpainting_fill != 1 and 0 <= i2i.inpainting_fill < len(MASKED_CONTENT):
            pairs["Masked content"] = MASKED_CONTENT[i2i.inpainting_fill]
    if i2i.initial_noise_multiplier != 1.0:
        pairs["Noise multiplier"] = i2i.initial_noise_multiplier
    return pairs


def create_infotext(
    params: GenerationParams,
    *,
    prompt: str,
    negative_prompt: str,
    seed: int,
    subseed: int | None = None,
    width: int | None = None,
    height: int | None = None,
    sampler_name: str | None = None,
    schedule_type: str | None = None,
    model_name: str | None = None,
    model_hash: str | None = None,
    vae_name: str | None = None,
    vae_hash: str | None = None,
    clip_skip: int | None = None,
    image_cfg_scale: float | None = None,
    face_restoration: str | None = None,
    conditional_mask_weight: float | None = None,
    ensd: int | None = None,
    rng: str = "GPU",
    token_merging_ratio: float = 0,
    token_merging_ratio_hr: float = 0,
    init_image_hash: str | None = None,
    fp8_weight: str | None = None,
    cache_fp16_weight: bool | None = None,
    extra: Mapping[str, Any] | None = None,
    version: str | None = DEFAULT_VERSION,
    user: str | None = None,
    index: int = 0,
) -> str:
    """The A1111 infotext of one image of a job.

    `params` gives steps, sampler, CFG, seeds' strength/resize, tiling, hires and img2img fields;
    the keyword arguments give the per-image and per-run facts the engine resolved:

    - `prompt`/`negative_prompt`: this image's final prompts (styles applied, LoRA tags kept).
    - `seed`/`subseed`: this image's seeds (`Variation seed` only when strength != 0).
    - `width`/`height`: the first-pass size (default `params.width/height`).
    - `sampler_name` (default `params.sampler_name`); `schedule_type`: the resolved label, default
      `schedule_label(sampler, params.scheduler)` (DPM++ 2M + Automatic -> "Karras").
    - `model_name` (checkpoint file name without extension), `model_hash` (10-hex AutoV2),
      `vae_name` (file name with extension), `vae_hash` (10 hex): None leaves them out.
    - `clip_skip`: the effective value (default `params.clip_skip` or 1); written only when > 1.
    - `ensd`: written when truthy (the caller decides whether the sampler uses it);
      `rng`: written unless "GPU"; `image_cfg_scale`: only for instruct-pix2pix style models.
    - `extra`: A1111 `extra_generation_params` in insertion order (Lora hashes, TI hashes, Eta,
      Hires schedule type, extension keys ...). A key that already exists (fixed or derived from
      params) is overwritten in place; None removes it. Values may be lists (indexed by `index`)
      or callables (called with `params`, `index`, `prompt_text`, `negative_prompt`).
    - `version`: our version token (None leaves it out); `user`: only when given.
    """
    sampler = sampler_name if sampler_name is not None else params.sampler_name
    seeds = params.seed
    effective_clip_skip = clip_skip if clip_skip is not None else (params.clip_skip or 1)
    strength = seeds.subseed_strength
    pairs: dict[str, Any] = {
        "Steps": params.steps,
        "Sampler": sampler,
        "Schedule type": schedule_type if schedule_type is not None else schedule_label(sampler, params.scheduler),
        "CFG scale": params.cfg_scale,
        "Image CFG scale": image_cfg_scale,
        "Seed": seed,
        "Face restoration": face_restoration,
        "Size": f"{params.width if width is None else width}x{params.height if height is None else height}",
        "Model hash": model_hash,
        "Model": model_name,
        "FP8 weight": fp8_weight,
        "Cache FP16 weight for LoRA": cache_fp16_weight,
        "VAE hash": vae_hash,
        "VAE": vae_name,
        "Variation seed": None if strength == 0 else (subseed if subseed is not None else seeds.subseed),
        "Variation seed strength": None if strength == 0 else strength,
        "Seed resize from": (
            f"{seeds.seed_resize_from_w}x{seeds.seed_resize_from_h}"
            if seeds.seed_resize_from_w > 0 and seeds.seed_resize_from_h > 0 else None
        ),
        "Denoising strength": None,
        "Conditional mask weight": conditional_mask_weight,
        "Clip skip": effective_clip_skip if effective_clip_skip > 1 else None,
        "ENSD": ensd or None,
        "Token merging ratio": token_merging_ratio or None,
        "Token merging ratio hr": (token_merging_ratio_hr or None) if params.hires.enabled else None,
        "Init image hash": init_image_hash,
        "RNG": rng if rng and rng != "GPU" else None,
        "Tiling": "True" if params.tiling else None,
    }
    if params.img2img is not None:
        pairs.update(_img2img_pairs(params))
    elif params.hires.enabled:
        pairs.update(_hires_pairs(params, prompt, negative_prompt))
    context = {"params": params, "index": index, "prompt_text": prompt, "negative_prompt": negative_prompt}
    for key, value in (extra or {}).items():
        pairs[key] = _resolve_extra(key, value, index, context)
    pairs["Version"] = version
    pairs["User"] = user
    return format_infotext(prompt, negative_prompt, pairs)


__all__ = ["DEFAULT_VERSION", "FIXED_KEYS", "create_infotext", "format_infotext", "quote"]
