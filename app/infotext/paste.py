"""Parsed infotext -> GenerationParams (+ setting overrides): A1111's "paste" mapping (spec §4.4).

Pure: no torch, no gradio. Used by the UI's Paste button / "Send to" and by the API's `infotext`
request field. Fields missing from the infotext keep the value of `base`; a value that does not
convert (e.g. `Steps: abc`) is ignored, like A1111's paste leaves the field unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from app.params import MASK_MODES, MASKED_CONTENT, GenerationParams, Img2ImgParams, parse_layers


def to_int(value: Any) -> int:
    """A1111 pastes into int fields through float(): "20" and "20.0" both give 20."""
    return int(float(value))


def to_float(value: Any) -> float:
    return float(value)


def to_bool(value: Any) -> bool:
    """"False" (any case), "0" and "" give False; other text gives True."""
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "")
    return bool(value)


def to_str(value: Any) -> str:
    return str(value)


@dataclass(frozen=True)
class SettingMapping:
    """An infotext key that maps to a setting (A1111 `OptionInfo(infotext=...)`)."""

    infotext: str
    setting: str
    cast: Callable[[Any], Any]
    default: Any


#: Infotext keys that go to "Override settings" (only when they differ from the current value).
SETTING_MAPPINGS: tuple[SettingMapping, ...] = tuple(SettingMapping(*row) for row in (
    ("RNG", "randn_source", to_str, "GPU"),
    ("ENSD", "eta_noise_seed_delta", to_int, 0),
    ("Eta", "eta_ancestral", to_float, 1.0),
    ("Eta DDIM", "eta_ddim", to_float, 0.0),
    ("Emphasis", "emphasis", to_str, "Original"),
    ("Face restoration", "face_restoration_model", to_str, "CodeFormer"),
    ("Noise multiplier", "initial_noise_multiplier", to_float, 1.0),
    ("Extra noise", "img2img_extra_noise", to_float, 0.0),
    ("Token merging ratio", "token_merging_ratio", to_float, 0.0),
    ("Token merging ratio hr", "token_merging_ratio_hr", to_float, 0.0),
    ("NGMS", "s_min_uncond", to_float, 0.0),
    ("Sigma churn", "s_churn", to_float, 0.0),
    ("Sigma tmin", "s_tmin", to_float, 0.0),
    ("Sigma tmax", "s_tmax", to_float, 0.0),
    ("Sigma noise", "s_noise", to_float, 1.0),
    ("Schedule min sigma", "sigma_min", to_float, 0.0),
    ("Schedule max sigma", "sigma_max", to_float, 0.0),
    ("Schedule rho", "rho", to_float, 0.0),
    ("Discard penultimate sigma", "always_discard_next_to_last_sigma", to_bool, False),
    ("SGM noise multiplier", "sgm_noise_multiplier", to_bool, False),
    ("UniPC variant", "uni_pc_variant", to_str, "bh1"),
    ("UniPC skip type", "uni_pc_skip_type", to_str, "time_uniform"),
    ("UniPC order", "uni_pc_order", to_int, 3),
    ("UniPC lower order final", "uni_pc_lower_order_final", to_bool, True),
    ("Pad conds", "pad_cond_uncond", to_bool, False),
    ("Pad conds v0", "pad_cond_uncond_v0", to_bool, False),
    ("Old prompt editing timelines", "use_old_scheduling", to_bool, False),
    ("Downcast alphas_cumprod", "use_downcasted_alpha_bar", to_bool, False),
    ("Conditional mask weight", "inpainting_mask_weight", to_float, 1.0),
    ("VAE Encoder", "sd_vae_encode_method", to_str, "Full"),
    ("VAE Decoder", "sd_vae_decode_method", to_str, "Full"),
    ("Hires refiner", "hires_fix_refiner_pass", to_str, "second pass"),
    ("Noise Schedule", "sd_noise_schedule", to_str, "Default"),
    ("Skip Early CFG", "skip_early_cond", to_float, 0.0),
    # Sampling writes `Beta schedule alpha/beta`, the options' infotext names are `Beta scheduler ...` (A1111 reads
    # only the latter, so its own infotext never pastes back); both are read here. The later row names the setting
    # in "Override settings" entries.
    ("Beta schedule alpha", "beta_dist_alpha", to_float, 0.6),
    ("Beta schedule beta", "beta_dist_beta", to_float, 0.6),
    ("Beta scheduler alpha", "beta_dist_alpha", to_float, 0.6),
    ("Beta scheduler beta", "beta_dist_beta", to_float, 0.6),
    ("FP8 weight", "fp8_storage", to_str, "Disable"),
    ("Cache FP16 weight for LoRA", "cache_fp16_weight", to_bool, False),
    ("Refiner switch by sampling steps", "refiner_switch_by_sample_steps", to_bool, False),
))

_SAME = {"Use same checkpoint", "Use same sampler", "Use same scheduler"}


def _setter(parsed: Mapping[str, Any]) -> Callable[[str, Callable[[Any], Any], Any, str], None]:
    def apply(key: str, cast: Callable[[Any], Any], target: Any, attr: str) -> None:
        if key not in parsed or parsed[key] is None:
            return
        try:
            value = cast(parsed[key])
        except (TypeError, ValueError):
            return
        setattr(target, attr, value)

    return apply


def _apply_hires(parsed: Mapping[str, Any], params: GenerationParams) -> None:
    hr = params.hires
    put = _setter(parsed)
    if "Denoising strength" in parsed and any(k in parsed for k in ("Hires upscale", "Hires upscaler", "Hires resize-1")):
        hr.enabled = True
    put("Denoising strength", to_float, hr, "denoising_strength")
    put("Hires upscale", to_float, hr, "scale")
    put("Hires upscaler", to_str, hr, "upscaler")
    put("Hires steps", to_int, hr, "steps")
    put("Hires resize-1", to_int, hr, "resize_x")
    put("Hires resize-2", to_int, hr, "resize_y")
    for key, attr in (("Hires checkpoint", "checkpoint"), ("Hires sampler", "sampler_name"),
                      ("Hires schedule type", "scheduler")):
        put(key, lambda v: "" if str(v) in _SAME else str(v), hr, attr)
    put("Hires prompt", to_str, hr, "prompt")
    put("Hires negative prompt", to_str, hr, "negative_prompt")


def _apply_img2img(parsed: Mapping[str, Any], i2i: Img2ImgParams) -> None:
    put = _setter(parsed)
    put("Denoising strength", to_float, i2i, "denoising_strength")
    put("Image CFG scale", to_float, i2i, "image_cfg_scale")
    put("Mask blur", to_int, i2i, "mask_blur_x")
    put("Mask blur", to_int, i2i, "mask_blur_y")
    put("Mask mode", MASK_MODES.index, i2i, "inpainting_mask_invert")
    put("Masked content", MASKED_CONTENT.index, i2i, "inpainting_fill")
    put("Inpaint area", lambda v: str(v) == "Only masked", i2i, "inpaint_full_res")
    put("Masked area padding", to_int, i2i, "inpaint_full_res_padding")
    put("Noise multiplier", to_float, i2i, "initial_noise_multiplier")


def infotext_to_params(
    parsed: Mapping[str, Any],
    base: GenerationParams | None = None,
    *,
    kind: str | None = None,
    current_settings: Mapping[str, Any] | None = None,
    allow_checkpoint_swap: bool = False,
    skip_fields: tuple[str, ...] | list[str] = (),
) -> tuple[GenerationParams, dict[str, Any]]:
    """Map a `parse_generation_parameters` dict onto a copy of `base` (default: UI defaults).

    `kind` is "txt2img" or "img2img" (default: img2img iff `base.img2img` is set); img2img gets
    Denoising strength and the mask fields, txt2img gets the hires fields (enabled when
    `Denoising strength` comes with a Hires key, as in A1111).
    Model selection travels in the params: `Clip skip` -> `params.clip_skip`, `VAE` ->
    `params.vae`, and `Model hash` (else `Model`) -> `params.checkpoint` only when
    `allow_checkpoint_swap` (A1111's `disable_weights_auto_swap` is on by default).
    Returns `(params, override_settings)`: settings keys (SETTING_MAPPINGS) whose value differs
    from `current_settings` (or from the A1111 default when a key is not there).
    """
    params = (base or GenerationParams()).copy()
    parsed = {k: v for k, v in parsed.items() if k not in set(skip_fields)}
    put = _setter(parsed)

    # 1. prompts and the common fields
    put("Prompt", to_str, params, "prompt")
    put("Negative prompt", to_str, params, "negative_prompt")
    put("Styles array", list, params, "styles")
    put("Steps", to_int, params, "steps")
    put("Sampler", to_str, params, "sampler_name")
    put("Schedule type", to_str, params, "scheduler")
    put("CFG scale", to_float, params, "cfg_scale")
    put("Size-1", to_int, params, "width")
    put("Size-2", to_int, params, "height")
    put("Batch size", to_int, params, "batch_size")
    put("Tiling", to_bool, params, "tiling")
    put("Shift", to_float, params, "shift")
    put("Distilled CFG Scale", to_float, params, "distilled_cfg_scale")
    put("SLG scale", to_float, params, "skip_layer_guidance_scale")  # SD3.5 skip-layer guidance (written when on)
    put("SLG layers", lambda v: list(parse_layers(v)), params, "skip_guidance_layers")
    put("SLG start", to_float, params, "skip_layer_guidance_start")
    put("SLG stop", to_float, params, "skip_layer_guidance_stop")
    put("Unconditional first steps", to_int, params, "unconditional_first_steps")

    # 2. seeds (the "Extra" seed fields)
    put("Seed", to_int, params.seed, "seed")
    put("Variation seed", to_int, params.seed, "subseed")
    put("Variation seed strength", to_float, params.seed, "subseed_strength")
    put("Seed resize from-1", to_int, params.seed, "seed_resize_from_w")
    put("Seed resize from-2", to_int, params.seed, "seed_resize_from_h")

    # 3. txt2img hires fix or img2img/inpaint fields
    is_img2img = (kind == "img2img") or (kind is None and params.img2img is not None)
    if is_img2img:
        if params.img2img is None:
            params.img2img = Img2ImgParams()
        _apply_img2img(parsed, params.img2img)
    else:
        _apply_hires(parsed, params)

    # 4. model selection carried by the request
    put("Clip skip", to_int, params, "clip_skip")
    put("VAE", to_str, params, "vae")
    if allow_checkpoint_swap:
        model = parsed.get("Model hash") or parsed.get("Model")
        if model:
            params.checkpoint = str(model)

    # 5. the Refiner script's fields (A1111 pastes the checkpoint's closest match; the API/UI check it exists)
    put("Refiner", to_str, params, "refiner_checkpoint")
    put("Refiner switch at", to_float, params, "refiner_switch_at")

    # 6. settings overrides that differ from the current values
    current = current_settings or {}
    overrides: dict[str, Any] = {}
    for mapping in SETTING_MAPPINGS:
        if mapping.infotext not in parsed or parsed[mapping.infotext] is None:
            continue
        try:
            value = mapping.cast(parsed[mapping.infotext])
        except (TypeError, ValueError):
            continue
        if value != current.get(mapping.setting, mapping.default):
            overrides[mapping.setting] = value
    return params, overrides
