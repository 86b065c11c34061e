"""Loading Z-Image from ComfyUI's split files into a diffusers ``ZImagePipeline``, offline.

Three files make a model: the diffusion model (the transformer, ``models/diffusion_models``), the Qwen3 text encoder
(``models/text_encoders``) and the FLUX VAE (``models/VAE``). Each is read once, its architecture inferred from its
tensor shapes (``app.models.load.zimage_convert``, ``config_infer.infer_vae_config``), and its tensors are assigned
into a model created without weight initialisation, as the SD path does. Weights in bf16, fp16, fp32 or
``float8_e4m3fn`` load alike: every tensor is cast to the compute dtype, except the fp8 linear weights of the
transformer's and the encoder's blocks, which stay fp8 in memory (``fp8_store``: computed in the compute dtype). Tensors are
taken out of the file's dict one by one while they are cast, so on CPU no weight is held twice for longer than one
tensor. The tokenizer is chosen by the text encoder's vocabulary size (``app.prompts.qwen_tokenizer``).

The scheduler config is Z-Image Turbo's ``FlowMatchEulerDiscreteScheduler`` (shift 3.0, no dynamic shifting, 1000
train steps) plus ``atelier_flow_timestep: "1-sigma"``, the sampling core's key for how sigma maps to the
transformer's timestep; keys starting with ``atelier_`` are not passed to diffusers.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch

from app.configs import load_family_config
from app.models.load import config_infer as ci
from app.models.load import fp8_store, gguf_load
from app.models.load import zimage_convert as zc
from app.models.load.checkpoint_io import CheckpointLoadError, fold_fp8_scales, read_gguf_state_dict, read_state_dict
from app.models.load.gguf_header import is_gguf
from app.models.load.gguf_load import assign_gguf
from app.models.load.ldm_convert import vae_to_ldm
from app.models.load.pipeline_build import LoadedModel, _empty_init, device_and_dtypes

log = logging.getLogger(__name__)
PART_KINDS = ("text_encoder", "vae")


def _cast_assign(model: torch.nn.Module, sd: dict[str, torch.Tensor], dtype: torch.dtype, what: str, src: Path,
                 keep_fp8: tuple[str, ...] = (), dense: tuple[str, ...] = (),
                 scales: dict[str, torch.Tensor] | None = None) -> None:
    """Assign *sd* into *model* (built on meta), casting float tensors to *dtype* one by one and emptying *sd*.

    Linears under the *keep_fp8* prefixes whose weights are fp8 keep them fp8 (``fp8_store.Fp8Linear``; not those
    ending with one of *dense*). *scales* are a scaled-fp8 file's scales under *sd*'s names (``fp8_store.pop_scales``
    then ``convert_scales``): kept linears take theirs, every other scaled tensor is folded into *dtype*."""
    scales = scales or {}
    kept = fp8_store.keep_fp8_names(sd, model, keep_fp8, dense)
    cast: dict[str, torch.Tensor] = {}
    for key in list(sd):
        t = sd.pop(key)
        if key.endswith(".weight") and key[: -len(".weight")] in kept:
            cast[key] = t
        elif key in scales:
            cast[key] = fp8_store.fold(t, scales[key], dtype)
        else:
            cast[key] = t.to(dtype) if t.is_floating_point() else t
    result = model.load_state_dict(cast, strict=False, assign=True)
    cast.clear()
    if result.missing_keys:
        raise CheckpointLoadError(
            f"{src}: {what} weights do not match the inferred architecture; missing {len(result.missing_keys)} "
            f"tensors, e.g. {', '.join(result.missing_keys[:4])}"
        )
    if result.unexpected_keys:
        log.info("%s: ignored %d unexpected %s tensors (e.g. %s)", src, len(result.unexpected_keys), what,
                 result.unexpected_keys[:3])
    fp8_store.to_fp8_linears(model, kept, dtype, scales)
    model.eval()


#: the repeated blocks whose fp8 linears stay fp8 (``fp8_store``), per model
ZIMAGE_FP8_BLOCKS = ("layers.", "noise_refiner.", "context_refiner.")
QWEN3_FP8_BLOCKS = ("layers.",)


def _dtypes(sd: dict[str, torch.Tensor]) -> list[str]:
    return sorted({str(t.dtype).removeprefix("torch.") for t in sd.values()})


def build_transformer(path: Path, dtype: torch.dtype, allow_unsafe: bool) -> tuple[Any, list[str]]:
    """The ``ZImageTransformer2DModel`` of a diffusion-model file (original or diffusers key layout)."""
    from diffusers import ZImageTransformer2DModel

    if is_gguf(path):
        return _gguf_transformer(path, dtype)
    sd = read_state_dict(path, allow_unsafe=allow_unsafe, keep_fp8_scales=True)
    try:
        scales = fp8_store.pop_scales(sd)  # a scaled fp8 file: the scales follow the weights' renames
    except ValueError as exc:
        raise CheckpointLoadError(f"{path}: {exc}") from None
    stored = _dtypes(sd)
    diffusers_keyed = "all_x_embedder.2-1.weight" in sd
    if diffusers_keyed:  # already diffusers-keyed: infer from the original names
        sd = zc.diffusers_to_original(sd)
    if not zc.is_zimage_transformer(list(sd)):
        raise CheckpointLoadError(f"{path} is not a Z-Image diffusion model (no Z-Image transformer keys)")
    try:
        cfg = zc.infer_transformer_config(sd)
        sd = zc.original_to_diffusers(sd)
        scales = fp8_store.convert_scales(scales, lambda s: zc.original_to_diffusers(
            zc.diffusers_to_original(s) if diffusers_keyed else s))
    except (KeyError, ValueError, IndexError) as exc:
        raise CheckpointLoadError(f"{path}: incomplete Z-Image diffusion model: {type(exc).__name__}: {exc}") from exc
    with _empty_init():
        model = ZImageTransformer2DModel.from_config(cfg)
    _cast_assign(model, sd, dtype, "transformer", path, keep_fp8=ZIMAGE_FP8_BLOCKS, scales=scales)
    return model, stored


def _gguf_transformer(path: Path, dtype: torch.dtype) -> tuple[Any, list[str]]:
    """A Z-Image transformer from a GGUF file (city96's layout: the original key names), linears kept quantized."""
    from diffusers import ZImageTransformer2DModel

    shapes = zc.strip_prefix(gguf_load.logical_shapes(path))
    if not zc.is_zimage_transformer(list(shapes)):
        raise CheckpointLoadError(f"{path} is not a Z-Image diffusion model (no Z-Image transformer keys)")
    try:
        cfg = zc.infer_transformer_config(shapes)
    except (KeyError, ValueError, IndexError) as exc:
        raise CheckpointLoadError(f"{path}: incomplete Z-Image diffusion model: {type(exc).__name__}: {exc}") from exc
    sd = read_gguf_state_dict(path)
    stored = gguf_load.stored_types(path)
    sd = zc.original_to_diffusers(sd)  # the fused qkv blocks split by rows, still quantized
    with _empty_init():
        model = ZImageTransformer2DModel.from_config(cfg)
    assign_gguf(model, sd, dtype, "transformer", path)
    return model, stored


def _read_gguf_encoder(path: Path) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(tensors, logical shapes, ggml types) of a GGUF text encoder under Hugging Face ``model.*`` names."""
    shapes = gguf_load.logical_shapes(path)
    sd = read_gguf_state_dict(path)
    if gguf_load.is_llama_cpp(shapes):
        shapes, sd = gguf_load.llama_to_hf_qwen3(shapes), gguf_load.llama_to_hf_qwen3(sd)
    return sd, shapes, gguf_load.stored_types(path)


def build_text_encoder(path: Path, dtype: torch.dtype, cap_feat_dim: int, allow_unsafe: bool) -> tuple[Any, Any, list[str]]:
    """(``Qwen3Model``, its tokenizer, stored dtypes) of a text-encoder file; its width must be *cap_feat_dim*."""
    from transformers import Qwen3Config, Qwen3Model

    from app.prompts.qwen_tokenizer import TokenizerMismatchError, tokenizer_for_vocab

    gguf = is_gguf(path)
    scales: dict[str, torch.Tensor] = {}
    if gguf:
        sd, shapes, stored = _read_gguf_encoder(path)
    else:
        sd = read_state_dict(path, allow_unsafe=allow_unsafe, keep_fp8_scales=True)
        try:
            scales = fp8_store.pop_scales(sd)
        except ValueError as exc:
            raise CheckpointLoadError(f"{path}: {exc}") from None
        shapes, stored = sd, _dtypes(sd)
    if not zc.is_qwen3(sd):
        raise CheckpointLoadError(f"{path} is not a Qwen3 text encoder (Z-Image needs one, e.g. qwen_3_4b.safetensors)")
    cfg = zc.infer_qwen3_config(shapes)
    if cfg["hidden_size"] != cap_feat_dim:
        raise CheckpointLoadError(
            f"{path}: this text encoder is {cfg['hidden_size']} wide but the diffusion model expects {cap_feat_dim} "
            "(Z-Image Turbo uses Qwen3-4B, 2560)"
        )
    try:
        tokenizer = tokenizer_for_vocab(cfg["vocab_size"], str(path))
    except TokenizerMismatchError as exc:
        raise CheckpointLoadError(str(exc)) from None
    sd = zc.qwen3_state_dict(sd)
    scales = fp8_store.convert_scales(scales, zc.qwen3_state_dict)
    with _empty_init():
        model = Qwen3Model(Qwen3Config(**{k: v for k, v in cfg.items() if k != "architectures"}))
    if gguf:
        assign_gguf(model, sd, dtype, "text encoder", path)
    else:
        _cast_assign(model, sd, dtype, "text encoder", path, keep_fp8=QWEN3_FP8_BLOCKS, scales=scales)
    return model, tokenizer, stored


def build_flux_vae(path: Path, dtype: torch.dtype, allow_unsafe: bool, sd: dict[str, torch.Tensor] | None = None) -> Any:
    """The FLUX ``AutoencoderKL`` (16 latent channels, scaling 0.3611, shift 0.1159) of a VAE file (or of the VAE
    tensors *sd* read from it, e.g. those of an all-in-one FLUX checkpoint)."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    sd = read_state_dict(path, allow_unsafe=allow_unsafe) if sd is None else sd
    fold_fp8_scales(sd, dtype)  # a VAE inside a scaled fp8 file: not kept fp8
    if any(k.startswith("encoder.down_blocks.") for k in sd):  # diffusers-keyed VAE file
        n_levels = len({k.split(".")[2] for k in sd if k.startswith("encoder.down_blocks.")})
        sd = vae_to_ldm(sd, {"block_out_channels": [0] * n_levels}, prefix="")
    try:
        prefix = ci.vae_prefix(sd)
        cfg = ci.infer_vae_config(sd, "zimage")
    except (KeyError, ValueError) as exc:
        raise CheckpointLoadError(f"{path} is not a VAE file ({exc})") from None
    if cfg["latent_channels"] != 16:
        raise CheckpointLoadError(
            f"{path} is a VAE with {cfg['latent_channels']} latent channels; Z-Image needs the FLUX VAE (16, ae.safetensors)"
        )
    sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)} if prefix else sd
    with _empty_init():
        vae = AutoencoderKL.from_config(cfg)
    _cast_assign(vae, convert_ldm_vae_checkpoint(sd, vae.config), dtype, "VAE", path)
    sd.clear()
    return vae


def zimage_scheduler_config() -> dict[str, Any]:
    """Z-Image Turbo's flow-matching scheduler config with Atelier's ``atelier_flow_timestep`` key."""
    return load_family_config("zimage", "scheduler")


def make_flow_scheduler(config: dict[str, Any]) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler.from_config(
        {k: v for k, v in copy.deepcopy(config).items() if not k.startswith("atelier_")}
    )


def load_zimage(path: Path, parts: dict[str, Path], device_policy: Any = None, allow_unsafe: bool = False) -> LoadedModel:
    """A ``LoadedModel`` (family ``zimage``) from the diffusion model *path* and ``parts`` = text_encoder + vae files."""
    from diffusers import ZImagePipeline

    missing = [k for k in PART_KINDS if parts.get(k) is None]
    if missing:
        raise CheckpointLoadError(f"{path}: Z-Image needs a {' and a '.join(missing)} file (none given)")
    from app.devices import family_compute_dtype

    device, dtype, vae_dtype = device_and_dtypes(device_policy)
    dtype = family_compute_dtype(dtype, "bfloat16", device)  # Z-Image and Qwen3 are bf16 models
    transformer, dm_dtypes = build_transformer(path, dtype, allow_unsafe)
    te_path, vae_path = Path(parts["text_encoder"]), Path(parts["vae"])
    text_encoder, tokenizer, te_dtypes = build_text_encoder(te_path, dtype, transformer.config.cap_feat_dim,
                                                            allow_unsafe)
    vae = build_flux_vae(vae_path, vae_dtype, allow_unsafe)
    sched_cfg = zimage_scheduler_config()
    pipe = ZImagePipeline(scheduler=make_flow_scheduler(sched_cfg), vae=vae, text_encoder=text_encoder,
                          tokenizer=tokenizer, transformer=transformer)
    offload = device_policy.offload_for(False) if hasattr(device_policy, "offload_for") else "none"
    if device.type != "cpu" and offload in (None, "none"):
        transformer.to(device)  # the encoder stays in CPU memory and visits the GPU only to encode
        vae.to(device)
    pipe.set_progress_bar_config(disable=True)
    extra = {
        "parts": {"diffusion_model": str(path), "text_encoder": str(te_path), "vae": str(vae_path)},
        "stored_dtypes": {"diffusion_model": dm_dtypes, "text_encoder": te_dtypes},
    }
    return LoadedModel(family="zimage", pipe=pipe, scheduler_config=copy.deepcopy(sched_cfg), prediction_type="flow",
                       is_sdxl=False, is_inpainting=False, source_path=path, vae_path=vae_path, extra=extra)
