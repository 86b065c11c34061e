"""A tiny random FLUX.1 (dev, schnell or Fill) in the layouts users have, with the real files' tensor names and dtypes.

``write_tiny_flux(data_dir, variant)`` (variant ``dev``, ``schnell`` or ``fill``) writes:

- ``models/diffusion_models/flux1-<variant>.safetensors`` (Fill: ``flux1-fill-dev.safetensors``): the transformer in
  BFL's layout (fused ``img_attn.qkv``, ``single_blocks.N.linear1``, ``img_in``, ``guidance_in`` for dev and Fill ...),
  no prefix, bf16; Fill's ``img_in`` takes 384 channels as flux1-fill-dev's does;
- ``models/text_encoders/clip_l.safetensors`` (CLIP-L text tower, ``text_model.*`` keys, fp16) and
  ``models/text_encoders/t5xxl_fp16.safetensors`` (a tiny T5 v1.1 encoder with T5-XXL's 32,128-row vocabulary table,
  fp16), shared by both variants;
- ``models/VAE/ae.safetensors``: the FLUX VAE in BFL's LDM layout (16 latent channels), fp32;
- ``models/Stable-diffusion/flux1-<variant>-aio.safetensors``: the same four parts in one file, as civitai's
  all-in-one checkpoints (ComfyUI's names: ``model.diffusion_model.``, ``text_encoders.clip_l.transformer.``,
  ``text_encoders.t5xxl.transformer.``, ``vae.``);
- ``models/Lora/tiny-flux-lora.safetensors`` (dev only): a rank-4 kohya LoRA on the original module names
  (``lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight`` ..., with ``alpha``).

The width of the transformer (64, 2 heads of 32) and its text widths (T5 32, CLIP-L 32) are tiny; everything else
(packing, RoPE split, key names) is FLUX's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from app.devtools import tiny_configs as tc
from app.devtools.tiny_t5 import T5_TINY_WIDTH, tiny_t5_file_tensors
from app.models.load import ldm_convert as lc
from app.models.load.flux_convert import diffusers_to_original, rope_axes

VARIANTS = ("dev", "schnell", "fill")
#: the family id of each variant's files
VARIANT_FAMILY = {"dev": "flux", "schnell": "flux-schnell", "fill": "flux-fill"}
LORA_RANK, LORA_ALPHA = 4, 2.0


def tiny_flux_transformer_config(variant: str = "dev") -> dict[str, Any]:
    """``FluxTransformer2DModel`` kwargs: width 64 in 2 heads of 32 (RoPE 4/14/14), 2 double and 2 single blocks;
    Fill: 384 input channels (latents + masked-image latents + folded mask), 64 output channels, as flux1-fill-dev."""
    fill = variant == "fill"
    return {"patch_size": 1, "in_channels": 384 if fill else 64, "out_channels": 64 if fill else None,
            "num_layers": 2, "num_single_layers": 2, "attention_head_dim": 32,
            "num_attention_heads": 2, "joint_attention_dim": T5_TINY_WIDTH, "pooled_projection_dim": tc.SD1_HIDDEN,
            "guidance_embeds": variant != "schnell", "axes_dims_rope": rope_axes(32)}


def tiny_flux_transformer(variant: str = "dev", seed: int = 0) -> torch.nn.Module:
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    model = FluxTransformer2DModel(**tiny_flux_transformer_config(variant)).eval()
    gen = torch.Generator().manual_seed(seed + 11)
    with torch.no_grad():  # diffusers zero-initialises the output projections; trained ones are not zero
        for name, param in model.named_parameters():
            if torch.count_nonzero(param) == 0 and param.ndim >= 1 and not name.endswith("bias"):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    return model


def tiny_clip_l(seed: int = 0) -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    cfg = {k: v for k, v in tc.tiny_text_encoder_config("sd1", 1).items() if k != "architectures"}
    return CLIPTextModel(CLIPTextConfig(**cfg)).eval()


def _clip_file_tensors(seed: int) -> dict[str, torch.Tensor]:
    sd = tiny_clip_l(seed).state_dict()
    return {("" if k.startswith("text_model.") else "text_model.") + k: v.detach().to(torch.float16).contiguous()
            for k, v in sd.items()}


def _vae_tensors(seed: int) -> dict[str, torch.Tensor]:
    from app.devtools.tiny_zimage import tiny_flux_vae

    vae_sd = lc.vae_to_ldm(tiny_flux_vae(seed).state_dict(), tc.tiny_flux_vae_config(), prefix="")
    return {k: v.detach().float().contiguous() for k, v in vae_sd.items()}


#: the FLUX blocks the tiny LoRA patches (double-block attention and MLP, single-block linears)
_LORA_TARGETS = ("img_attn.qkv", "txt_attn.qkv", "img_attn.proj", "img_mlp.0", "linear1", "linear2")


def kohya_lora(original: dict[str, torch.Tensor], seed: int, targets: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """A random kohya-format LoRA (``lora_unet_<flat name>.lora_down/lora_up/alpha``, bf16, rank ``LORA_RANK``) for
    the 2-D weights of *original* (a diffusion model in its original key names) whose names end with *targets*."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, t in original.items():
        name = key.removesuffix(".weight")
        if not key.endswith(".weight") or t.ndim != 2 or not name.endswith(targets):
            continue
        flat = "lora_unet_" + name.replace(".", "_")
        out[f"{flat}.lora_down.weight"] = (torch.randn(LORA_RANK, t.shape[1], generator=gen) * 0.3).to(torch.bfloat16)
        out[f"{flat}.lora_up.weight"] = (torch.randn(t.shape[0], LORA_RANK, generator=gen) * 0.3).to(torch.bfloat16)
        out[f"{flat}.alpha"] = torch.tensor(LORA_ALPHA)
    return out


def flux_file_tensors(variant: str = "dev", seed: int = 0) -> dict[str, torch.Tensor]:
    """The tiny transformer of ``write_tiny_flux(.., variant, seed)`` in BFL's names, bf16 (as its file holds it)."""
    model_seed = seed + {"dev": 1, "schnell": 21, "fill": 41}[variant]
    original = diffusers_to_original(tiny_flux_transformer(variant, model_seed).state_dict())
    return {k: v.detach().to(torch.bfloat16).contiguous() for k, v in original.items()}


def write_tiny_flux(out_dir: str | Path, variant: str = "dev", seed: int = 0) -> dict[str, Path]:
    """Write the tiny FLUX files of *variant* into the data dir *out_dir*; returns ``{label: path}`` with the labels
    ``flux[-schnell|-fill]:diffusion_model``, ``…:clip_l``, ``…:t5xxl``, ``…:vae``, ``…:all_in_one`` and (dev) ``flux:lora``."""
    from safetensors.torch import save_file

    if variant not in VARIANTS:
        raise ValueError(f"unknown FLUX variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    tag = VARIANT_FAMILY[variant]
    name = "fill-dev" if variant == "fill" else variant
    models = Path(out_dir) / "models"
    paths = {
        f"{tag}:diffusion_model": models / "diffusion_models" / f"flux1-{name}.safetensors",
        f"{tag}:clip_l": models / "text_encoders" / "clip_l.safetensors",
        f"{tag}:t5xxl": models / "text_encoders" / "t5xxl_fp16.safetensors",
        f"{tag}:vae": models / "VAE" / "ae.safetensors",
        f"{tag}:all_in_one": models / "Stable-diffusion" / f"flux1-{name}-aio.safetensors",
    }
    if variant == "dev":
        paths["flux:lora"] = models / "Lora" / "tiny-flux-lora.safetensors"
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    original = flux_file_tensors(variant, seed)
    clip = _clip_file_tensors(seed + 2)  # the text encoders and the VAE are the same files for dev and schnell
    t5 = tiny_t5_file_tensors(seed + 3, torch.float16)
    vae = _vae_tensors(seed + 4)
    save_file(original, str(paths[f"{tag}:diffusion_model"]))
    save_file(clip, str(paths[f"{tag}:clip_l"]))
    save_file(t5, str(paths[f"{tag}:t5xxl"]))
    save_file(vae, str(paths[f"{tag}:vae"]))
    aio: dict[str, torch.Tensor] = {"model.diffusion_model." + k: v for k, v in original.items()}
    aio.update({"text_encoders.clip_l.transformer." + k: v for k, v in clip.items()})
    aio.update({"text_encoders.t5xxl.transformer." + k: v for k, v in t5.items()})
    aio.update({"vae." + k: v for k, v in vae.items()})
    save_file(aio, str(paths[f"{tag}:all_in_one"]))
    if variant == "dev":
        meta = {"ss_output_name": "tiny-flux-lora", "ss_network_dim": str(LORA_RANK), "ss_network_alpha": str(LORA_ALPHA),
                "modelspec.architecture": "flux-1-dev/lora"}
        save_file(kohya_lora(original, seed + 5, _LORA_TARGETS), str(paths["flux:lora"]), metadata=meta)
    return paths


def to_fp8_files(paths: dict[str, Path]) -> dict[str, Path]:
    """Rewrite the diffusion model and T5 files of *paths* (``write_tiny_flux``'s) as ``float8_e4m3fn`` files
    (every tensor of two or more dimensions; norms and biases keep their dtype), named as the fp8 downloads
    (``flux1-dev-fp8_e4m3fn.safetensors``, ``t5xxl_fp8_e4m3fn.safetensors``); the originals are removed."""
    from safetensors.torch import load_file, save_file

    out = dict(paths)
    for label, path in paths.items():
        if not label.endswith((":diffusion_model", ":t5xxl")):
            continue
        sd = {k: (v.to(torch.float8_e4m3fn) if v.ndim >= 2 else v) for k, v in load_file(str(path)).items()}
        stem = "t5xxl" if label.endswith(":t5xxl") else path.stem
        new = path.with_name(f"{stem}_fp8_e4m3fn.safetensors")
        save_file(sd, str(new))
        path.unlink()
        out[label] = new
    return out
