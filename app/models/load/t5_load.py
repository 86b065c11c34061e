"""T5 encoder files (``t5xxl_fp16.safetensors`` and the T5 part of all-in-one checkpoints) -> ``T5EncoderModel``.

FLUX.1 and SD3.5 use the encoder half of Google's T5 v1.1 XXL. The files users have keep Hugging Face's key names
(``encoder.block.N.layer.0.SelfAttention.q.weight``, ``encoder.block.N.layer.1.DenseReluDense.wi_0.weight``,
``encoder.final_layer_norm.weight``, ``shared.weight``), alone in ``models/text_encoders`` or under a prefix inside a
single-file checkpoint (ComfyUI saves ``text_encoders.t5xxl.transformer.``). The architecture is read from the
shapes (``infer_t5_config``): width, heads (the relative-attention bias table), head size, feed-forward width,
layers, vocabulary rows and the gated-GELU feed-forward of v1.1 (``wi_0``/``wi_1``; a plain ``wi`` = ReLU, T5 v1.0).
Weights in bf16, fp16, fp32 or fp8 are cast to the compute dtype one tensor at a time, except fp8 linear weights of
the blocks (``t5xxl_fp8_e4m3fn.safetensors``), which stay fp8 in memory and are computed in the compute dtype
(``fp8_store``; ``wo`` is upcast, see below). ComfyUI's scaled fp8 files (``t5xxl_fp8_e4m3fn_scaled.safetensors``)
keep their per-tensor scales with the fp8 weights; ``wo`` and the embedding are folded.
The input embedding is stored once (``shared.weight``) and tied to ``encoder.embed_tokens``.

GGUF T5 encoders (city96's ``t5-v1_1-xxl-encoder-Q8_0.gguf``) use llama.cpp's names (``enc.blk.N.attn_q``...,
``gguf_load.llama_to_hf_t5``); their quantized linears stay quantized (``GGUFLinear``) except the feed-forward output
``wo``, which is dequantized at load: transformers' T5 casts the hidden states to ``wo.weight.dtype`` before calling
it, which must be a float type. The embedding table is dequantized once. Nothing here names a diffusion family: FLUX
and SD3.5 use the same loader.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from app.models.load.checkpoint_io import CheckpointLoadError

_Q_KEY = "encoder.block.0.layer.0.SelfAttention.q.weight"
_BLOCK = re.compile(r"encoder\.block\.(\d+)\.")


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(x) for x in getattr(value, "shape", value))


_DENSE = ("DenseReluDense.wo",)  # read by dtype in transformers' T5 feed-forward: kept in a float dtype


def t5_prefix(keys: Mapping[str, Any] | list[str]) -> str | None:
    """The prefix in front of ``encoder.block.0...`` of a T5 encoder inside *keys*; None when there is none."""
    for key in keys:
        if key.endswith(_Q_KEY):
            return key[: -len(_Q_KEY)]
    return None


def is_t5_encoder(keys: Mapping[str, Any] | list[str]) -> bool:
    """True when *keys* hold a T5 encoder (with or without a prefix, or llama.cpp-named as in a GGUF file)."""
    from app.models.load.gguf_load import is_llama_t5

    return t5_prefix(keys) is not None or is_llama_t5(keys)


def t5_state_dict(sd: Mapping[str, Any], prefix: str | None = None) -> dict[str, Any]:
    """The encoder tensors of *sd* under Hugging Face ``T5EncoderModel`` names (prefix removed; decoder, ``lm_head``
    and others dropped). ``shared.weight`` comes from ``encoder.embed_tokens.weight`` when only that is stored."""
    prefix = t5_prefix(list(sd)) if prefix is None else prefix
    if prefix is None:
        raise ValueError("no T5 encoder keys (encoder.block.0.layer.0.SelfAttention.q.weight)")
    out = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    out = {k: v for k, v in out.items() if k.startswith(("encoder.", "shared."))}
    if "shared.weight" not in out and "encoder.embed_tokens.weight" in out:
        out["shared.weight"] = out["encoder.embed_tokens.weight"]
    out.pop("encoder.embed_tokens.weight", None)
    return out


def infer_t5_config(sd: Mapping[str, Any]) -> dict[str, Any]:
    """``T5Config`` kwargs for a T5 encoder state dict or ``{key: shape}`` (un-prefixed, see ``t5_state_dict``)."""
    if "shared.weight" not in sd:
        raise KeyError("shared.weight (the token embedding)")
    vocab, d_model = _shape(sd["shared.weight"])
    buckets, heads = _shape(sd["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"])
    inner = _shape(sd["encoder.block.0.layer.0.SelfAttention.q.weight"])[0]
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in sd
    wi = "wi_0" if gated else "wi"
    d_ff = _shape(sd[f"encoder.block.0.layer.1.DenseReluDense.{wi}.weight"])[0]
    layers = len({m.group(1) for k in sd if (m := _BLOCK.match(k))})
    if inner % heads:
        raise ValueError(f"attention width {inner} is not a multiple of {heads} heads")
    return {
        "vocab_size": vocab, "d_model": d_model, "d_kv": inner // heads, "d_ff": d_ff, "num_layers": layers,
        "num_heads": heads, "relative_attention_num_buckets": buckets, "relative_attention_max_distance": 128,
        "feed_forward_proj": "gated-gelu" if gated else "relu", "layer_norm_epsilon": 1e-6, "dropout_rate": 0.0,
        "is_encoder_decoder": False, "use_cache": False, "tie_word_embeddings": False,
    }


def build_t5_encoder(sd: dict[str, torch.Tensor], dtype: torch.dtype, src: str | Path,
                     prefix: str | None = None) -> Any:
    """A ``T5EncoderModel`` in *dtype* from the T5 tensors of *sd* (emptied of them as they are cast); *sd* may be
    a GGUF file's llama.cpp-named tensors (quantized linears kept quantized, see the module doc)."""
    from transformers import T5Config, T5EncoderModel

    from app.models.load import gguf_load
    from app.models.load.pipeline_build import _empty_init
    from app.prompts.t5_tokenizer import T5VocabularyError, check_vocab

    llama = gguf_load.is_llama_t5(sd)
    prefix = "" if llama else (t5_prefix(list(sd)) if prefix is None else prefix)
    from app.models.load import fp8_store

    try:
        tensors = gguf_load.llama_to_hf_t5(sd) if llama else t5_state_dict(sd, prefix)
        scales = fp8_store.pop_scales(tensors)  # a scaled fp8 file: already under the model's names
        cfg = infer_t5_config({k: gguf_load.logical_shape(v) for k, v in tensors.items()})
        check_vocab(cfg["vocab_size"], str(src))
    except T5VocabularyError as exc:
        raise CheckpointLoadError(str(exc)) from None
    except (KeyError, ValueError, IndexError) as exc:
        raise CheckpointLoadError(f"{src}: not a complete T5 encoder ({type(exc).__name__}: {exc})") from exc
    if llama:
        sd.clear()
    for key in [k for k in sd if k.startswith(prefix or "") and k[len(prefix or ""):].startswith(("encoder.", "shared."))]:
        del sd[key]  # the caller's dict no longer holds them: on CPU nothing is kept twice
    with _empty_init():
        model = T5EncoderModel(T5Config(**cfg))
    if any(gguf_load.is_quantized(v) for v in tensors.values()):
        shared = gguf_load.dequantize(tensors.pop("shared.weight"), dtype)  # one table for both names
        tensors["shared.weight"] = tensors["encoder.embed_tokens.weight"] = shared
        gguf_load.assign_gguf(model, tensors, dtype, "T5 encoder", Path(src), dense=_DENSE)
        return model.eval()
    kept = fp8_store.keep_fp8_names(tensors, model, ("encoder.block.",), _DENSE)
    cast = {k: (v if k.removesuffix(".weight") in kept else fp8_store.fold(v, scales[k], dtype) if k in scales
                else v.to(dtype) if v.is_floating_point() else v)
            for k, v in tensors.items()}
    tensors.clear()
    cast["encoder.embed_tokens.weight"] = cast["shared.weight"]  # one table, two names (tied)
    result = model.load_state_dict(cast, strict=False, assign=True)
    if result.missing_keys:
        raise CheckpointLoadError(
            f"{src}: T5 weights do not match the inferred architecture; missing {len(result.missing_keys)} tensors, "
            f"e.g. {', '.join(result.missing_keys[:4])}"
        )
    fp8_store.to_fp8_linears(model, kept, dtype, scales)
    return model.eval()


def load_t5_file(path: str | Path, dtype: torch.dtype, allow_unsafe: bool = False) -> Any:
    """The ``T5EncoderModel`` of a T5 text-encoder file (``t5xxl_fp16.safetensors``, ``t5xxl_fp8_e4m3fn...``)."""
    from app.models.load.checkpoint_io import read_state_dict

    path = Path(path)
    sd = read_state_dict(path, allow_unsafe=allow_unsafe, keep_fp8_scales=True)
    if not is_t5_encoder(sd):
        raise CheckpointLoadError(f"{path} is not a T5 text encoder (no encoder.block.0 T5 keys); FLUX.1 and SD3.5 "
                                  "need one, e.g. t5xxl_fp16.safetensors in models/text_encoders")
    return build_t5_encoder(sd, dtype, path)
