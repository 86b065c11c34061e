"""Quantized GGUF model files (city96's diffusion models, llama.cpp text encoders) kept quantized in memory.

A GGUF file stores each tensor in a ggml type: ``F32``/``F16``/``BF16`` or a block quantization (``Q8_0``,
``Q5_K``, ``Q4_K``..., the types city96's ``Q8_0`` / ``Q5_K_S`` / ``Q4_K_S`` files mix). We read the file through
diffusers' GGUF support (``load_gguf_checkpoint``: quantized tensors become ``GGUFParameter``, the raw blocks plus
their ``quant_type``) and put them into the model without dequantizing them: every ``nn.Linear`` whose weight is
quantized becomes diffusers' ``GGUFLinear``, which dequantizes its weight to the compute dtype for each forward call
(the weights stay small; the cost is one dequantization per linear per step). Quantized weights of other modules
(an embedding table, a conv) are dequantized once at load, since only linears compute from blocks. ``F32``/``F16``
tensors (norms, biases, the small layers converters keep unquantized) are cast to the compute dtype like
safetensors weights.

Shapes: a quantized tensor's data is ``[rows, bytes per row]``; the logical shapes used to infer architectures come
from the header (``gguf_header.read_gguf_header``), never from the data.

Text encoders converted by llama.cpp use its own tensor names (``token_embd``, ``blk.N.attn_q``...);
``llama_to_hf_qwen3`` maps a Qwen3 file's names to the Hugging Face ``model.*`` names our loader expects, and
``llama_to_hf_t5`` a T5 encoder's (city96's ``t5-v1_1-xxl-encoder-Q8_0.gguf``: ``enc.blk.N.attn_q``,
``enc.blk.0.attn_rel_b``, ``enc.output_norm``, ``token_embd``; architecture ``t5encoder``) to ``T5EncoderModel``'s.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from app.models.load.checkpoint_io import CheckpointLoadError
from app.models.load.gguf_header import quant_label, read_gguf_header

log = logging.getLogger(__name__)

def is_quantized(t: Any) -> bool:
    """True for a tensor still holding ggml blocks (a diffusers ``GGUFParameter``)."""
    return getattr(t, "quant_type", None) is not None


def logical_shape(t: Any) -> tuple[int, ...]:
    """The shape *t* has once dequantized (a quantized tensor's data is ``[rows, bytes per row]``)."""
    shape = getattr(t, "quant_shape", None) if is_quantized(t) else None
    return tuple(int(d) for d in (shape if shape is not None else t.shape))


def logical_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """``{tensor name: shape}`` in PyTorch order from the GGUF header (the dequantized shapes)."""
    try:
        _, tensors = read_gguf_header(path)
    except (OSError, ValueError) as exc:
        raise CheckpointLoadError(f"could not read GGUF header of {path}: {exc}") from exc
    return {name: shape for name, (shape, _) in tensors.items()}


def stored_types(path: str | Path) -> list[str]:
    """The ggml types of a GGUF file's tensors, sorted (``["F32", "Q8_0"]``), plus ``gguf:<label>`` first."""
    _, tensors = read_gguf_header(path)
    return [f"gguf:{quant_label(tensors)}", *sorted({t for _, t in tensors.values()})]


def dequantize(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A plain tensor of *t* in *dtype* (quantized blocks decoded, floats cast)."""
    if is_quantized(t):
        from diffusers.quantizers.gguf.utils import dequantize_gguf_tensor

        return dequantize_gguf_tensor(t).to(dtype)
    return t.to(dtype) if t.is_floating_point() else t


def _swap_linears(model: torch.nn.Module, sd: Mapping[str, torch.Tensor], dtype: torch.dtype,
                  dense: tuple[str, ...] = ()) -> int:
    """Replace every ``nn.Linear`` whose weight in *sd* is quantized by a ``GGUFLinear`` (on meta), except modules
    whose name ends with one of *dense*; returns the count."""
    from diffusers.quantizers.gguf.utils import GGUFLinear

    swapped = 0
    for name, module in list(model.named_modules()):
        if type(module) is not torch.nn.Linear or not is_quantized(sd.get(f"{name}.weight" if name else "weight")):
            continue
        if dense and name.endswith(dense):
            continue
        new = GGUFLinear(module.in_features, module.out_features, bias=module.bias is not None, compute_dtype=dtype,
                         device="meta")
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
        swapped += 1
    return swapped


def assign_gguf(model: torch.nn.Module, sd: dict[str, torch.Tensor], dtype: torch.dtype, what: str, src: Path,
                dense: tuple[str, ...] = ()) -> int:
    """Put *sd* (GGUF tensors, model key names) into *model* (built on meta), emptying *sd*.

    Quantized linear weights stay quantized (``GGUFLinear``) unless the module name ends with one of *dense* (a
    module whose caller reads its weight's dtype, such as T5's ``wo``); other quantized tensors are dequantized;
    floats are cast to *dtype*. Every parameter and buffer of the model must be given (``CheckpointLoadError``
    naming the file and the first missing tensors otherwise). Returns the number of quantized linears.
    """
    from diffusers.quantizers.gguf.utils import GGUFLinear

    swapped = _swap_linears(model, sd, dtype, dense)
    wanted = dict(model.state_dict(keep_vars=True))
    missing = [k for k in wanted if k not in sd]
    if missing:
        raise CheckpointLoadError(
            f"{src}: {what} weights do not match the inferred architecture; missing {len(missing)} tensors, "
            f"e.g. {', '.join(missing[:4])}"
        )
    unexpected = [k for k in sd if k not in wanted]
    if unexpected:
        log.info("%s: ignored %d unexpected %s tensors (e.g. %s)", src, len(unexpected), what, unexpected[:3])
    for key in list(wanted):
        value = sd.pop(key)
        mod_name, _, attr = key.rpartition(".")
        module = model.get_submodule(mod_name) if mod_name else model
        keep_blocks = isinstance(module, GGUFLinear) and attr == "weight" and is_quantized(value)
        tensor = value if keep_blocks else dequantize(value, dtype)
        expected = wanted[key]
        if not keep_blocks and tuple(tensor.shape) != tuple(expected.shape):
            raise CheckpointLoadError(
                f"{src}: {what} tensor {key} has shape {tuple(tensor.shape)}, the architecture needs "
                f"{tuple(expected.shape)}"
            )
        if attr in module._parameters:
            module._parameters[attr] = tensor if keep_blocks else torch.nn.Parameter(tensor, requires_grad=False)
        else:
            module._buffers[attr] = tensor
    sd.clear()
    model.eval()
    return swapped


# -- llama.cpp text-encoder names ------------------------------------------------------------------------------

_LLAMA_GLOBAL = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight"}
_LLAMA_BLOCK = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}
_BLOCK = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")


def is_llama_cpp(keys: Mapping[str, Any] | list[str]) -> bool:
    """A llama.cpp-named decoder (``token_embd.weight`` + ``blk.0.*``)."""
    return "token_embd.weight" in keys and any(k.startswith("blk.0.") for k in keys)


def llama_to_hf_qwen3(sd: Mapping[str, Any]) -> dict[str, Any]:
    """A llama.cpp Qwen3 file's tensors (or shapes) under the Hugging Face ``model.*`` names; ``output.weight`` (the
    LM head) is dropped. Qwen rotary embeddings are NeoX-style, so llama.cpp stores q/k unpermuted."""
    out: dict[str, Any] = {}
    for key, value in sd.items():
        if key in _LLAMA_GLOBAL:
            out[_LLAMA_GLOBAL[key]] = value
        elif (m := _BLOCK.match(key)) and m.group(2) in _LLAMA_BLOCK:
            out[f"model.layers.{m.group(1)}.{_LLAMA_BLOCK[m.group(2)]}.{m.group(3)}"] = value
    return out


def hf_to_llama_qwen3(sd: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of ``llama_to_hf_qwen3`` (used to write tiny llama.cpp-named test files)."""
    back_global = {v: k for k, v in _LLAMA_GLOBAL.items()}
    back_block = {v: k for k, v in _LLAMA_BLOCK.items()}
    out: dict[str, Any] = {}
    for key, value in sd.items():
        if key in back_global:
            out[back_global[key]] = value
            continue
        m = re.match(r"^model\.layers\.(\d+)\.(.+)\.(weight|bias)$", key)
        if m and m.group(2) in back_block:
            out[f"blk.{m.group(1)}.{back_block[m.group(2)]}.{m.group(3)}"] = value
    return out


# -- llama.cpp T5 encoder names (city96's t5-v1_1-xxl-encoder-gguf) ---------------------------------------------

_T5_GLOBAL = {"token_embd.weight": "shared.weight", "enc.output_norm.weight": "encoder.final_layer_norm.weight"}
_T5_BLOCK = {
    "attn_q": "layer.0.SelfAttention.q", "attn_k": "layer.0.SelfAttention.k", "attn_v": "layer.0.SelfAttention.v",
    "attn_o": "layer.0.SelfAttention.o", "attn_norm": "layer.0.layer_norm",
    "attn_rel_b": "layer.0.SelfAttention.relative_attention_bias",
    "ffn_gate": "layer.1.DenseReluDense.wi_0", "ffn_up": "layer.1.DenseReluDense.wi_1",
    "ffn_down": "layer.1.DenseReluDense.wo", "ffn_norm": "layer.1.layer_norm",
}
_T5_BLOCK_KEY = re.compile(r"^enc\.blk\.(\d+)\.([a-z_]+)\.weight$")


def is_llama_t5(keys: Mapping[str, Any] | list[str]) -> bool:
    """A llama.cpp-named T5 encoder (``token_embd.weight`` + ``enc.blk.0.attn_q.weight``)."""
    return "token_embd.weight" in keys and "enc.blk.0.attn_q.weight" in keys


def llama_to_hf_t5(sd: Mapping[str, Any]) -> dict[str, Any]:
    """A llama.cpp T5 encoder's tensors (or shapes) under ``T5EncoderModel``'s names (decoder tensors dropped).

    The plain v1.0 feed-forward (``ffn_up`` without ``ffn_gate``) is ``wi``; v1.1's gated one is ``wi_0``/``wi_1``."""
    gated = any(k.endswith(".ffn_gate.weight") for k in sd)
    out: dict[str, Any] = {}
    for key, value in sd.items():
        if key in _T5_GLOBAL:
            out[_T5_GLOBAL[key]] = value
        elif (m := _T5_BLOCK_KEY.match(key)) and m.group(2) in _T5_BLOCK:
            name = _T5_BLOCK[m.group(2)]
            if m.group(2) == "ffn_up" and not gated:
                name = "layer.1.DenseReluDense.wi"
            out[f"encoder.block.{m.group(1)}.{name}.weight"] = value
    return out


def hf_to_llama_t5(sd: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of ``llama_to_hf_t5`` (used to write tiny llama.cpp-named T5 files)."""
    back_global = {v: k for k, v in _T5_GLOBAL.items()}
    back_block = {v: k for k, v in _T5_BLOCK.items()}
    back_block["layer.1.DenseReluDense.wi"] = "ffn_up"
    out: dict[str, Any] = {}
    for key, value in sd.items():
        if key in back_global:
            out[back_global[key]] = value
        elif (m := re.match(r"^encoder\.block\.(\d+)\.(.+)\.weight$", key)) and m.group(2) in back_block:
            out[f"enc.blk.{m.group(1)}.{back_block[m.group(2)]}.weight"] = value
    return out
