"""Z-Image single files: key names and architectures, read from tensor names and shapes.

The files users have (ComfyUI's split layout, e.g. Comfy-Org's ``z_image_turbo_bf16.safetensors``) keep the original
Tongyi-MAI key names: fused ``attention.qkv``, ``attention.out``, ``attention.q_norm``/``k_norm``, ``x_embedder``,
``final_layer``, with or without the ``model.diffusion_model.`` prefix. diffusers' ``ZImageTransformer2DModel`` splits
qkv into ``to_q/to_k/to_v`` and renames the rest; ``original_to_diffusers`` / ``diffusers_to_original`` map between the
two (the tiny test files are written with the latter, so both directions are exercised).

The text encoder file (``qwen_3_4b.safetensors``) is a Hugging Face Qwen3 causal LM without its head: ``model.*`` keys
(``model.embed_tokens``, ``model.layers.N.self_attn.q_norm`` ...). The VAE file (``ae.safetensors``) is the FLUX VAE
in the original BFL/LDM layout (16 latent channels, no quant convs); ``config_infer.infer_vae_config`` reads it.

Values the shapes cannot tell are fixed rules: RoPE axes split the head dim as ``[d/4, 3d/8, 3d/8]`` (Z-Image's
``[32, 48, 48]`` for 128); ``axes_lens``, ``rope_theta``, ``t_scale`` and the Qwen3 ``rope_theta``/``rms_norm_eps``
come from the shipped config (``app/configs/zimage``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from app.configs import load_family_config

ZIMAGE_PREFIX = "model.diffusion_model."
#: a key that only Z-Image / Lumina-style NextDiT transformers have (with the fused qkv of the original layout)
ZIMAGE_MARKERS = ("layers.0.adaLN_modulation.0.weight", "cap_embedder.1.weight", "x_embedder.weight")
QWEN3_PREFIX = "model."
_RENAMES = (  # original -> diffusers, applied in this order
    ("final_layer.", "all_final_layer.2-1."),
    ("x_embedder.", "all_x_embedder.2-1."),
    (".attention.out.", ".attention.to_out.0."),
    (".attention.k_norm.", ".attention.norm_k."),
    (".attention.q_norm.", ".attention.norm_q."),
)
_LAYER = re.compile(r"^(layers|noise_refiner|context_refiner)\.(\d+)\.")


def strip_prefix(sd: Mapping[str, Any]) -> dict[str, Any]:
    """*sd* without the ``model.diffusion_model.`` prefix (files come with and without it)."""
    if any(k.startswith(ZIMAGE_PREFIX) for k in sd):
        return {k[len(ZIMAGE_PREFIX) :]: v for k, v in sd.items() if k.startswith(ZIMAGE_PREFIX)}
    return dict(sd)


def is_zimage_transformer(keys: Mapping[str, Any] | list[str]) -> bool:
    """True when the (prefix-stripped or not) key set is a Z-Image transformer in the original layout."""
    stripped = {k.removeprefix(ZIMAGE_PREFIX) for k in keys}
    return all(m in stripped for m in ZIMAGE_MARKERS) and "layers.0.attention.qkv.weight" in stripped


def original_to_diffusers(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Original (ComfyUI/Tongyi) Z-Image keys -> ``ZImageTransformer2DModel`` keys; qkv is split into thirds.

    ``norm_final.weight`` (written by some converters, unused by the model) is dropped.
    """
    out: dict[str, Any] = {}
    for key, value in strip_prefix(sd).items():
        if key == "norm_final.weight":
            continue
        new = key
        for old, repl in _RENAMES:
            new = new.replace(old, repl)
        if new.endswith(".attention.qkv.weight"):
            base = new.removesuffix("qkv.weight")
            q, k, v = value.chunk(3, dim=0)
            out[base + "to_q.weight"], out[base + "to_k.weight"], out[base + "to_v.weight"] = q, k, v
            continue
        out[new] = value
    return out


def diffusers_to_original(sd: Mapping[str, Any]) -> dict[str, Any]:
    """``ZImageTransformer2DModel`` keys -> the original single-file layout (fused qkv), without prefix."""
    import torch

    out: dict[str, Any] = {}
    for key, value in sd.items():
        if key.endswith((".attention.to_k.weight", ".attention.to_v.weight")):
            continue
        new = key
        for old, repl in _RENAMES:
            new = new.replace(repl, old)
        if new.endswith(".attention.to_q.weight"):
            base = key.removesuffix("to_q.weight")
            fused = torch.cat([sd[base + "to_q.weight"], sd[base + "to_k.weight"], sd[base + "to_v.weight"]], dim=0)
            out[new.removesuffix("to_q.weight") + "qkv.weight"] = fused
            continue
        out[new] = value
    return out


def _count(keys: list[str], head: str) -> int:
    ids = {int(m.group(2)) for k in keys if (m := _LAYER.match(k)) and m.group(1) == head}
    return max(ids) + 1 if ids else 0


def _shape(value: Any) -> tuple[int, ...]:
    shape = getattr(value, "shape", value)
    return tuple(int(x) for x in shape)


def rope_axes(head_dim: int) -> list[int]:
    """Z-Image's RoPE split of one head: ``[d/4, 3d/8, 3d/8]`` (``[32, 48, 48]`` for 128); must sum to *head_dim*."""
    first = head_dim // 4
    rest = (head_dim - first) // 2
    if first + 2 * rest != head_dim or first % 2 or rest % 2:
        raise ValueError(f"unsupported Z-Image head size {head_dim} (expected a multiple of 16)")
    return [first, rest, rest]


def infer_transformer_config(sd: Mapping[str, Any]) -> dict[str, Any]:
    """``ZImageTransformer2DModel`` config for an original-layout state dict or ``{key: shape}`` (prefix optional)."""
    s = strip_prefix(sd)
    keys = list(s)
    cfg = load_family_config("zimage", "transformer")
    x_w = _shape(s["x_embedder.weight"])
    dim = x_w[0]
    head_dim = _shape(s["layers.0.attention.q_norm.weight"])[0]
    qkv_rows = _shape(s["layers.0.attention.qkv.weight"])[0]
    n_heads = dim // head_dim
    patch, f_patch = cfg["all_patch_size"][0], cfg["all_f_patch_size"][0]
    cfg.update(
        dim=dim,
        in_channels=x_w[1] // (patch * patch * f_patch),
        n_layers=_count(keys, "layers"),
        n_refiner_layers=_count(keys, "noise_refiner"),
        n_heads=n_heads,
        n_kv_heads=(qkv_rows // head_dim - n_heads) // 2,
        cap_feat_dim=_shape(s["cap_embedder.0.weight"])[0],
        axes_dims=rope_axes(head_dim),
    )
    return cfg


def qwen3_state_dict(sd: Mapping[str, Any]) -> dict[str, Any]:
    """The ``Qwen3Model`` tensors of a text-encoder file (``model.*`` keys; ``lm_head`` and others dropped)."""
    return {k[len(QWEN3_PREFIX) :]: v for k, v in sd.items() if k.startswith(QWEN3_PREFIX)}


def is_qwen3(keys: Mapping[str, Any] | list[str]) -> bool:
    """A Qwen3 decoder: ``model.layers.0`` with per-head q/k RMSNorms (Qwen2 has none, Llama neither)."""
    return "model.layers.0.self_attn.q_norm.weight" in keys and "model.embed_tokens.weight" in keys


def infer_qwen3_config(sd: Mapping[str, Any]) -> dict[str, Any]:
    """``Qwen3Config`` kwargs for a text-encoder state dict or ``{key: shape}`` (``model.*`` keys)."""
    cfg = load_family_config("zimage", "text_encoder")
    vocab, hidden = _shape(sd["model.embed_tokens.weight"])
    head_dim = _shape(sd["model.layers.0.self_attn.q_norm.weight"])[0]
    layers = len({m.group(1) for k in sd if (m := re.match(r"^model\.layers\.(\d+)\.", k))})
    cfg.update(
        vocab_size=vocab,
        hidden_size=hidden,
        head_dim=head_dim,
        num_hidden_layers=layers,
        max_window_layers=layers,
        intermediate_size=_shape(sd["model.layers.0.mlp.gate_proj.weight"])[0],
        num_attention_heads=_shape(sd["model.layers.0.self_attn.q_proj.weight"])[0] // head_dim,
        num_key_value_heads=_shape(sd["model.layers.0.self_attn.k_proj.weight"])[0] // head_dim,
    )
    return cfg
