"""Loading SD3.5 (large, medium; SD3 medium too) into a diffusers ``StableDiffusion3Pipeline``, offline, from the
files users have.

- One checkpoint in ``models/Stable-diffusion`` (Stability's ``sd3.5_large.safetensors`` / ``sd3.5_medium.safetensors``
  and their re-saves): the MMDiT under ``model.diffusion_model.``, the VAE under ``first_stage_model.`` and, in the
  files that include them, CLIP-L / CLIP-G / T5 under ``text_encoders.clip_l.transformer.``,
  ``text_encoders.clip_g.transformer.``, ``text_encoders.t5xxl.transformer.`` (ComfyUI's names). Whatever the file
  lacks comes from the split folders.
- ComfyUI's split files: the MMDiT alone in ``models/diffusion_models``, ``clip_l.safetensors``,
  ``clip_g.safetensors`` and ``t5xxl_fp16.safetensors`` in ``models/text_encoders`` and the SD3 VAE in ``models/VAE``.

``load_sd3(path, parts)``: *parts* are ``text_encoder`` (CLIP-L), ``text_encoder_2`` (CLIP-G), ``text_encoder_3`` (T5)
and ``vae``; only the ones the file lacks are read. T5 is optional (ComfyUI and diffusers run SD3.5 without it): with
none, T5's 256 tokens are zeros and the job says so in a warning. Architecture from shapes (``sd3_convert``, ``t5_load``); weights
cast to the compute dtype one tensor at a time (bf16 on a GPU), except fp8 files' MMDiT block linears, which stay fp8
in memory and are computed in the compute dtype (``fp8_store``; scaled fp8 ones with their scales). A GGUF diffusion model
(``sd3_gguf``) keeps its linears quantized.

CLIP-L's pooled vector enters SD3 unprojected (Stability's reference gives CLIP-L an identity ``text_projection``,
as ComfyUI does), so CLIP-L is built with an identity projection whatever its file holds; CLIP-G's projection is
its own. The VAE is the 16-channel one of FLUX's shapes with SD3's scaling 1.5305 and shift 0.0609. The scheduler is
diffusers' ``FlowMatchEulerDiscreteScheduler`` with SD3.5's constant shift 3.0; the transformer takes the
timestep ``1000 * s`` (``atelier_flow_timestep: "sigma*1000"``).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch

from app.models.load import fp8_store
from app.models.load import sd3_convert as sc
from app.models.load.checkpoint_io import CheckpointLoadError, fold_fp8_scales, read_state_dict
from app.models.load.gguf_header import is_gguf
from app.models.load.pipeline_build import LoadedModel, _empty_init, device_and_dtypes
from app.models.load.sd3_convert import AIO_PREFIXES, CLIP_Q, inside_parts
from app.models.load.sd3_gguf import gguf_keys, gguf_transformer
from app.models.load.t5_load import build_t5_encoder, t5_prefix

log = logging.getLogger(__name__)
PART_KINDS = ("text_encoder", "text_encoder_2", "text_encoder_3", "vae")
VAE_SCALING, VAE_SHIFT = 1.5305, 0.0609
_NAMES = {"text_encoder": "CLIP-L text encoder (clip_l.safetensors)",
          "text_encoder_2": "CLIP-G text encoder (clip_g.safetensors)",
          "text_encoder_3": "T5-XXL text encoder (t5xxl_fp16.safetensors)", "vae": "SD3 VAE"}

#: the MMDiT's repeated blocks, whose fp8 linears stay fp8 in memory (``fp8_store``)
SD3_FP8_BLOCKS = ("transformer_blocks.",)

SD3_SCHEDULER: dict[str, Any] = {
    "_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0,
    "use_dynamic_shifting": False, "atelier_flow_timestep": "sigma*1000",
}


def _dtypes(sd: dict[str, torch.Tensor]) -> list[str]:
    return sorted({str(t.dtype).removeprefix("torch.") for k, t in sd.items() if not k.endswith(fp8_store.SCALE_SUFFIXES)})


def _read(path: Path, allow_unsafe: bool) -> dict[str, torch.Tensor]:
    """A file's tensors; ComfyUI's scaled-fp8 weights come with their scales (the MMDiT and T5 builders keep them
    fp8, the CLIP and VAE builders fold them: ``checkpoint_io.fold_fp8_scales``)."""
    return read_state_dict(path, allow_unsafe=allow_unsafe, keep_fp8_scales=True)


def _convert_scales(scales: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``sc.original_to_diffusers`` for scales only (it expects ``pos_embed``, which has none)."""
    prefix = sc.SD3_PREFIX if any(k.startswith(sc.SD3_PREFIX) for k in scales) else ""
    out = sc.original_to_diffusers({**scales, prefix + "pos_embed": torch.zeros(1, 1)})
    out.pop("pos_embed.pos_embed")
    return out


def build_transformer(sd: dict[str, torch.Tensor], dtype: torch.dtype, src: Path) -> Any:
    """The ``SD3Transformer2DModel`` of a Stability-layout state dict (prefix optional); *sd* is emptied of it."""
    from diffusers import SD3Transformer2DModel

    from app.models.load.zimage_load import _cast_assign

    if not sc.is_sd3_transformer(list(sd)):
        raise CheckpointLoadError(f"{src} is not an SD3 diffusion model (no joint_blocks / x_embedder keys)")
    try:
        cfg = sc.infer_transformer_config({k: tuple(v.shape) for k, v in sd.items()})
        prefixed = any(k.startswith(sc.SD3_PREFIX) for k in sd)
        mine = {k: sd.pop(k) for k in [k for k in sd if k.startswith(sc.SD3_PREFIX) or not prefixed]
                if not k.startswith(("text_encoders.", "first_stage_model.", "vae."))}
        scales = fp8_store.pop_scales(mine)  # a scaled fp8 file: the scales split with the fused qkv
        converted = sc.original_to_diffusers(mine)
        scales = fp8_store.convert_scales(scales, _convert_scales)
        mine.clear()
    except (KeyError, ValueError, IndexError, RuntimeError) as exc:
        raise CheckpointLoadError(f"{src}: incomplete SD3 diffusion model: {type(exc).__name__}: {exc}") from exc
    with _empty_init():
        model = SD3Transformer2DModel.from_config(cfg)
    _cast_assign(model, converted, dtype, "transformer", src, keep_fp8=SD3_FP8_BLOCKS, scales=scales)
    return model


def clip_tensors(sd: dict[str, torch.Tensor], prefix: str | None) -> tuple[dict[str, torch.Tensor], str]:
    """The Hugging Face CLIP text-model tensors under *prefix* (None: the first CLIP text model found), popped."""
    if prefix is None:
        prefix = next((k[: -len(CLIP_Q)] for k in sd if k.endswith(CLIP_Q)), None)
        if prefix is None:
            raise KeyError(CLIP_Q)
    keys = [k for k in sd if k.startswith(prefix + "text_model.") or k == prefix + "text_projection.weight"]
    return {k[len(prefix):]: sd.pop(k) for k in keys}, prefix


def build_clip(sd: dict[str, torch.Tensor], which: int, dtype: torch.dtype, src: Path, prefix: str | None = None) -> Any:
    """CLIP-L (*which* 1, identity projection) or CLIP-G (2, its own projection) as ``CLIPTextModelWithProjection``
    from Hugging Face-named tensors (``text_model.*``, ``text_projection.weight``)."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from app.models.load.config_infer import _clip_heads, load_family_config
    from app.models.load.pipeline_build import _assign

    what = "CLIP-L" if which == 1 else "CLIP-G"
    try:
        tensors, _ = clip_tensors(sd, prefix)
        fold_fp8_scales(tensors, dtype)  # CLIP in a scaled fp8 checkpoint: small, not kept fp8
        token = tensors["text_model.embeddings.token_embedding.weight"]
        layers = len({k.split(".")[3] for k in tensors if k.startswith("text_model.encoder.layers.")})
        hidden = int(token.shape[1])
        cfg = load_family_config("sdxl", "text_encoder" if which == 1 else "text_encoder_2")
        cfg.update(vocab_size=int(token.shape[0]), hidden_size=hidden, num_hidden_layers=layers,
                   max_position_embeddings=int(tensors["text_model.embeddings.position_embedding.weight"].shape[0]),
                   intermediate_size=int(tensors["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0]),
                   num_attention_heads=_clip_heads(hidden), projection_dim=hidden)
        if which == 1:
            tensors["text_projection.weight"] = torch.eye(hidden)
        elif "text_projection.weight" not in tensors:
            raise KeyError("text_projection.weight (CLIP-G's projection)")
        cfg["projection_dim"] = int(tensors["text_projection.weight"].shape[0])
    except (KeyError, ValueError, IndexError) as exc:
        raise CheckpointLoadError(f"{src}: not a complete {what} text encoder (SD3.5 needs one in Hugging Face "
                                  f"names, e.g. clip_{'l' if which == 1 else 'g'}.safetensors): {exc}") from exc
    with _empty_init():
        model = CLIPTextModelWithProjection(CLIPTextConfig(**{k: v for k, v in cfg.items() if k != "architectures"}))
    inner = "text_model." if hasattr(model, "text_model") else ""
    tensors = {k if k.startswith("text_projection") else inner + k.removeprefix("text_model."): v
               for k, v in tensors.items()}
    _assign(model, tensors, dtype, what, src)
    return model.eval()


def _vae(sd: dict[str, torch.Tensor], src: Path, dtype: torch.dtype, allow_unsafe: bool) -> Any:
    from app.models.load.flux_load import vae_prefix
    from app.models.load.zimage_load import build_flux_vae

    prefix = vae_prefix(list(sd))
    if prefix is not None:
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    conv = sd.get("decoder.conv_in.weight")
    if conv is not None and conv.shape[1] != 16:
        raise CheckpointLoadError(f"{src} is a VAE with {conv.shape[1]} latent channels; SD3.5 needs its 16-channel VAE "
                                  "(the one inside sd3.5_large.safetensors / sd3.5_medium.safetensors, or sd3_vae)")
    vae = build_flux_vae(src, dtype, allow_unsafe, sd=sd)
    vae.register_to_config(scaling_factor=VAE_SCALING, shift_factor=VAE_SHIFT)
    return vae


def load_sd3(path: Path, parts: dict[str, Path] | None = None, device_policy: Any = None,
             allow_unsafe: bool = False) -> LoadedModel:
    """A ``LoadedModel`` (family ``sd3``) from an SD3 diffusion model or checkpoint *path*; the parts the file lacks
    come from *parts* (see the module doc)."""
    from diffusers import StableDiffusion3Pipeline

    from app.devices import family_compute_dtype
    from app.models.load.zimage_load import make_flow_scheduler
    from app.prompts.t5_tokenizer import t5_tokenizer
    from app.prompts.tokenizer import clip_tokenizer

    parts = {k: Path(v) for k, v in (parts or {}).items() if v is not None}
    device, dtype, vae_dtype = device_and_dtypes(device_policy)
    dtype = family_compute_dtype(dtype, "bfloat16", device)
    gguf = is_gguf(path)
    sd = {} if gguf else _read(path, allow_unsafe)
    keys = gguf_keys(path) if gguf else list(sd)
    inside = inside_parts(keys)
    missing = [k for k in PART_KINDS if not inside[k] and k not in parts and k != "text_encoder_3"]
    if missing:
        raise CheckpointLoadError(f"{path}: SD3.5 needs a {' and a '.join(_NAMES[k] for k in missing)} (none given)")
    if gguf:  # city96's quantized MMDiT: linears stay quantized
        transformer, types = gguf_transformer(path, dtype)
        stored: dict[str, list[str]] = {"diffusion_model": types}
    else:
        stored = {"diffusion_model": _dtypes(sd)}
        transformer = build_transformer(sd, dtype, path)
    sources: dict[str, str] = {"diffusion_model": str(path)}

    def part(kind: str) -> tuple[dict[str, torch.Tensor], Path]:
        if inside[kind]:
            sources[kind] = str(path)
            return sd, path
        sources[kind] = str(parts[kind])
        got = _read(parts[kind], allow_unsafe)
        stored[kind] = _dtypes(got)
        return got, parts[kind]

    encoders = []
    for which, kind in ((1, "text_encoder"), (2, "text_encoder_2")):
        got, src = part(kind)
        encoders.append(build_clip(got, which, dtype, src, AIO_PREFIXES[kind] if inside[kind] else None))
    t5 = None  # no T5 file: SD3.5 runs on the two CLIPs (T5's tokens are zeros, as StableDiffusion3Pipeline does)
    if inside["text_encoder_3"] or "text_encoder_3" in parts:
        t5_sd, t5_src = part("text_encoder_3")
        prefix = AIO_PREFIXES["text_encoder_3"] if inside["text_encoder_3"] else t5_prefix(list(t5_sd))
        if prefix is None:
            raise CheckpointLoadError(f"{t5_src} is not a T5 text encoder (SD3.5 takes T5-XXL, e.g. t5xxl_fp16.safetensors)")
        t5 = build_t5_encoder(t5_sd, dtype, t5_src, prefix=prefix)
    vae_sd, vae_src = part("vae")
    vae = _vae(vae_sd, vae_src, vae_dtype, allow_unsafe)
    sd.clear()
    sched_cfg = copy.deepcopy(SD3_SCHEDULER)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=make_flow_scheduler(sched_cfg), vae=vae,
        text_encoder=encoders[0], tokenizer=clip_tokenizer(), text_encoder_2=encoders[1],
        tokenizer_2=clip_tokenizer("!"), text_encoder_3=t5, tokenizer_3=None if t5 is None else t5_tokenizer())
    offload = device_policy.offload_for(False) if hasattr(device_policy, "offload_for") else "none"
    if device.type != "cpu" and offload in (None, "none"):
        transformer.to(device)  # the text encoders stay in CPU memory and visit the GPU only to encode
        vae.to(device)
    pipe.set_progress_bar_config(disable=True)
    extra = {"parts": sources, "stored_dtypes": stored, "all_in_one": all(inside.values()), "variant": sc.variant(keys)}
    return LoadedModel(family="sd3", pipe=pipe, scheduler_config=sched_cfg, prediction_type="flow",  # type: ignore[arg-type]
                       is_sdxl=False, is_inpainting=False, source_path=path,
                       vae_path=None if inside["vae"] else parts.get("vae"), extra=extra)
