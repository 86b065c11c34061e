"""FLUX.1 single files: key names and architecture, read from tensor names and shapes.

The files users have (BFL's ``flux1-dev.safetensors`` / ``flux1-schnell.safetensors``, Comfy-Org's and civitai's
re-saves, with or without the ``model.diffusion_model.`` prefix) use Black Forest Labs' original names:
``double_blocks.N.img_attn.qkv`` (fused q/k/v), ``img_mod.lin``, ``img_mlp.0``, ``single_blocks.N.linear1`` (q, k, v
and the MLP input fused), ``img_in``, ``txt_in``, ``time_in``, ``vector_in``, ``guidance_in`` (dev only),
``final_layer``. diffusers' ``FluxTransformer2DModel`` splits the fused projections and renames the rest.

``MODULE_MAP`` lists, per module, the original name and its diffusers name(s); fused modules split by rows in the
order given (``single_blocks.N.linear1`` = ``to_q``, ``to_k``, ``to_v``, ``proj_mlp``). The same table serves the
state-dict conversion in both directions (the tiny test files are written with ``diffusers_to_original``) and the LoRA
key index (a fused original name is a tuple target). RMSNorm scales are ``.scale`` in the original and ``.weight`` in
diffusers; the final AdaLN projection stores (shift, scale) in the original and (scale, shift) in diffusers.

Values the shapes cannot tell are fixed rules: RoPE axes split a head of ``d`` as ``[d/8, 7d/16, 7d/16]`` (FLUX's
``[16, 56, 56]`` for 128).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

FLUX_PREFIX = "model.diffusion_model."
#: keys only a FLUX.1 transformer has (prefix-stripped)
FLUX_MARKERS = ("double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight", "img_in.weight",
                "txt_in.weight")
_GLOBAL = (
    ("time_in.in_layer", ("time_text_embed.timestep_embedder.linear_1",)),
    ("time_in.out_layer", ("time_text_embed.timestep_embedder.linear_2",)),
    ("vector_in.in_layer", ("time_text_embed.text_embedder.linear_1",)),
    ("vector_in.out_layer", ("time_text_embed.text_embedder.linear_2",)),
    ("guidance_in.in_layer", ("time_text_embed.guidance_embedder.linear_1",)),
    ("guidance_in.out_layer", ("time_text_embed.guidance_embedder.linear_2",)),
    ("txt_in", ("context_embedder",)),
    ("img_in", ("x_embedder",)),
    ("final_layer.linear", ("proj_out",)),
    ("final_layer.adaLN_modulation.1", ("norm_out.linear",)),
)
_DOUBLE = (
    ("img_mod.lin", ("norm1.linear",)),
    ("txt_mod.lin", ("norm1_context.linear",)),
    ("img_attn.qkv", ("attn.to_q", "attn.to_k", "attn.to_v")),
    ("txt_attn.qkv", ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")),
    ("img_attn.norm.query_norm", ("attn.norm_q",)),
    ("img_attn.norm.key_norm", ("attn.norm_k",)),
    ("txt_attn.norm.query_norm", ("attn.norm_added_q",)),
    ("txt_attn.norm.key_norm", ("attn.norm_added_k",)),
    ("img_mlp.0", ("ff.net.0.proj",)),
    ("img_mlp.2", ("ff.net.2",)),
    ("txt_mlp.0", ("ff_context.net.0.proj",)),
    ("txt_mlp.2", ("ff_context.net.2",)),
    ("img_attn.proj", ("attn.to_out.0",)),
    ("txt_attn.proj", ("attn.to_add_out",)),
)
_SINGLE = (
    ("modulation.lin", ("norm.linear",)),
    ("linear1", ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")),
    ("norm.query_norm", ("attn.norm_q",)),
    ("norm.key_norm", ("attn.norm_k",)),
    ("linear2", ("proj_out",)),
)
_SWAPPED = "final_layer.adaLN_modulation.1"
_BLOCK = re.compile(r"^(double_blocks|single_blocks)\.(\d+)\.")


def strip_prefix(sd: Mapping[str, Any]) -> dict[str, Any]:
    """*sd* without the ``model.diffusion_model.`` prefix; only the diffusion model's keys when it had one."""
    if any(k.startswith(FLUX_PREFIX) for k in sd):
        return {k[len(FLUX_PREFIX):]: v for k, v in sd.items() if k.startswith(FLUX_PREFIX)}
    return dict(sd)


def is_flux_transformer(keys: Mapping[str, Any] | list[str]) -> bool:
    """True when the (prefixed or not) key set is a FLUX.1 transformer in BFL's layout."""
    stripped = {k.removeprefix(FLUX_PREFIX) for k in keys}
    return all(m in stripped for m in FLUX_MARKERS)


def _count(keys: list[str], head: str) -> int:
    ids = {int(m.group(2)) for k in keys if (m := _BLOCK.match(k)) and m.group(1) == head}
    return max(ids) + 1 if ids else 0


def module_map(n_double: int, n_single: int) -> list[tuple[str, tuple[str, ...]]]:
    """(original module name, diffusers module names) for a transformer with these block counts."""
    out = list(_GLOBAL)
    for i in range(n_double):
        out += [(f"double_blocks.{i}.{o}", tuple(f"transformer_blocks.{i}.{d}" for d in ds)) for o, ds in _DOUBLE]
    for i in range(n_single):
        out += [(f"single_blocks.{i}.{o}", tuple(f"single_transformer_blocks.{i}.{d}" for d in ds)) for o, ds in _SINGLE]
    return out


def _swap_halves(t: Any) -> Any:
    import torch

    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def _params(orig: str, diff: str) -> list[tuple[str, str]]:
    if orig.endswith(("query_norm", "key_norm")):
        return [(".scale", ".weight")]
    return [(".weight", ".weight"), (".bias", ".bias")]


def original_to_diffusers(sd: Mapping[str, Any], hidden: int | None = None) -> dict[str, Any]:
    """BFL keys (prefix optional) -> ``FluxTransformer2DModel`` keys; fused projections split by rows."""
    s = strip_prefix(sd)
    keys = list(s)
    hidden = hidden or _shape(s["img_in.weight"])[0]
    out: dict[str, Any] = {}
    for orig, diffs in module_map(_count(keys, "double_blocks"), _count(keys, "single_blocks")):
        for o_suffix, d_suffix in _params(orig, diffs[0]):
            value = s.get(orig + o_suffix)
            if value is None:
                continue
            if len(diffs) == 1:
                out[diffs[0] + d_suffix] = _swap_halves(value) if orig == _SWAPPED else value
                continue
            sizes = [hidden] * 3 + ([value.shape[0] - 3 * hidden] if len(diffs) == 4 else [])
            for name, part in zip(diffs, value.split(sizes, dim=0), strict=True):
                out[name + d_suffix] = part
    return out


def diffusers_to_original(sd: Mapping[str, Any]) -> dict[str, Any]:
    """``FluxTransformer2DModel`` keys -> BFL's single-file layout (fused projections), without prefix."""
    import torch

    keys = list(sd)
    n_double = len({k.split(".")[1] for k in keys if k.startswith("transformer_blocks.")})
    n_single = len({k.split(".")[1] for k in keys if k.startswith("single_transformer_blocks.")})
    out: dict[str, Any] = {}
    for orig, diffs in module_map(n_double, n_single):
        for o_suffix, d_suffix in _params(orig, diffs[0]):
            parts = [sd.get(d + d_suffix) for d in diffs]
            if any(p is None for p in parts):
                continue
            value = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
            out[orig + o_suffix] = _swap_halves(value) if orig == _SWAPPED else value
    return out


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(x) for x in getattr(value, "shape", value))


def rope_axes(head_dim: int) -> list[int]:
    """FLUX's RoPE split of one head: ``[d/8, 7d/16, 7d/16]`` (``[16, 56, 56]`` for 128)."""
    first, rest = head_dim // 8, 7 * head_dim // 16
    if first + 2 * rest != head_dim or first % 2 or rest % 2:
        raise ValueError(f"unsupported FLUX head size {head_dim} (expected a multiple of 32)")
    return [first, rest, rest]


def infer_transformer_config(sd: Mapping[str, Any]) -> dict[str, Any]:
    """``FluxTransformer2DModel`` config for a BFL-layout state dict or ``{key: shape}`` (prefix optional).

    ``in_channels`` 64 is a text-to-image model (16 latent channels x 2x2 patch); 384 is FLUX Fill (latents +
    masked image + mask); ``guidance_embeds`` is dev's distilled guidance (schnell has no ``guidance_in``)."""
    s = strip_prefix(sd)
    keys = list(s)
    hidden, in_ch = _shape(s["img_in.weight"])
    head_dim = _shape(s["double_blocks.0.img_attn.norm.query_norm.scale"])[0]
    out_rows = _shape(s["final_layer.linear.weight"])[0]
    return {
        "patch_size": 1,
        "in_channels": in_ch,
        "out_channels": None if out_rows == in_ch else out_rows,
        "num_layers": _count(keys, "double_blocks"),
        "num_single_layers": _count(keys, "single_blocks"),
        "attention_head_dim": head_dim,
        "num_attention_heads": hidden // head_dim,
        "joint_attention_dim": _shape(s["txt_in.weight"])[1],
        "pooled_projection_dim": _shape(s["vector_in.in_layer.weight"])[1],
        "guidance_embeds": "guidance_in.in_layer.weight" in s,
        "axes_dims_rope": rope_axes(head_dim),
    }
