"""A tiny random Z-Image in ComfyUI's split layout, with the real files' tensor names and dtypes.

``write_tiny_zimage(data_dir)`` writes:

- ``models/diffusion_models/z_image_turbo_bf16.safetensors``: the transformer in the original single-file layout
  (fused ``attention.qkv``, ``x_embedder``, ``final_layer``..., no prefix), bf16 like Comfy-Org's file;
- ``models/text_encoders/qwen_3_4b.safetensors``: a tiny Qwen3 decoder as ``model.*`` keys (no ``lm_head``), bf16;
  its vocabulary is the tiny byte-level tokenizer's (``app.prompts.qwen_tokenizer.TINY_VOCAB_SIZE``);
- ``models/VAE/ae.safetensors``: the FLUX VAE in the original BFL/LDM layout (16 latent channels, no quant convs),
  fp32 like BFL's ``ae.safetensors``;
- ``models/Lora/tiny-zimage-lora.safetensors``: a rank-4 LoRA in the ``diffusion_model.<module>.lora_A/lora_B``
  style of ComfyUI / ai-toolkit Z-Image LoRAs (diffusers module names: ``attention.to_q`` ..., ``feed_forward.w1``).

``weights="fp8"`` writes the transformer and the text encoder as ``float8_e4m3fn`` (every tensor of two or more
dimensions; norms stay bf16), named ``z_image_turbo_fp8_e4m3fn.safetensors`` / ``qwen_3_4b_fp8_e4m3fn.safetensors``,
to test upcasting on load. The pad-token parameters, zero in a fresh model, are randomised (as trained ones are).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from app.devtools import tiny_configs as tc
from app.models.load import ldm_convert as lc
from app.models.load.zimage_convert import diffusers_to_original

LORA_RANK = 4
WEIGHT_KINDS = ("bf16", "fp8")
_FILE_NAMES = {
    "bf16": ("z_image_turbo_bf16.safetensors", "qwen_3_4b.safetensors"),
    "fp8": ("z_image_turbo_fp8_e4m3fn.safetensors", "qwen_3_4b_fp8_e4m3fn.safetensors"),
}


def _cast(sd: dict[str, torch.Tensor], weights: str) -> dict[str, torch.Tensor]:
    out = {}
    for key, t in sd.items():
        t = t.detach().to(torch.bfloat16)
        if weights == "fp8" and t.ndim >= 2:
            t = t.to(torch.float8_e4m3fn)
        out[key] = t.contiguous()
    return out


def tiny_zimage_transformer(seed: int = 0) -> torch.nn.Module:
    """The tiny ``ZImageTransformer2DModel`` with random weights (pad tokens randomised too)."""
    from diffusers import ZImageTransformer2DModel

    torch.manual_seed(seed)
    model = ZImageTransformer2DModel.from_config(tc.tiny_zimage_transformer_config()).eval()
    gen = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for name in ("x_pad_token", "cap_pad_token"):
            param = getattr(model, name)
            param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    return model


def tiny_qwen3(seed: int = 0) -> torch.nn.Module:
    """The tiny ``Qwen3Model`` text encoder (vocabulary of the tiny byte-level tokenizer)."""
    from transformers import Qwen3Config, Qwen3Model

    from app.prompts.qwen_tokenizer import TINY_VOCAB_SIZE

    torch.manual_seed(seed)
    cfg = {k: v for k, v in tc.tiny_qwen3_config(TINY_VOCAB_SIZE).items() if k != "architectures"}
    return Qwen3Model(Qwen3Config(**cfg)).eval()


def tiny_flux_vae(seed: int = 0) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL.from_config(tc.tiny_flux_vae_config()).eval()


def _lora(transformer_sd: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    modules = ("attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0",
               "feed_forward.w1", "feed_forward.w2", "feed_forward.w3")
    out: dict[str, torch.Tensor] = {}
    for key, t in transformer_sd.items():
        name = key.removesuffix(".weight")
        if not (key.startswith("layers.") and name.endswith(modules)):
            continue
        out[f"diffusion_model.{name}.lora_A.weight"] = (torch.randn(LORA_RANK, t.shape[1], generator=gen) * 0.2).to(
            torch.bfloat16)
        out[f"diffusion_model.{name}.lora_B.weight"] = (torch.randn(t.shape[0], LORA_RANK, generator=gen) * 0.2).to(
            torch.bfloat16)
    return out


def write_tiny_zimage(out_dir: str | Path, seed: int = 0, weights: str = "bf16") -> dict[str, Path]:
    """Write the tiny Z-Image files into the data dir *out_dir*; returns ``{label: path}`` with the labels
    ``zimage:diffusion_model``, ``zimage:text_encoder``, ``zimage:vae`` and ``zimage:lora``."""
    from safetensors.torch import save_file

    if weights not in WEIGHT_KINDS:
        raise ValueError(f"unknown weight kind {weights!r}; expected one of {', '.join(WEIGHT_KINDS)}")
    models = Path(out_dir) / "models"
    dm_name, te_name = _FILE_NAMES[weights]
    paths = {
        "zimage:diffusion_model": models / "diffusion_models" / dm_name,
        "zimage:text_encoder": models / "text_encoders" / te_name,
        "zimage:vae": models / "VAE" / "ae.safetensors",
        "zimage:lora": models / "Lora" / "tiny-zimage-lora.safetensors",
    }
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    transformer_sd = tiny_zimage_transformer(seed + 1).state_dict()
    save_file(_cast(diffusers_to_original(transformer_sd), weights), str(paths["zimage:diffusion_model"]))
    te_sd = {"model." + k: v for k, v in tiny_qwen3(seed + 2).state_dict().items()}
    save_file(_cast(te_sd, weights), str(paths["zimage:text_encoder"]))
    vcfg = tc.tiny_flux_vae_config()
    vae_sd = lc.vae_to_ldm(tiny_flux_vae(seed + 3).state_dict(), vcfg, prefix="")
    save_file({k: v.detach().float().contiguous() for k, v in vae_sd.items()}, str(paths["zimage:vae"]))
    meta: dict[str, Any] = {"ss_output_name": "tiny-zimage-lora", "ss_network_dim": str(LORA_RANK),
                            "modelspec.architecture": "z-image-turbo/lora"}
    save_file(_lora(transformer_sd, seed + 4), str(paths["zimage:lora"]), metadata=meta)
    return paths
