"""What a model file is, from its tensor names and shapes only (never its file name): family and role.

``detect_file_role(path)`` reads only the header of a ``.safetensors`` or ``.gguf`` file (milliseconds for a 12 GB
file) and returns a ``FileRole``:

====================  ===================  ==========================================================================
role                  family               rule
====================  ===================  ==========================================================================
``checkpoint``        sd1 / sd2 / sdxl     ``model.diffusion_model.input_blocks.0.0.weight`` + a known text encoder
                                           (``config_infer.detect_family``; ``variant`` gives sd2v, -inpaint)
``diffusion_model``   zimage               NextDiT with Z-Image's fused ``layers.0.attention.qkv`` (original layout,
                                           with or without ``model.diffusion_model.``), or diffusers' layout
                                           (``all_x_embedder.2-1.weight``)
``diffusion_model``   flux                 FLUX.1's ``double_blocks.0.img_attn.qkv.weight`` (with or without
                                           ``model.diffusion_model.``); ``variant`` flux (dev: ``guidance_in``),
                                           flux-schnell, or flux-fill (``img_in`` takes 384 channels: Fill/inpaint)
``checkpoint``        flux                 the same plus CLIP-L, T5 and VAE tensors in one file (civitai's all-in-one)
``diffusion_model``   sd3                  SD3's MMDiT (``joint_blocks.0.x_block.attn.qkv``, prefix optional); ``variant``
                                           sd3.5-medium (``attn2``: MMDiT-X), sd3.5-large (qk norm) or sd3-medium
``checkpoint``        sd3                  the same with any of CLIP-L/CLIP-G/T5/VAE inside (``inside`` lists them)
``text_encoder``      qwen3_4b / qwen3     a Qwen3 decoder (``model.layers.0.self_attn.q_norm``); qwen3_4b when its
                                           width is 2560, else qwen3 (``hidden_size`` in ``detail``)
``text_encoder``      clip_l / clip_g /    CLIP text model (clip_g when 1024 wide or more) / T5 encoder keys; the
                      t5xxl                width in ``detail["hidden_size"]``
``vae``               flux_vae / sd_vae    an autoencoder (LDM or diffusers keys, optional ``first_stage_model.`` /
                                           ``vae.`` prefix): 16 latent channels = flux_vae (FLUX, Z-Image; SD3's VAE
                                           has the same shapes), 4 = sd_vae
``lora``              zimage / flux / sd / LoRA / LyCORIS keys; the family from the module names they patch
                      other
``unknown``           None                 ``reason`` says why
====================  ===================  ==========================================================================

GGUF files use the same names (city96's conversions keep the original keys: a FLUX.1 GGUF is found by its
``double_blocks``); llama.cpp text encoders are told by their ``general.architecture`` (Qwen3) or their names (a T5
encoder's ``enc.blk.0.attn_q``). Formats other than safetensors/GGUF are not opened here (``unknown``): reading a
pickle means loading it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.models.load import sd3_convert as sc
from app.models.load import zimage_convert as zc
from app.models.load.config_infer import VAE_PREFIXES, ModelFamily, detect_family
from app.models.load.gguf_header import is_gguf, quant_label, read_gguf_header

ROLES = ("checkpoint", "diffusion_model", "text_encoder", "vae", "lora", "unknown")
_LORA_MARKERS = (".lora_A.", ".lora_B.", ".lora_down.", ".lora_up.", ".hada_w1_a", ".lokr_w1", "lora_A.weight")


@dataclass(frozen=True)
class FileRole:
    """A model file's family and role (see the module table); ``detail`` carries what the rule measured."""

    family: str | None
    role: str
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return self.role != "unknown"


def _shape(v: Any) -> tuple[int, ...]:
    return tuple(int(x) for x in getattr(v, "shape", v))


def _vae_role(shapes: Mapping[str, Any]) -> FileRole | None:
    for prefix in (*VAE_PREFIXES, ""):
        key = prefix + "decoder.conv_in.weight"
        if key in shapes and prefix + "encoder.conv_in.weight" in shapes:
            latent = _shape(shapes[key])[1]
            layout = "diffusers" if any(k.startswith(prefix + "encoder.down_blocks.") for k in shapes) else "ldm"
            detail = {"latent_channels": latent, "layout": layout}
            if latent == 16:
                return FileRole("flux_vae", "vae", detail=detail)
            if latent == 4:
                return FileRole("sd_vae", "vae", detail=detail)
            return FileRole(None, "unknown", f"an autoencoder with {latent} latent channels (known: 4, 16)", detail)
    return None


def _lora_role(keys: list[str]) -> FileRole | None:
    if not any(m in k for k in keys for m in _LORA_MARKERS):
        return None
    joined = "\n".join(keys[:4000])
    if "joint_blocks" in joined:
        family = "sd3"
    elif any(s in joined for s in ("double_blocks", "single_blocks", "transformer_blocks.0.attn.add_q_proj",
                                 "single_transformer_blocks.")):
        family = "flux"
    elif any(s in joined for s in ("diffusion_model.layers.", "lora_unet_layers_", "transformer.layers.",
                                 "diffusion_model.noise_refiner.", "lora_unet_noise_refiner_")):
        family = "zimage"
    elif any(s in joined for s in ("lora_unet_", "lora_te", "unet.", "input_blocks", "down_blocks")):
        family = "sd"
    else:
        family = "other"
    return FileRole(family, "lora", detail={"tensors": len(keys)})


def detect_role(shapes: Mapping[str, Any], source: str | Path | None = None) -> FileRole:
    """The ``FileRole`` of a ``{tensor name: shape or tensor}`` mapping (the rules of the module doc)."""
    keys = list(shapes)
    where = str(source) if source else "<state dict>"
    if not keys:
        return FileRole(None, "unknown", "the file holds no tensors")
    if "model.diffusion_model.input_blocks.0.0.weight" in shapes:
        try:
            variant = detect_family(shapes, source_path=source)
        except ValueError as exc:
            return FileRole(None, "unknown", str(exc))
        base = "sd2" if variant.startswith("sd2") else variant.removesuffix("-inpaint")
        return FileRole(base, "checkpoint", detail={"variant": variant})
    if zc.is_zimage_transformer(keys):
        cfg = zc.infer_transformer_config(shapes)
        detail = {"layout": "original", "dim": cfg["dim"], "cap_feat_dim": cfg["cap_feat_dim"]}
        return FileRole("zimage", "diffusion_model", detail=detail)
    if "all_x_embedder.2-1.weight" in shapes and "cap_embedder.1.weight" in shapes:
        detail = {"layout": "diffusers", "dim": _shape(shapes["all_x_embedder.2-1.weight"])[0],
                  "cap_feat_dim": _shape(shapes["cap_embedder.0.weight"])[0]}
        return FileRole("zimage", "diffusion_model", detail=detail)
    if sc.is_sd3_transformer(keys):
        return _sd3_role(shapes, keys)
    stripped = {k.removeprefix(zc.ZIMAGE_PREFIX) for k in keys}
    if "double_blocks.0.img_attn.qkv.weight" in stripped:
        return _flux_role(shapes, keys)
    if "input_blocks.0.0.weight" in stripped:
        return FileRole(None, "unknown", f"a Stable Diffusion UNet without text encoder and VAE: {where} "
                        "(put full checkpoints in models/Stable-diffusion)")
    if zc.is_qwen3(shapes):
        hidden = _shape(shapes["model.embed_tokens.weight"])[1]
        vocab = _shape(shapes["model.embed_tokens.weight"])[0]
        family = "qwen3_4b" if hidden == 2560 else "qwen3"
        return FileRole(family, "text_encoder", detail={"hidden_size": hidden, "vocab_size": vocab})
    token = next((k for k in keys if k.endswith("text_model.embeddings.token_embedding.weight")), None)
    if token is not None:
        hidden = _shape(shapes[token])[1]
        return FileRole("clip_g" if hidden >= 1024 else "clip_l", "text_encoder", detail={"hidden_size": hidden})
    if any(k.endswith("encoder.block.0.layer.0.SelfAttention.q.weight") for k in keys):
        shared = next((k for k in keys if k.endswith(("shared.weight", "encoder.embed_tokens.weight"))), None)
        detail = {"hidden_size": _shape(shapes[shared])[1]} if shared else {}
        return FileRole("t5xxl", "text_encoder", detail=detail)
    lora = _lora_role(keys)
    if lora is not None:
        return lora
    vae = _vae_role(shapes)
    if vae is not None:
        return vae
    shown = ", ".join(sorted({".".join(k.split(".")[:2]) for k in keys})[:6])
    return FileRole(None, "unknown", f"no known model layout in {where} (keys look like {shown})")


def _flux_role(shapes: Mapping[str, Any], keys: list[str]) -> FileRole:
    """A FLUX.1 transformer file, or an all-in-one checkpoint when CLIP-L, T5 and VAE tensors are in it too."""
    stripped = {k.removeprefix(zc.ZIMAGE_PREFIX): v for k, v in shapes.items() if not k.startswith(_AIO_PARTS)}
    variant = "flux" if "guidance_in.in_layer.weight" in stripped else "flux-schnell"
    detail: dict[str, Any] = {"variant": variant}
    if "img_in.weight" in stripped:
        detail["in_channels"] = _shape(stripped["img_in.weight"])[1]
        if detail["in_channels"] == FLUX_FILL_IN_CHANNELS:
            detail["variant"] = "flux-fill"
    if "vector_in.in_layer.weight" in stripped and "txt_in.weight" in stripped:  # the CLIP-L and T5 widths it takes
        detail["pooled_dim"] = _shape(stripped["vector_in.in_layer.weight"])[1]
        detail["context_dim"] = _shape(stripped["txt_in.weight"])[1]
    has_te = any(k.endswith("text_model.encoder.layers.0.self_attn.q_proj.weight") for k in keys) and any(
        k.endswith("encoder.block.0.layer.0.SelfAttention.q.weight") for k in keys)
    has_vae = any(k.endswith("decoder.conv_in.weight") for k in keys)
    if has_te and has_vae:
        return FileRole("flux", "checkpoint", detail={**detail, "layout": "all-in-one"})
    return FileRole("flux", "diffusion_model", detail=detail)


#: FLUX.1 Fill's ``img_in`` input width: 64 packed latents + 64 packed masked-image latents + 256 packed mask values
FLUX_FILL_IN_CHANNELS = 384


def _sd3_role(shapes: Mapping[str, Any], keys: list[str]) -> FileRole:
    """An SD3 MMDiT file, or a checkpoint when text encoders or the VAE are in it too (``inside`` names them)."""
    stripped = sc.strip_prefix({k: v for k, v in shapes.items() if not k.startswith(_AIO_PARTS)})
    detail: dict[str, Any] = {"variant": sc.variant(keys),
                              "pooled_dim": _shape(stripped["y_embedder.mlp.0.weight"])[1],
                              "context_dim": _shape(stripped["context_embedder.weight"])[1]}
    inside = tuple(k for k, v in sc.inside_parts(keys).items() if v)
    if inside:
        return FileRole("sd3", "checkpoint", detail={**detail, "inside": inside,
                                                     "layout": "all-in-one" if len(inside) == 4 else "checkpoint"})
    return FileRole("sd3", "diffusion_model", detail=detail)


_AIO_PARTS = ("text_encoders.", "vae.", "first_stage_model.", "cond_stage_model.", "conditioner.")


def _gguf_role(path: Path) -> FileRole:
    meta, tensors = read_gguf_header(path)
    arch = str(meta.get("general.architecture", ""))
    if arch == "qwen3" and "token_embd.weight" in tensors:
        vocab, hidden = tensors["token_embd.weight"][0]
        family = "qwen3_4b" if hidden == 2560 else "qwen3"
        return FileRole(family, "text_encoder", detail={"hidden_size": hidden, "vocab_size": vocab, "format": "gguf",
                                                         "gguf_quant": quant_label(tensors)})
    if "token_embd.weight" in tensors and "enc.blk.0.attn_q.weight" in tensors:  # llama.cpp T5 (city96's encoders)
        vocab, width = tensors["token_embd.weight"][0]
        return FileRole("t5xxl", "text_encoder", detail={"d_model": width, "vocab_size": vocab, "format": "gguf",
                                                          "gguf_quant": quant_label(tensors)})
    role = detect_role({k: shape for k, (shape, _) in tensors.items()}, path)
    types = sorted({t for _, t in tensors.values()})
    return FileRole(role.family, role.role, role.reason, {**role.detail, "format": "gguf", "gguf_types": types,
                                                           "gguf_quant": quant_label(tensors)})


def detect_file_role(path: str | Path) -> FileRole:
    """The ``FileRole`` of a ``.safetensors`` or ``.gguf`` file from its header; unreadable files are ``unknown``."""
    from app.models.catalog.scan import read_safetensors_header

    path = Path(path)
    try:
        if is_gguf(path):
            return _gguf_role(path)
        header = read_safetensors_header(path)
    except (OSError, ValueError) as exc:
        return FileRole(None, "unknown", f"unreadable header: {exc}")
    shapes = {k: tuple(v.get("shape", ())) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
    dtypes = sorted({str(v.get("dtype")) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)})
    role = detect_role(shapes, path)
    return FileRole(role.family, role.role, role.reason, {**role.detail, "dtypes": dtypes})


def folder_family(path: Path, index: dict[str, Any] | None = None, sched: dict[str, Any] | None = None) -> ModelFamily:
    """Family of a diffusers folder (its parsed ``model_index.json`` / scheduler config may be passed in)."""
    index = index if index is not None else json.loads((path / "model_index.json").read_text("utf-8"))
    if str(index.get("_class_name", "")).startswith("ZImage"):
        return "zimage"
    sched = sched if sched is not None else json.loads((path / "scheduler" / "scheduler_config.json").read_text("utf-8"))
    unet = json.loads((path / "unet" / "config.json").read_text("utf-8"))
    inpaint = unet.get("in_channels") == 9
    if "text_encoder_2" in index:
        return "sdxl-inpaint" if inpaint else "sdxl"
    te = json.loads((path / "text_encoder" / "config.json").read_text("utf-8"))
    if te.get("hidden_act") == "gelu":
        return "sd2v" if sched.get("prediction_type") == "v_prediction" else "sd2"
    return "sd1-inpaint" if inpaint else "sd1"
