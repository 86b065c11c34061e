"""A tiny random T5 v1.1 encoder with the real key names and T5-XXL's vocabulary table (32,128 rows), shared by the
tiny FLUX and SD3.5 files: width 32, 4 heads of 8, gated-GELU feed-forward of 64, 2 blocks (~1.1 M parameters, nearly
all of them the embedding table, so the real T5 tokenizer's ids index it)."""

from __future__ import annotations

from typing import Any

import torch

from app.prompts.t5_tokenizer import T5_EMBEDDING_ROWS

T5_TINY_WIDTH = 32


def tiny_t5_config(width: int = T5_TINY_WIDTH) -> dict[str, Any]:
    """``T5Config`` kwargs of the tiny encoder (*width*: its ``d_model``; SD3's must hold CLIP-L ++ CLIP-G)."""
    return {"vocab_size": T5_EMBEDDING_ROWS, "d_model": width, "d_kv": 8, "d_ff": 64, "num_layers": 2,
            "num_heads": 4, "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
            "feed_forward_proj": "gated-gelu", "layer_norm_epsilon": 1e-6, "dropout_rate": 0.0,
            "is_encoder_decoder": False, "use_cache": False, "tie_word_embeddings": False}


def tiny_t5_encoder(seed: int = 0, width: int = T5_TINY_WIDTH) -> Any:
    """The tiny ``T5EncoderModel`` with random weights (the embedding scaled to T5's ~unit-variance range)."""
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    return T5EncoderModel(T5Config(**tiny_t5_config(width))).eval()


def tiny_t5_file_tensors(seed: int = 0, dtype: torch.dtype = torch.bfloat16,
                         width: int = T5_TINY_WIDTH) -> dict[str, torch.Tensor]:
    """The tiny encoder as a ``t5xxl_fp16.safetensors``-style dict (``shared.weight`` once, no ``embed_tokens``)."""
    sd = tiny_t5_encoder(seed, width).state_dict()
    return {k: v.detach().to(dtype).contiguous() for k, v in sd.items() if k != "encoder.embed_tokens.weight"}
