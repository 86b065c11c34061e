"""A tiny random SD3.5 (medium and large) in the layouts users have, with the real files' tensor names.

``write_tiny_sd3(data_dir)`` writes:

- ``models/diffusion_models/sd3.5_medium.safetensors``: an MMDiT-X (``x_block.attn2`` in blocks 0 and 1, RMS qk norm)
  in Stability's layout, no prefix, bf16;
- ``models/text_encoders/clip_l.safetensors`` (the same tiny CLIP-L file as the tiny FLUX, no projection: SD3 uses
  CLIP-L's pooled output unprojected), ``clip_g.safetensors`` (a tiny CLIP-G with its ``text_projection``, fp16) and
  ``t5xxl_tiny128_fp16.safetensors`` (a tiny T5 v1.1 with T5-XXL's vocabulary, 128 wide: SD3's T5 must be at least as
  wide as CLIP-L ++ CLIP-G; the tiny FLUX's T5 is 32 wide, so it gets its own file name);
- ``models/VAE/sd3_vae.safetensors``: the 16-channel VAE in the LDM layout, fp32;
- ``models/Stable-diffusion/sd3.5_medium-aio.safetensors``: the same medium model with every part inside (ComfyUI's
  names: ``model.diffusion_model.``, ``first_stage_model.``, ``text_encoders.clip_l.transformer.``,
  ``text_encoders.clip_g.transformer.``, ``text_encoders.t5xxl.transformer.``);
- ``models/Stable-diffusion/sd3.5_large.safetensors``: a large-layout MMDiT (qk norm, no ``attn2``) with its VAE and
  no text encoders, as Stability ships ``sd3.5_large.safetensors`` (the text encoders come from the folder);
- ``models/Lora/tiny-sd3-lora.safetensors``: a rank-4 kohya LoRA on the medium model's original module names
  (``lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight`` ..., with ``alpha``).

Widths are tiny (MMDiT 64 = 4 heads of 16, CLIP-L 32, CLIP-G 64, T5 128); everything else (patching, position grid,
key names, pre-only last text block) is SD3's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from app.devtools import tiny_configs as tc
from app.devtools.tiny_flux import LORA_ALPHA, LORA_RANK, _clip_file_tensors, _vae_tensors, kohya_lora
from app.devtools.tiny_t5 import tiny_t5_file_tensors
from app.models.load.sd3_convert import AIO_PREFIXES, SD3_PREFIX, diffusers_to_original

T5_WIDTH = 128
CLIP_G_WIDTH = 64


def tiny_sd3_transformer_config(variant: str = "medium") -> dict[str, Any]:
    """``SD3Transformer2DModel`` kwargs: width 64, 3 blocks, a 32x32 position grid (images up to 512 px)."""
    return {"sample_size": 32, "patch_size": 2, "in_channels": 16, "num_layers": 3, "attention_head_dim": 16,
            "num_attention_heads": 4, "joint_attention_dim": T5_WIDTH, "caption_projection_dim": 64,
            "pooled_projection_dim": tc.SD1_HIDDEN + CLIP_G_WIDTH, "out_channels": 16, "pos_embed_max_size": 32,
            "dual_attention_layers": (0, 1) if variant == "medium" else (), "qk_norm": "rms_norm"}


def tiny_sd3_transformer(variant: str = "medium", seed: int = 0) -> torch.nn.Module:
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(seed)
    model = SD3Transformer2DModel(**tiny_sd3_transformer_config(variant)).eval()
    gen = torch.Generator().manual_seed(seed + 11)
    with torch.no_grad():  # zero-initialised projections would make a trivial model
        for name, param in model.named_parameters():
            if torch.count_nonzero(param) == 0 and param.ndim >= 1 and not name.endswith("bias"):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    return model


def _clip_g_tensors(seed: int) -> dict[str, torch.Tensor]:
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    cfg = {k: v for k, v in tc.tiny_text_encoder_config("sdxl", 2).items() if k != "architectures"}
    cfg.update(hidden_size=CLIP_G_WIDTH, num_attention_heads=CLIP_G_WIDTH // 8, projection_dim=CLIP_G_WIDTH)
    sd = CLIPTextModelWithProjection(CLIPTextConfig(**cfg)).eval().state_dict()
    return {(k if k.startswith(("text_model.", "text_projection")) else "text_model." + k):
            v.detach().to(torch.float16).contiguous() for k, v in sd.items()}


#: the MMDiT blocks the tiny LoRA patches (joint attention, the x block's MLP, the context MLP)
_LORA_TARGETS = ("x_block.attn.qkv", "context_block.attn.qkv", "x_block.attn.proj", "x_block.mlp.fc1",
                 "x_block.attn2.qkv", "context_block.mlp.fc2")


def _original(variant: str, seed: int) -> dict[str, torch.Tensor]:
    sd = diffusers_to_original(tiny_sd3_transformer(variant, seed).state_dict())
    return {k: v.detach().to(torch.bfloat16).contiguous() for k, v in sd.items()}


def write_tiny_sd3(out_dir: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write the tiny SD3.5 files into the data dir *out_dir*; returns ``{label: path}`` with the labels
    ``sd3:diffusion_model``, ``sd3:clip_l``, ``sd3:clip_g``, ``sd3:t5xxl``, ``sd3:vae``, ``sd3:all_in_one``,
    ``sd3:large_checkpoint`` and ``sd3:lora``."""
    from safetensors.torch import save_file

    models = Path(out_dir) / "models"
    paths = {
        "sd3:diffusion_model": models / "diffusion_models" / "sd3.5_medium.safetensors",
        "sd3:clip_l": models / "text_encoders" / "clip_l.safetensors",
        "sd3:clip_g": models / "text_encoders" / "clip_g.safetensors",
        "sd3:t5xxl": models / "text_encoders" / "t5xxl_tiny128_fp16.safetensors",
        "sd3:vae": models / "VAE" / "sd3_vae.safetensors",
        "sd3:all_in_one": models / "Stable-diffusion" / "sd3.5_medium-aio.safetensors",
        "sd3:large_checkpoint": models / "Stable-diffusion" / "sd3.5_large.safetensors",
        "sd3:lora": models / "Lora" / "tiny-sd3-lora.safetensors",
    }
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    medium = _original("medium", seed + 31)
    clip_l = _clip_file_tensors(seed + 2)  # byte-identical to the tiny FLUX's clip_l.safetensors (same seed)
    clip_g = _clip_g_tensors(seed + 32)
    t5 = tiny_t5_file_tensors(seed + 33, torch.float16, width=T5_WIDTH)
    vae = _vae_tensors(seed + 34)
    save_file(medium, str(paths["sd3:diffusion_model"]))
    save_file(clip_l, str(paths["sd3:clip_l"]))
    save_file(clip_g, str(paths["sd3:clip_g"]))
    save_file(t5, str(paths["sd3:t5xxl"]))
    save_file(vae, str(paths["sd3:vae"]))
    aio: dict[str, torch.Tensor] = {SD3_PREFIX + k: v for k, v in medium.items()}
    for kind, tensors in (("text_encoder", clip_l), ("text_encoder_2", clip_g), ("text_encoder_3", t5)):
        aio.update({AIO_PREFIXES[kind] + k: v for k, v in tensors.items()})
    aio.update({"first_stage_model." + k: v for k, v in vae.items()})
    save_file(aio, str(paths["sd3:all_in_one"]))
    large = {SD3_PREFIX + k: v for k, v in _original("large", seed + 35).items()}
    large.update({"first_stage_model." + k: v for k, v in vae.items()})
    save_file(large, str(paths["sd3:large_checkpoint"]))
    meta = {"ss_output_name": "tiny-sd3-lora", "ss_network_dim": str(LORA_RANK), "ss_network_alpha": str(LORA_ALPHA),
            "modelspec.architecture": "stable-diffusion-v3.5-medium/lora"}
    save_file(kohya_lora(medium, seed + 36, _LORA_TARGETS), str(paths["sd3:lora"]), metadata=meta)
    return paths


def write_tiny_sd3_gguf(out_dir: str | Path, quant: str = "Q8_0", seed: int = 0) -> Path:
    """The tiny medium MMDiT of ``write_tiny_sd3`` (same *seed*, the bf16 values) as city96 converts SD3.5: a GGUF file
    ``models/diffusion_models/sd3.5_medium-<quant>.gguf`` with Stability's key names (its rows are 64 wide, so every
    mix quantizes the linears as ``Q8_0``)."""
    from app.devtools.tiny_gguf import write_gguf

    path = Path(out_dir) / "models" / "diffusion_models" / f"sd3.5_medium-{quant}.gguf"
    return write_gguf(_original("medium", seed + 31), path, quant, arch="sd3")
