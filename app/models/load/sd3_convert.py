"""SD3 / SD3.5 single files: key names and architecture (MMDiT and MMDiT-X), read from tensor names and shapes.

The files users have (Stability's ``sd3.5_large.safetensors`` / ``sd3.5_medium.safetensors``, ComfyUI's and civitai's
re-saves; with ``model.diffusion_model.`` in a checkpoint, without it in ``models/diffusion_models``) use Stability's
original names: ``joint_blocks.N.x_block.attn.qkv`` (fused q/k/v of the image stream), ``context_block`` (the text
stream), ``adaLN_modulation.1``, ``mlp.fc1`` / ``fc2``, ``attn.ln_q`` / ``ln_k`` (SD3.5's RMS qk norm),
``x_block.attn2`` (MMDiT-X: SD3.5 medium's second self-attention in its first 13 blocks), ``x_embedder.proj`` (the
2x2 patch conv), ``pos_embed`` (a fixed grid, cropped to the image), ``t_embedder`` / ``y_embedder`` (timestep and
pooled text), ``context_embedder``, ``final_layer``. diffusers' ``SD3Transformer2DModel`` splits the fused projections
and renames the rest.

``module_map`` lists per module the original name and its diffusers name(s); fused ``qkv`` splits by rows into
``to_q``, ``to_k``, ``to_v`` (``add_q_proj``... for the text stream). The last block's text stream is "pre-only": it
has no output projection and no MLP, and its AdaLN projection (like ``final_layer``'s) stores (shift, scale) where
diffusers stores (scale, shift). The same table serves both directions of the state-dict conversion (the tiny test
files are written with ``diffusers_to_original``) and the LoRA key index.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

SD3_PREFIX = "model.diffusion_model."
#: keys only an SD3 MMDiT has (prefix-stripped)
SD3_MARKERS = ("joint_blocks.0.x_block.attn.qkv.weight", "joint_blocks.0.context_block.attn.qkv.weight",
               "x_embedder.proj.weight", "context_embedder.weight")
_GLOBAL = (
    ("x_embedder.proj", ("pos_embed.proj",)),
    ("t_embedder.mlp.0", ("time_text_embed.timestep_embedder.linear_1",)),
    ("t_embedder.mlp.2", ("time_text_embed.timestep_embedder.linear_2",)),
    ("y_embedder.mlp.0", ("time_text_embed.text_embedder.linear_1",)),
    ("y_embedder.mlp.2", ("time_text_embed.text_embedder.linear_2",)),
    ("context_embedder", ("context_embedder",)),
    ("final_layer.linear", ("proj_out",)),
    ("final_layer.adaLN_modulation.1", ("norm_out.linear",)),
)
_X = (
    ("x_block.adaLN_modulation.1", ("norm1.linear",)),
    ("x_block.attn.qkv", ("attn.to_q", "attn.to_k", "attn.to_v")),
    ("x_block.attn.ln_q", ("attn.norm_q",)),
    ("x_block.attn.ln_k", ("attn.norm_k",)),
    ("x_block.attn.proj", ("attn.to_out.0",)),
    ("x_block.mlp.fc1", ("ff.net.0.proj",)),
    ("x_block.mlp.fc2", ("ff.net.2",)),
)
_X2 = (
    ("x_block.attn2.qkv", ("attn2.to_q", "attn2.to_k", "attn2.to_v")),
    ("x_block.attn2.ln_q", ("attn2.norm_q",)),
    ("x_block.attn2.ln_k", ("attn2.norm_k",)),
    ("x_block.attn2.proj", ("attn2.to_out.0",)),
)
_CONTEXT = (
    ("context_block.adaLN_modulation.1", ("norm1_context.linear",)),
    ("context_block.attn.qkv", ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")),
    ("context_block.attn.ln_q", ("attn.norm_added_q",)),
    ("context_block.attn.ln_k", ("attn.norm_added_k",)),
)
_CONTEXT_OUT = (
    ("context_block.attn.proj", ("attn.to_add_out",)),
    ("context_block.mlp.fc1", ("ff_context.net.0.proj",)),
    ("context_block.mlp.fc2", ("ff_context.net.2",)),
)
_BLOCK = re.compile(r"^joint_blocks\.(\d+)\.")
_ATTN2 = re.compile(r"^joint_blocks\.(\d+)\.x_block\.attn2\.")


def strip_prefix(sd: Mapping[str, Any]) -> dict[str, Any]:
    """*sd* without ``model.diffusion_model.``; only the diffusion model's keys when it had that prefix."""
    if any(k.startswith(SD3_PREFIX) for k in sd):
        return {k[len(SD3_PREFIX):]: v for k, v in sd.items() if k.startswith(SD3_PREFIX)}
    return dict(sd)


def is_sd3_transformer(keys: Mapping[str, Any] | list[str]) -> bool:
    """True when the (prefixed or not) key set is an SD3/SD3.5 MMDiT in Stability's layout."""
    stripped = {k.removeprefix(SD3_PREFIX) for k in keys}
    return all(m in stripped for m in SD3_MARKERS)


def _num_layers(keys: list[str]) -> int:
    ids = {int(m.group(1)) for k in keys if (m := _BLOCK.match(k))}
    return max(ids) + 1 if ids else 0


def dual_attention_layers(keys: list[str]) -> tuple[int, ...]:
    """The blocks with MMDiT-X's second image self-attention (``x_block.attn2``): SD3.5 medium's first 13."""
    return tuple(sorted({int(m.group(1)) for k in keys if (m := _ATTN2.match(k))}))


def module_map(num_layers: int, dual: tuple[int, ...] = ()) -> list[tuple[str, tuple[str, ...]]]:
    """(original module name, diffusers module names) for a transformer with *num_layers* blocks."""
    out = list(_GLOBAL)
    for i in range(num_layers):
        table = _X + (_X2 if i in dual else ()) + _CONTEXT + (() if i == num_layers - 1 else _CONTEXT_OUT)
        out += [(f"joint_blocks.{i}.{o}", tuple(f"transformer_blocks.{i}.{d}" for d in ds)) for o, ds in table]
    return out


def _swapped(orig: str, num_layers: int) -> bool:
    """AdaLN projections stored (shift, scale) in the original and (scale, shift) in diffusers."""
    return orig == "final_layer.adaLN_modulation.1" or orig == f"joint_blocks.{num_layers - 1}.context_block.adaLN_modulation.1"


def _swap_halves(t: Any) -> Any:
    import torch

    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def _suffixes(orig: str) -> tuple[str, ...]:
    return (".weight",) if orig.endswith((".ln_q", ".ln_k")) else (".weight", ".bias")


def original_to_diffusers(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Stability's keys (prefix optional) -> ``SD3Transformer2DModel`` keys; fused qkv split by rows."""
    s = strip_prefix(sd)
    keys = list(s)
    n = _num_layers(keys)
    out: dict[str, Any] = {"pos_embed.pos_embed": s["pos_embed"]}
    for orig, diffs in module_map(n, dual_attention_layers(keys)):
        for suffix in _suffixes(orig):
            value = s.get(orig + suffix)
            if value is None:
                continue
            if len(diffs) == 1:
                out[diffs[0] + suffix] = _swap_halves(value) if _swapped(orig, n) else value
                continue
            for name, part in zip(diffs, value.chunk(3, dim=0), strict=True):
                out[name + suffix] = part
    return out


def diffusers_to_original(sd: Mapping[str, Any]) -> dict[str, Any]:
    """``SD3Transformer2DModel`` keys -> Stability's single-file layout (fused qkv), without prefix."""
    import torch

    keys = list(sd)
    n = len({k.split(".")[1] for k in keys if k.startswith("transformer_blocks.")})
    dual = tuple(sorted({int(k.split(".")[1]) for k in keys if k.startswith("transformer_blocks.") and ".attn2." in k}))
    out: dict[str, Any] = {"pos_embed": sd["pos_embed.pos_embed"]}
    for orig, diffs in module_map(n, dual):
        for suffix in _suffixes(orig):
            parts = [sd.get(d + suffix) for d in diffs]
            if any(p is None for p in parts):
                continue
            value = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
            out[orig + suffix] = _swap_halves(value) if _swapped(orig, n) else value
    return out


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(x) for x in getattr(value, "shape", value))


def infer_transformer_config(sd: Mapping[str, Any]) -> dict[str, Any]:
    """``SD3Transformer2DModel`` config for a Stability-layout state dict or ``{key: shape}`` (prefix optional).

    Head size: the qk-norm width when there is one (SD3.5), else 64 (every SD3 model: heads = blocks); the position
    grid side is the square root of ``pos_embed``'s rows (192 for large, 384 for medium)."""
    s = strip_prefix(sd)
    keys = list(s)
    hidden, in_ch, patch, _ = _shape(s["x_embedder.proj.weight"])
    qk = s.get("joint_blocks.0.x_block.attn.ln_q.weight")
    head_dim = _shape(qk)[0] if qk is not None else 64
    if hidden % head_dim:
        raise ValueError(f"width {hidden} is not a multiple of the head size {head_dim}")
    grid = math.isqrt(_shape(s["pos_embed"])[1])
    out_rows = _shape(s["final_layer.linear.weight"])[0]
    return {
        "sample_size": 128,
        "patch_size": patch,
        "in_channels": in_ch,
        "num_layers": _num_layers(keys),
        "attention_head_dim": head_dim,
        "num_attention_heads": hidden // head_dim,
        "joint_attention_dim": _shape(s["context_embedder.weight"])[1],
        "caption_projection_dim": _shape(s["context_embedder.weight"])[0],
        "pooled_projection_dim": _shape(s["y_embedder.mlp.0.weight"])[1],
        "out_channels": out_rows // (patch * patch),
        "pos_embed_max_size": grid,
        "dual_attention_layers": dual_attention_layers(keys),
        "qk_norm": "rms_norm" if qk is not None else None,
    }


def variant(keys: Mapping[str, Any] | list[str]) -> str:
    """``sd3.5-medium`` (MMDiT-X: ``attn2`` blocks), ``sd3.5-large`` (qk norm, no ``attn2``) or ``sd3-medium``."""
    stripped = [k.removeprefix(SD3_PREFIX) for k in keys]
    if dual_attention_layers(stripped):
        return "sd3.5-medium"
    if "joint_blocks.0.x_block.attn.ln_q.weight" in stripped:
        return "sd3.5-large"
    return "sd3-medium"


CLIP_Q = "text_model.encoder.layers.0.self_attn.q_proj.weight"
#: where ComfyUI's checkpoints keep each part (the VAE is under ``first_stage_model.`` or ``vae.``)
AIO_PREFIXES = {"text_encoder": "text_encoders.clip_l.transformer.", "text_encoder_2": "text_encoders.clip_g.transformer.",
                "text_encoder_3": "text_encoders.t5xxl.transformer."}
_T5_Q = "encoder.block.0.layer.0.SelfAttention.q.weight"


def inside_parts(keys: Mapping[str, Any] | list[str]) -> dict[str, bool]:
    """Which parts an SD3 checkpoint holds besides the MMDiT (``text_encoder`` = CLIP-L, ``text_encoder_2`` = CLIP-G,
    ``text_encoder_3`` = T5, ``vae``), by ComfyUI's names."""
    has = set(keys)
    return {
        "text_encoder": AIO_PREFIXES["text_encoder"] + CLIP_Q in has,
        "text_encoder_2": AIO_PREFIXES["text_encoder_2"] + CLIP_Q in has,
        "text_encoder_3": AIO_PREFIXES["text_encoder_3"] + _T5_Q in has,
        "vae": "first_stage_model.decoder.conv_in.weight" in has or "vae.decoder.conv_in.weight" in has,
    }
