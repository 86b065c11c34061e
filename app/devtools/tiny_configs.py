"""Tiny architecture configs of the test models, in one place.

Each config starts from the shipped full-size family config (``app/configs/<family>``) and shrinks
only dimensions. The values follow the loader's inference rules (see ``app.models.load.config_infer``)
so a tiny file loads back into exactly this architecture: attention heads SD1 = 8, SD2/SDXL head
dim = min(64, smallest channel // 2); CLIP head dim 8 below width 256; GroupNorm groups =
gcd(32, smallest channel).
"""

from __future__ import annotations

from typing import Any

from app.configs import load_family_config

TINY_FAMILIES: tuple[str, ...] = ("sd1", "sd1-inpaint", "sd2", "sd2v", "sdxl", "sdxl-inpaint", "sdxl-refiner")
CLIP_VOCAB = 49408
SD1_HIDDEN = 32
SD2_HIDDEN = 32
SDXL_TE1_HIDDEN = 32
SDXL_TE2_HIDDEN = 64
SDXL_TE2_PROJECTION = 32
SDXL_TIME_EMBED = 8
TE_LAYERS = 3


def _base(family: str) -> str:
    return family.removesuffix("-inpaint")


def tiny_unet_config(family: str) -> dict[str, Any]:
    """UNet2DConditionModel config of the tiny *family* model."""
    cfg = load_family_config(family, "unet")
    base = _base(family)
    cfg.update(sample_size=8, layers_per_block=2, block_out_channels=[32, 64], norm_num_groups=32)
    if base == "sdxl-refiner":  # the refiner's layout: no attention in the last level, one depth (2) everywhere
        cfg.update(
            down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
            up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
            transformer_layers_per_block=2,
            attention_head_dim=[2, 4],
            cross_attention_dim=SDXL_TE2_HIDDEN,
            addition_time_embed_dim=SDXL_TIME_EMBED,
            projection_class_embeddings_input_dim=SDXL_TE2_PROJECTION + 5 * SDXL_TIME_EMBED,
        )
    elif base == "sdxl":
        cfg.update(
            down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
            transformer_layers_per_block=[1, 2],
            attention_head_dim=[2, 4],
            cross_attention_dim=SDXL_TE1_HIDDEN + SDXL_TE2_HIDDEN,
            addition_time_embed_dim=SDXL_TIME_EMBED,
            projection_class_embeddings_input_dim=SDXL_TE2_PROJECTION + 6 * SDXL_TIME_EMBED,
        )
    else:
        cfg.update(
            down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
            up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
            cross_attention_dim=SD1_HIDDEN if base == "sd1" else SD2_HIDDEN,
            attention_head_dim=8 if base == "sd1" else [2, 4],
        )
    return cfg


def tiny_vae_config(family: str) -> dict[str, Any]:
    """AutoencoderKL config: 4 levels (scale factor 8 like the real VAE), a few thousand parameters."""
    cfg = load_family_config(family, "vae")
    cfg.update(block_out_channels=[8, 8, 16, 16], layers_per_block=1, norm_num_groups=8, sample_size=64)
    return cfg


def tiny_text_encoder_config(family: str, which: int = 1) -> dict[str, Any]:
    """CLIPTextConfig dict for text encoder *which* (1 or 2) with the real 49408-token vocabulary."""
    base = _base(family)
    cfg = load_family_config(family, "text_encoder" if which == 1 else "text_encoder_2")
    hidden = {"sd1": SD1_HIDDEN, "sd2": SD2_HIDDEN, "sd2v": SD2_HIDDEN, "sdxl": SDXL_TE1_HIDDEN,
              "sdxl-refiner": SDXL_TE2_HIDDEN}[base]
    if which == 2:
        hidden = SDXL_TE2_HIDDEN
    cfg.update(
        vocab_size=CLIP_VOCAB,
        hidden_size=hidden,
        intermediate_size=hidden + 5,
        num_hidden_layers=TE_LAYERS,
        num_attention_heads=hidden // 8,
    )
    if which == 2:
        cfg["projection_dim"] = SDXL_TE2_PROJECTION
    elif base not in ("sd2", "sd2v"):
        cfg["projection_dim"] = hidden

    return cfg


# -- Z-Image (split files: diffusion model, Qwen3 text encoder, FLUX VAE) --------------------------------------------
#: families written as ComfyUI split files rather than one checkpoint
TINY_SPLIT_FAMILIES: tuple[str, ...] = ("zimage", "flux", "flux-schnell", "flux-fill", "sd3")
ZIMAGE_DIM = 64
ZIMAGE_TE_HIDDEN = 32


def tiny_zimage_transformer_config() -> dict[str, Any]:
    """ZImageTransformer2DModel config: dim 64 in 2 heads of 32 (RoPE axes 8/12/12), 2 layers, 1 refiner layer each.

    The timestep MLP keeps Z-Image's fixed 1024 width, which makes up most of the ~0.6 M parameters."""
    cfg = load_family_config("zimage", "transformer")
    cfg.update(dim=ZIMAGE_DIM, n_layers=2, n_refiner_layers=1, n_heads=2, n_kv_heads=2, cap_feat_dim=ZIMAGE_TE_HIDDEN,
               axes_dims=[8, 12, 12])
    return cfg


def tiny_qwen3_config(vocab_size: int) -> dict[str, Any]:
    """Qwen3Config kwargs of the tiny text encoder (hidden 32, 2 layers, 2 query heads / 1 kv head of 16)."""
    cfg = load_family_config("zimage", "text_encoder")
    cfg.update(vocab_size=vocab_size, hidden_size=ZIMAGE_TE_HIDDEN, intermediate_size=64, num_hidden_layers=2,
               max_window_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
               bos_token_id=256, eos_token_id=258)  # the tiny tokenizer's <|endoftext|> and <|im_end|>
    return cfg


def tiny_flux_vae_config() -> dict[str, Any]:
    """The FLUX VAE shrunk like the SD one (4 levels, scale factor 8; 16 latent channels, no quant convs)."""
    cfg = load_family_config("zimage", "vae")
    cfg.update(block_out_channels=[8, 8, 16, 16], layers_per_block=1, norm_num_groups=8, sample_size=64)
    return cfg
