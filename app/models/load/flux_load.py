"""Loading FLUX.1 (dev, schnell, Fill) into a diffusers ``FluxPipeline`` (Fill: ``FluxFillPipeline``), offline, from
the files users have.

Two layouts:

- ComfyUI's split files: the diffusion model (``models/diffusion_models``, e.g. ``flux1-dev.safetensors``), the CLIP-L
  and T5-XXL text encoders (``models/text_encoders``: ``clip_l.safetensors``, ``t5xxl_fp16.safetensors``) and the FLUX
  VAE (``models/VAE/ae.safetensors``). ``load_flux(path, parts)``; the parts are ``text_encoder`` (CLIP-L),
  ``text_encoder_2`` (T5) and ``vae``.
- The all-in-one single files civitai distributes (``models/Stable-diffusion``): one file with the transformer under
  ``model.diffusion_model.``, CLIP-L under ``text_encoders.clip_l.transformer.``, T5 under
  ``text_encoders.t5xxl.transformer.`` and the VAE under ``vae.`` (ComfyUI's checkpoint-save names).
  ``load_flux(path, parts)`` takes whatever the file holds and only the missing parts from *parts*.

Architecture from shapes (``flux_convert``, ``t5_load``, the SD path's CLIP inference), weights cast to the compute
dtype one tensor at a time (bf16 on a GPU: FLUX and T5 overflow in fp16), except fp8 files' block linears, which stay
fp8 in memory and are computed in the compute dtype (``fp8_store``; ComfyUI's scaled fp8 files keep their scales
with them, CLIP-L and the VAE of such a file are folded). GGUF diffusion models (city96's
``flux1-dev-Q8_0.gguf``: the same BFL names) keep their quantized linears quantized (``gguf_load``). dev (with
``guidance_in``, distilled guidance) loads as family ``flux``, schnell (without) as ``flux-schnell``, FLUX.1 Fill
(``img_in`` takes 384 channels: latents, masked-image latents and the folded 8x8 mask) as ``flux-fill``, an inpainting
model (``is_inpainting``; dev's scheduler). Depth / Canny files (128 input channels) are refused with a message.

The scheduler config is diffusers' ``FlowMatchEulerDiscreteScheduler`` of each model (dev: resolution-dependent
"dynamic" shift, base 0.5 / max 1.15 over 256 .. 4096 image tokens; schnell: shift 1.0) plus
``atelier_flow_timestep: "sigma*1000"`` (the transformer takes ``1000 * s``; the denoiser divides by 1000 as
``FluxPipeline`` does).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch

from app.models.load import flux_convert as fc
from app.models.load import fp8_store, gguf_load
from app.models.load.checkpoint_io import CheckpointLoadError, fold_fp8_scales, read_state_dict
from app.models.load.pipeline_build import LoadedModel, _empty_init, device_and_dtypes
from app.models.load.t5_load import build_t5_encoder, is_t5_encoder, t5_prefix

log = logging.getLogger(__name__)
PART_KINDS = ("text_encoder", "text_encoder_2", "vae")
#: FLUX.1 Fill's transformer input: 64 packed latents + 64 packed masked-image latents + 256 packed 8x8 mask values
FILL_IN_CHANNELS = 384
#: the transformer's repeated blocks, whose fp8 linears stay fp8 in memory (``fp8_store``)
FLUX_FP8_BLOCKS = ("transformer_blocks.", "single_transformer_blocks.")
_CLIP_Q = "text_model.encoder.layers.0.self_attn.q_proj.weight"
_VAE_PREFIXES = ("vae.", "first_stage_model.")

FLUX_DEV_SCHEDULER: dict[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0,
    "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256,
    "max_image_seq_len": 4096, "atelier_flow_timestep": "sigma*1000",
}
FLUX_SCHNELL_SCHEDULER: dict[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 1.0,
    "use_dynamic_shifting": False, "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256,
    "max_image_seq_len": 4096, "atelier_flow_timestep": "sigma*1000",
}


def _dtypes(sd: dict[str, torch.Tensor], path: Path | None = None) -> list[str]:
    """The stored dtypes of *sd* (a GGUF file *path*: ``gguf:<quant>`` and its ggml types)."""
    if path is not None and path.suffix.lower() == ".gguf":
        return gguf_load.stored_types(path)
    return sorted({str(t.dtype).removeprefix("torch.") for k, t in sd.items() if not k.endswith(fp8_store.SCALE_SUFFIXES)})


def clip_prefix(keys: list[str]) -> str | None:
    """The prefix before ``text_model.`` of a CLIP text model inside *keys* (None when there is none)."""
    for key in keys:
        if key.endswith(_CLIP_Q):
            return key[: -len(_CLIP_Q)]
    return None


def vae_prefix(keys: list[str]) -> str | None:
    for prefix in _VAE_PREFIXES:
        if prefix + "decoder.conv_in.weight" in keys:
            return prefix
    return None


def build_transformer(sd: dict[str, torch.Tensor], dtype: torch.dtype, src: Path) -> Any:
    """The ``FluxTransformer2DModel`` of a BFL-layout state dict (prefix optional); *sd* is emptied of it."""
    from diffusers import FluxTransformer2DModel

    from app.models.load.zimage_load import _cast_assign

    if not fc.is_flux_transformer(list(sd)):
        raise CheckpointLoadError(f"{src} is not a FLUX.1 diffusion model (no double_blocks / single_blocks keys)")
    try:
        cfg = fc.infer_transformer_config({k: gguf_load.logical_shape(v) for k, v in fc.strip_prefix(sd).items()})
        if cfg["in_channels"] not in (64, FILL_IN_CHANNELS):
            raise CheckpointLoadError(
                f"{src} is a FLUX.1 variant with {cfg['in_channels']} input channels (Depth or Canny control), which "
                "Atelier does not run yet; use FLUX.1 dev, schnell or Fill"
            )
        theirs = [k for k in sd if k.startswith(fc.FLUX_PREFIX)] if any(k.startswith(fc.FLUX_PREFIX) for k in sd) \
            else list(sd)
        mine = {k: sd.pop(k) for k in theirs}
        scales = fp8_store.pop_scales(mine)  # a scaled fp8 file: the scales split with the fused projections
        hidden = cfg["num_attention_heads"] * cfg["attention_head_dim"]
        converted = fc.original_to_diffusers(mine, hidden=hidden)
        scales = fp8_store.convert_scales(scales, lambda s: fc.original_to_diffusers(s, hidden=hidden))
        mine.clear()
    except (KeyError, ValueError, IndexError, RuntimeError) as exc:
        raise CheckpointLoadError(f"{src}: incomplete FLUX.1 diffusion model: {type(exc).__name__}: {exc}") from exc
    with _empty_init():
        model = FluxTransformer2DModel.from_config(cfg)
    if any(gguf_load.is_quantized(v) for v in converted.values()):  # a GGUF file: linears stay quantized
        gguf_load.assign_gguf(model, converted, dtype, "transformer", src)
    else:
        _cast_assign(model, converted, dtype, "transformer", src, keep_fp8=FLUX_FP8_BLOCKS, scales=scales)
    return model


def build_clip_l(sd: dict[str, torch.Tensor], dtype: torch.dtype, src: Path) -> Any:
    """FLUX's ``CLIPTextModel`` (CLIP ViT-L/14 text tower) from a ``clip_l.safetensors``-style dict (any prefix)."""
    from app.models.load.config_infer import SD1_CLIP_PREFIX
    from app.models.load.pipeline_build import build_text_encoder

    prefix = clip_prefix(list(sd))
    if prefix is None:
        raise CheckpointLoadError(f"{src} is not a CLIP text encoder (FLUX.1 needs CLIP-L, e.g. clip_l.safetensors)")
    tensors = {SD1_CLIP_PREFIX + k[len(prefix):]: sd.pop(k) for k in [k for k in sd if k.startswith(prefix + "text_")]}
    fold_fp8_scales(tensors, dtype)  # CLIP-L of a scaled fp8 all-in-one file: small, not kept fp8
    tensors.pop(SD1_CLIP_PREFIX + "text_projection.weight", None)
    try:
        return build_text_encoder(tensors, "sd1", 1, dtype, src)
    except (KeyError, ValueError, RuntimeError, IndexError) as exc:
        raise CheckpointLoadError(f"{src}: not a complete CLIP-L text encoder: {type(exc).__name__}: {exc}") from exc


def _part_dict(path: Path, allow_unsafe: bool) -> dict[str, torch.Tensor]:
    """A part file's tensors, scaled fp8 weights with their scales (the builders keep or fold them)."""
    return read_state_dict(path, allow_unsafe=allow_unsafe, keep_fp8_scales=True)


def load_flux(path: Path, parts: dict[str, Path] | None = None, device_policy: Any = None,
              allow_unsafe: bool = False) -> LoadedModel:
    """A ``LoadedModel`` (family ``flux``, ``flux-schnell`` or ``flux-fill``) from a FLUX diffusion model or all-in-one file *path*;
    the parts the file lacks come from *parts* (``text_encoder`` = CLIP-L, ``text_encoder_2`` = T5, ``vae``)."""
    from diffusers import FluxFillPipeline, FluxPipeline

    from app.devices import family_compute_dtype
    from app.models.load.zimage_load import build_flux_vae, make_flow_scheduler
    from app.prompts.t5_tokenizer import t5_tokenizer
    from app.prompts.tokenizer import clip_tokenizer

    parts = {k: Path(v) for k, v in (parts or {}).items() if v is not None}
    device, dtype, vae_dtype = device_and_dtypes(device_policy)
    dtype = family_compute_dtype(dtype, "bfloat16", device)
    sd = read_state_dict(path, allow_unsafe=allow_unsafe, keep_fp8_scales=True)
    stored = {"diffusion_model": _dtypes(sd, path)}
    keys = list(sd)
    inside = {"text_encoder": clip_prefix(keys) is not None, "text_encoder_2": t5_prefix(keys) is not None,
              "vae": vae_prefix(keys) is not None}
    missing = [k for k in PART_KINDS if not inside[k] and k not in parts]
    if missing:
        names = {"text_encoder": "CLIP-L text encoder (clip_l.safetensors)",
                 "text_encoder_2": "T5-XXL text encoder (t5xxl_fp16.safetensors)", "vae": "VAE (ae.safetensors)"}
        raise CheckpointLoadError(f"{path}: FLUX.1 needs a {' and a '.join(names[k] for k in missing)} (none given)")
    transformer = build_transformer(sd, dtype, path)
    sources: dict[str, str] = {"diffusion_model": str(path)}

    def part(kind: str) -> tuple[dict[str, torch.Tensor], Path]:
        if inside[kind]:
            sources[kind] = str(path)
            return sd, path
        sources[kind] = str(parts[kind])
        got = _part_dict(parts[kind], allow_unsafe)
        stored[kind] = _dtypes(got, parts[kind])
        return got, parts[kind]

    clip_sd, clip_src = part("text_encoder")
    clip = build_clip_l(clip_sd, dtype, clip_src)
    t5_sd, t5_src = part("text_encoder_2")
    if not is_t5_encoder(t5_sd):
        raise CheckpointLoadError(f"{t5_src} is not a T5 text encoder (FLUX.1 needs T5-XXL, e.g. t5xxl_fp16.safetensors)")
    t5 = build_t5_encoder(t5_sd, dtype, t5_src)  # takes its tensors out of the dict (the all-in-one's too)
    vae_sd, vae_src = part("vae")
    prefix = vae_prefix(list(vae_sd))
    if prefix is not None:
        vae_sd = {k[len(prefix):]: v for k, v in vae_sd.items() if k.startswith(prefix)}
    vae = build_flux_vae(vae_src, vae_dtype, allow_unsafe, sd=vae_sd)
    sd.clear()
    fill = transformer.config.in_channels == FILL_IN_CHANNELS
    family = "flux-fill" if fill else "flux" if transformer.config.guidance_embeds else "flux-schnell"
    sched_cfg = copy.deepcopy(FLUX_SCHNELL_SCHEDULER if family == "flux-schnell" else FLUX_DEV_SCHEDULER)
    pipe_class = FluxFillPipeline if fill else FluxPipeline
    pipe = pipe_class(scheduler=make_flow_scheduler(sched_cfg), vae=vae, text_encoder=clip, tokenizer=clip_tokenizer(),
                      text_encoder_2=t5, tokenizer_2=t5_tokenizer(), transformer=transformer)
    offload = device_policy.offload_for(False) if hasattr(device_policy, "offload_for") else "none"
    if device.type != "cpu" and offload in (None, "none"):
        transformer.to(device)  # the text encoders stay in CPU memory and visit the GPU only to encode
        vae.to(device)
    pipe.set_progress_bar_config(disable=True)
    extra = {"parts": sources, "stored_dtypes": stored, "all_in_one": all(inside.values())}
    return LoadedModel(family=family, pipe=pipe, scheduler_config=sched_cfg, prediction_type="flow",  # type: ignore[arg-type]
                       is_sdxl=False, is_inpainting=fill, source_path=path,
                       vae_path=None if inside["vae"] else parts.get("vae"), extra=extra)
