"""diffusers -> original LDM/SGM single-file key map (the direction diffusers does not ship).

Used to write real single-file checkpoints (tiny test models, benchmarks) with the key names an
A1111 user's files have: ``model.diffusion_model.*`` (UNet), ``first_stage_model.*`` (VAE),
``cond_stage_model.transformer.text_model.*`` (SD1 CLIP-L), ``cond_stage_model.model.*`` (SD2
OpenCLIP-H), ``conditioner.embedders.0.transformer.text_model.*`` / ``conditioner.embedders.1.model.*``
(SDXL CLIP-L / OpenCLIP-G). The inverse is diffusers' ``convert_ldm_*`` functions; the tests check
that the round trip gives back the same keys and tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_CLIP_PREFIX = "cond_stage_model.transformer."
SD2_OPEN_CLIP_PREFIX = "cond_stage_model.model."
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer."
SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."
SDXL_REFINER_OPEN_CLIP_PREFIX = "conditioner.embedders.0.model."

_UNET_RESNET_RENAMES = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
_UNET_FIXED = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_ATTN_RENAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _unet_prefix_rules(config: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(diffusers prefix, LDM prefix, is_resnet) rules generated from the UNet block layout."""
    rules: list[tuple[str, str, bool]] = [(k, v, False) for k, v in _UNET_FIXED.items()]
    layers = int(config["layers_per_block"])
    down_types = list(config["down_block_types"])
    up_types = list(config["up_block_types"])
    idx = 1
    for i, block_type in enumerate(down_types):
        for j in range(layers):
            rules.append((f"down_blocks.{i}.resnets.{j}", f"input_blocks.{idx}.0", True))
            if "CrossAttn" in block_type:
                rules.append((f"down_blocks.{i}.attentions.{j}", f"input_blocks.{idx}.1", False))
            idx += 1
        if i < len(down_types) - 1:
            rules.append((f"down_blocks.{i}.downsamplers.0.conv", f"input_blocks.{idx}.0.op", False))
            idx += 1
    rules += [
        ("mid_block.resnets.0", "middle_block.0", True),
        ("mid_block.attentions.0", "middle_block.1", False),
        ("mid_block.resnets.1", "middle_block.2", True),
    ]
    idx = 0
    for i, block_type in enumerate(up_types):
        has_attn = "CrossAttn" in block_type
        for j in range(layers + 1):
            rules.append((f"up_blocks.{i}.resnets.{j}", f"output_blocks.{idx}.0", True))
            if has_attn:
                rules.append((f"up_blocks.{i}.attentions.{j}", f"output_blocks.{idx}.1", False))
            if j == layers and i < len(up_types) - 1:
                slot = 2 if has_attn else 1
                rules.append((f"up_blocks.{i}.upsamplers.0", f"output_blocks.{idx}.{slot}", False))
            idx += 1
    return rules


def _apply_rules(key: str, rules: list[tuple[str, str, bool]], what: str) -> str:
    for src, dst, is_resnet in rules:
        if key.startswith(src + "."):
            rest = key[len(src) + 1 :]
            if is_resnet:
                head, _, tail = rest.partition(".")
                rest = dict(_UNET_RESNET_RENAMES).get(head, head) + ("." + tail if tail else "")
            return f"{dst}.{rest}"
    raise KeyError(f"no LDM name for {what} key {key!r}")


def unet_to_ldm(unet_sd: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Rename a diffusers ``UNet2DConditionModel`` state dict to LDM keys (``model.diffusion_model.*``)."""
    rules = _unet_prefix_rules(config)
    return {UNET_PREFIX + _apply_rules(k, rules, "UNet"): v for k, v in unet_sd.items()}


def _vae_key(key: str, n_levels: int) -> tuple[str, bool]:
    """LDM name of one diffusers VAE key; the flag says the weight must become a 1x1 conv."""
    parts = key.split(".")
    side = parts[0]
    if parts[1] == "conv_norm_out":
        return ".".join([side, "norm_out", *parts[2:]]), False
    if parts[1] in ("down_blocks", "up_blocks"):
        level = int(parts[2])
        name = "down" if side == "encoder" else "up"
        if side == "decoder":
            level = n_levels - 1 - level
        if parts[3] == "resnets":
            tail = ["nin_shortcut" if p == "conv_shortcut" else p for p in parts[5:]]
            return ".".join([side, name, str(level), "block", parts[4], *tail]), False
        sampler = "downsample" if side == "encoder" else "upsample"
        return ".".join([side, name, str(level), sampler, *parts[5:]]), False
    if parts[1] == "mid_block":
        if parts[2] == "resnets":
            tail = ["nin_shortcut" if p == "conv_shortcut" else p for p in parts[4:]]
            return ".".join([side, "mid", f"block_{int(parts[3]) + 1}", *tail]), False
        rest = ".".join(parts[4:])
        for src, dst in _VAE_ATTN_RENAMES.items():
            if rest.startswith(src + "."):
                rest = dst + rest[len(src) :]
                break
        return f"{side}.mid.attn_1.{rest}", rest.endswith("weight") and not rest.startswith("norm")
    return key, False


def vae_to_ldm(
    vae_sd: Mapping[str, torch.Tensor], config: Mapping[str, Any], prefix: str = VAE_PREFIX
) -> dict[str, torch.Tensor]:
    """Rename a diffusers ``AutoencoderKL`` state dict to LDM keys; attention linears become 1x1 convs."""
    n_levels = len(config["block_out_channels"])
    out: dict[str, torch.Tensor] = {}
    for key, value in vae_sd.items():
        new_key, to_conv = _vae_key(key, n_levels)
        if to_conv and value.ndim == 2:
            value = value.reshape(*value.shape, 1, 1)
        out[prefix + new_key] = value
    return out


def clip_to_ldm(te_sd: Mapping[str, torch.Tensor], prefix: str = SD1_CLIP_PREFIX) -> dict[str, torch.Tensor]:
    """HF ``CLIPTextModel`` keys -> ``<prefix>text_model.*`` (transformers >= 5.6 dropped ``text_model.``)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in te_sd.items():
        if key.endswith("position_ids"):
            continue
        inner = key if key.startswith("text_model.") else "text_model." + key
        out[prefix + inner] = value
    return out


def open_clip_to_ldm(te_sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """HF CLIP text model keys -> open_clip layout (fused ``in_proj``, ``resblocks``, transposed projection)."""
    sd = {k.removeprefix("text_model."): v for k, v in te_sd.items() if not k.endswith("position_ids")}
    out: dict[str, torch.Tensor] = {}
    fixed = {
        "embeddings.token_embedding.weight": "token_embedding.weight",
        "embeddings.position_embedding.weight": "positional_embedding",
        "final_layer_norm.weight": "ln_final.weight",
        "final_layer_norm.bias": "ln_final.bias",
    }
    layer_renames = {
        "self_attn.out_proj": "attn.out_proj",
        "layer_norm1": "ln_1",
        "layer_norm2": "ln_2",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
    }
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        if key in fixed:
            out[prefix + fixed[key]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif key.startswith("encoder.layers."):
            _, _, idx, rest = key.split(".", 3)
            base = f"{prefix}transformer.resblocks.{idx}."
            if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                _, proj, kind = rest.split(".")
                fused.setdefault(f"{base}attn.in_proj_{kind}", {})[proj] = value
                continue
            for src, dst in layer_renames.items():
                if rest.startswith(src + "."):
                    out[base + dst + rest[len(src) :]] = value
                    break
            else:
                raise KeyError(f"no open_clip name for CLIP key {key!r}")
        else:
            raise KeyError(f"no open_clip name for CLIP key {key!r}")
    for name, parts in fused.items():
        out[name] = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]], dim=0)
    return out
