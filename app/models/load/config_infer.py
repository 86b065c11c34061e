"""Model family detection and architecture inference from an LDM/SGM single-file state dict.

The architecture comes from the file itself: we start from the shipped full-size family config
(``app/configs/<family>``) and override every dimension readable from tensor shapes. A real
SD1.5/SD2/SDXL file gives back exactly the public config; a tiny test file gives its tiny one.
Values that shapes cannot tell are fixed rules:

- UNet attention heads: SD1 = 8 heads; SD2/SDXL head dim = min(64, smallest block channel // 2).
- CLIP attention heads: head dim 64 when the width is a multiple of 64 and >= 256, else 8.
- GroupNorm groups (UNet, VAE): gcd(32, smallest channel count).
- SD2 text encoder: all OpenCLIP resblocks but the last (A1111's "penultimate" layer).

Family rules (``detect_family``): SDXL = ``conditioner.embedders.1.model.*``; the SDXL refiner (``sdxl-refiner``) =
``conditioner.embedders.0.model.*`` alone (OpenCLIP bigG; its UNet takes 5 time ids, the last the aesthetic score); SD2 =
``cond_stage_model.model.*`` (OpenCLIP); SD1 = ``cond_stage_model.transformer.*``; ``-inpaint``
when ``input_blocks.0.0.weight`` has 9 input channels. SD2 v-prediction (``sd2v``) when a sidecar
``<checkpoint>.yaml`` says ``parameterization: "v"``, else when the file has a ``v_pred`` key. A
sidecar yaml without it means epsilon. With neither, ``detect_family`` says ``sd2`` and the loader
runs A1111's one-step UNet probe to decide (see ``loader._sd2_probe_is_v``). For every family the
loader also honours the ``v_pred`` (v-prediction) and ``ztsnr`` (zero terminal SNR) marker keys.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from app.configs import load_family_config

ModelFamily = Literal["sd1", "sd1-inpaint", "sd2", "sd2v", "sdxl", "sdxl-inpaint", "sdxl-refiner", "zimage", "flux",
                      "flux-schnell", "flux-fill", "sd3"]

UNET_PREFIX = "model.diffusion_model."
SD1_CLIP_PREFIX = "cond_stage_model.transformer."
SD2_CLIP_PREFIX = "cond_stage_model.model."
SDXL_CLIP1_PREFIX = "conditioner.embedders.0.transformer."
SDXL_CLIP2_PREFIX = "conditioner.embedders.1.model."
#: The SDXL refiner's only text encoder (OpenCLIP bigG, as the base's second one).
SDXL_REFINER_CLIP_PREFIX = "conditioner.embedders.0.model."
VAE_PREFIXES = ("first_stage_model.", "vae.")
V_PRED_KEY = "v_pred"
ZTSNR_KEY = "ztsnr"
_PARAM_V = re.compile(r"""^\s*parameterization\s*:\s*["']?v["']?\s*(#.*)?$""", re.MULTILINE)


def sidecar_yaml(path: str | Path) -> Path | None:
    """A1111's per-checkpoint config: ``foo.safetensors`` -> ``foo.yaml`` (if it exists)."""
    candidate = Path(path).with_suffix(".yaml")
    return candidate if candidate.is_file() else None


def yaml_says_v(path: Path) -> bool:
    return bool(_PARAM_V.search(path.read_text("utf-8", errors="replace")))


def _key_summary(keys: list[str]) -> str:
    prefixes = sorted({".".join(k.split(".")[:2]) for k in keys})
    shown = ", ".join(prefixes[:6])
    return shown + (f", ... ({len(keys)} keys)" if len(prefixes) > 6 else f" ({len(keys)} keys)")


def detect_family(
    keys_or_state_dict: Iterable[str] | Mapping[str, Any], source_path: str | Path | None = None
) -> ModelFamily:
    """The model family of a single-file checkpoint from its keys (and the first conv's shape when given)."""
    sd = keys_or_state_dict if isinstance(keys_or_state_dict, Mapping) else None
    keys = list(keys_or_state_dict)
    where = str(source_path) if source_path else "<state dict>"
    has = lambda prefix: any(k.startswith(prefix) for k in keys)  # noqa: E731
    first_conv = UNET_PREFIX + "input_blocks.0.0.weight"
    if first_conv not in keys:
        raise ValueError(f"not a Stable Diffusion checkpoint: {where} (keys look like {_key_summary(keys)})")
    inpaint = False
    if sd is not None:
        value = sd[first_conv]
        shape = getattr(value, "shape", value if isinstance(value, (tuple, list)) else None)
        in_channels = int(shape[1]) if shape is not None and len(shape) > 1 else 4
        if in_channels not in (4, 9):
            raise ValueError(
                f"unsupported checkpoint: {where} has a UNet with {in_channels} input channels "
                "(instruct-pix2pix / depth / upscaler models are not supported; 4 = txt2img, 9 = inpainting)"
            )
        inpaint = in_channels == 9
    if has(SDXL_CLIP2_PREFIX):
        if not has(SDXL_CLIP1_PREFIX):
            raise ValueError(f"an SDXL checkpoint without its first text encoder (CLIP-L) is not supported: {where}")
        return "sdxl-inpaint" if inpaint else "sdxl"
    if has(SDXL_REFINER_CLIP_PREFIX):  # the SDXL refiner: OpenCLIP bigG alone, aesthetic-score time ids
        if inpaint:
            raise ValueError(f"SDXL refiner inpainting checkpoints are not supported: {where}")
        return "sdxl-refiner"
    if has(SD2_CLIP_PREFIX):
        if inpaint:
            raise ValueError(f"SD2 inpainting checkpoints are not supported: {where}")
        yaml = sidecar_yaml(source_path) if source_path else None
        if yaml is not None:
            return "sd2v" if yaml_says_v(yaml) else "sd2"
        return "sd2v" if V_PRED_KEY in keys else "sd2"
    if has(SD1_CLIP_PREFIX):
        return "sd1-inpaint" if inpaint else "sd1"
    raise ValueError(
        f"not a Stable Diffusion checkpoint (no known text encoder): {where} (keys look like {_key_summary(keys)})"
    )


def _sub(sd: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def _block_ids(keys: Iterable[str], head: str) -> list[int]:
    return sorted({int(k.split(".")[1]) for k in keys if k.startswith(head + ".")})


def _groups(channels: Iterable[int]) -> int:
    return math.gcd(32, min(channels))


def infer_unet_config(sd: Mapping[str, Any], family: ModelFamily, pooled_dim: int | None = None) -> dict[str, Any]:
    """UNet2DConditionModel config for the ``model.diffusion_model.*`` tensors of *sd*."""
    u = _sub(sd, UNET_PREFIX)
    cfg = load_family_config(family, "unet")
    base = family.removesuffix("-inpaint")
    levels: list[dict[str, Any]] = [{"channels": [], "attn": False, "layers": 1}]
    for i in _block_ids(u, "input_blocks")[1:]:
        if f"input_blocks.{i}.0.op.weight" in u:
            levels.append({"channels": [], "attn": False, "layers": 1})
            continue
        level = levels[-1]
        level["channels"].append(int(u[f"input_blocks.{i}.0.out_layers.3.weight"].shape[0]))
        blocks = {k.split(".")[4] for k in u if k.startswith(f"input_blocks.{i}.1.transformer_blocks.")}
        if blocks:
            level["attn"] = True
            level["layers"] = len(blocks)
    per_level = {len(lv["channels"]) for lv in levels}
    if len(per_level) != 1 or 0 in per_level:
        raise ValueError(f"unsupported UNet layout: resnets per level {sorted(per_level)}")
    channels = [lv["channels"][-1] for lv in levels]
    cfg.update(
        in_channels=int(u["input_blocks.0.0.weight"].shape[1]),
        out_channels=int(u["out.2.weight"].shape[0]),
        block_out_channels=channels,
        layers_per_block=per_level.pop(),
        down_block_types=["CrossAttnDownBlock2D" if lv["attn"] else "DownBlock2D" for lv in levels],
        up_block_types=["CrossAttnUpBlock2D" if lv["attn"] else "UpBlock2D" for lv in reversed(levels)],
        norm_num_groups=_groups(channels),
    )
    if any(lv["layers"] > 1 for lv in levels):
        cfg["transformer_layers_per_block"] = [lv["layers"] for lv in levels]
    elif "transformer_layers_per_block" in cfg:
        cfg["transformer_layers_per_block"] = 1
    to_k = next((v for k, v in u.items() if k.endswith("attn2.to_k.weight")), None)
    if to_k is not None:
        cfg["cross_attention_dim"] = int(to_k.shape[1])
    proj_in = next((v for k, v in u.items() if k.endswith(".proj_in.weight")), None)
    if proj_in is not None:
        cfg["use_linear_projection"] = proj_in.ndim == 2
    if base != "sd1":
        head_dim = min(64, min(channels) // 2)
        cfg["attention_head_dim"] = [c // head_dim for c in channels]
    mid = len({k.split(".")[3] for k in u if k.startswith("middle_block.1.transformer_blocks.")})
    if mid > 1 and not levels[-1]["attn"]:
        # diffusers gives the middle block the last level's depth; when that level has no attention (the SDXL
        # refiner) its entry is free, so it carries the middle block's (4 everywhere in the refiner: a scalar)
        depths = [lv["layers"] if lv["attn"] else mid for lv in levels]
        cfg["transformer_layers_per_block"] = mid if set(depths) == {mid} else depths
    if "label_emb.0.0.weight" in u:
        in_dim = int(u["label_emb.0.0.weight"].shape[1])
        cfg["projection_class_embeddings_input_dim"] = in_dim
        if pooled_dim is not None:
            n_ids = 5 if family == "sdxl-refiner" else 6  # the refiner: (h, w, crop top, crop left, aesthetic score)
            cfg["addition_time_embed_dim"] = (in_dim - pooled_dim) // n_ids
    return cfg


def clip2_prefix(family: str) -> str:
    """Where the OpenCLIP bigG encoder of an SDXL-type *family* lives (the base's second encoder, the refiner's only)."""
    return SDXL_REFINER_CLIP_PREFIX if family == "sdxl-refiner" else SDXL_CLIP2_PREFIX


def vae_prefix(sd: Mapping[str, Any]) -> str:
    """The VAE key prefix in *sd*: ``first_stage_model.``, ``vae.`` or ``""`` (standalone VAE file)."""
    for prefix in VAE_PREFIXES:
        if prefix + "encoder.conv_in.weight" in sd:
            return prefix
    if "encoder.conv_in.weight" in sd:
        return ""
    raise ValueError("no VAE weights found (expected first_stage_model.encoder.conv_in.weight)")


def infer_vae_config(sd: Mapping[str, Any], family: ModelFamily) -> dict[str, Any]:
    """AutoencoderKL config for the LDM-keyed VAE tensors of *sd* (any of the known prefixes)."""
    v = _sub(sd, vae_prefix(sd))
    cfg = load_family_config(family, "vae")
    levels = sorted({int(k.split(".")[2]) for k in v if k.startswith("encoder.down.")})
    channels = [int(v[f"encoder.down.{i}.block.0.conv2.weight"].shape[0]) for i in levels]
    layers = len({k.split(".")[4] for k in v if k.startswith("encoder.down.0.block.")})
    cfg.update(
        in_channels=int(v["encoder.conv_in.weight"].shape[1]),
        out_channels=int(v["decoder.conv_out.weight"].shape[0]),
        latent_channels=int(v["decoder.conv_in.weight"].shape[1]),
        block_out_channels=channels,
        layers_per_block=layers,
        down_block_types=["DownEncoderBlock2D"] * len(levels),
        up_block_types=["UpDecoderBlock2D"] * len(levels),
        norm_num_groups=_groups(channels),
    )
    if "quant_conv.weight" not in v:
        cfg["use_quant_conv"] = False
    if "post_quant_conv.weight" not in v:
        cfg["use_post_quant_conv"] = False
    if not any(k.startswith("encoder.mid.attn_1.") for k in v):
        cfg["mid_block_add_attention"] = False
    return cfg


def _clip_heads(hidden: int) -> int:
    return hidden // 64 if hidden % 64 == 0 and hidden >= 256 else hidden // 8


def infer_clip_config(sd: Mapping[str, Any], family: ModelFamily, which: int = 1) -> dict[str, Any]:
    """CLIPTextConfig dict for text encoder *which* of *family* (HF CLIP-L or OpenCLIP layout)."""
    base = family.removesuffix("-inpaint")
    cfg = load_family_config(family, "text_encoder" if which == 1 else "text_encoder_2")
    open_clip = base in ("sd2", "sd2v") or which == 2
    if open_clip:
        t = _sub(sd, SD2_CLIP_PREFIX if base in ("sd2", "sd2v") else clip2_prefix(family))
        token, pos = t["token_embedding.weight"], t["positional_embedding"]
        n_layers = len(_block_ids((k.removeprefix("transformer.") for k in t), "resblocks"))
        fc1 = t["transformer.resblocks.0.mlp.c_fc.weight"]
        if base in ("sd2", "sd2v"):
            n_layers -= 1  # the penultimate layer's output is the conditioning
        if which == 2 and "text_projection" in t:
            cfg["projection_dim"] = int(t["text_projection"].shape[1])
    else:
        t = _sub(sd, SD1_CLIP_PREFIX if base == "sd1" else SDXL_CLIP1_PREFIX)
        t = {k.removeprefix("text_model."): v for k, v in t.items()}
        token, pos = t["embeddings.token_embedding.weight"], t["embeddings.position_embedding.weight"]
        n_layers = len(_block_ids((k.removeprefix("encoder.") for k in t), "layers"))
        fc1 = t["encoder.layers.0.mlp.fc1.weight"]
    hidden = int(token.shape[1])
    cfg.update(
        vocab_size=int(token.shape[0]),
        hidden_size=hidden,
        max_position_embeddings=int(pos.shape[0]),
        num_hidden_layers=n_layers,
        intermediate_size=int(fc1.shape[0]),
        num_attention_heads=_clip_heads(hidden),
    )
    if which == 1 and base not in ("sd2", "sd2v"):
        cfg["projection_dim"] = hidden  # unused by CLIPTextModel; mirrors the public configs
    return cfg
