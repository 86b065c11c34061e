"""SD3.5 diffusion models as GGUF files (city96's ``sd3.5_large-Q8_0.gguf``, ``sd3.5_medium-Q5_K_S.gguf``...): the
MMDiT in Stability's key names with the linears quantized, kept quantized in memory.

The architecture comes from the header's logical shapes (``sd3_convert.infer_transformer_config``, as for
safetensors); the tensors are read through diffusers' GGUF support and renamed by the same key table. Fused ``qkv``
blocks split by rows and the AdaLN projections whose halves swap stay quantized: a quantized tensor's data is
``[rows, bytes per row]``, so taking or reordering whole rows moves whole blocks (diffusers' ``GGUFParameter`` keeps
its ggml type through ``chunk`` / ``cat``). Then ``gguf_load.assign_gguf`` puts
them into the model (quantized linears become ``GGUFLinear``, dequantized per forward; other tensors are dequantized
once). A GGUF file holds only the diffusion model: the text encoders and the VAE come from the folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from app.models.load import gguf_load
from app.models.load import sd3_convert as sc
from app.models.load.checkpoint_io import CheckpointLoadError, read_gguf_state_dict
from app.models.load.pipeline_build import _empty_init


def gguf_keys(path: str | Path) -> list[str]:
    """The tensor names of a GGUF file (header only)."""
    return list(gguf_load.logical_shapes(path))


def gguf_transformer(path: Path, dtype: torch.dtype) -> tuple[Any, list[str]]:
    """(``SD3Transformer2DModel`` with quantized linears, the file's stored types) of an SD3 GGUF diffusion model."""
    from diffusers import SD3Transformer2DModel

    shapes = gguf_load.logical_shapes(path)
    if not sc.is_sd3_transformer(list(shapes)):
        raise CheckpointLoadError(f"{path} is not an SD3 diffusion model (no joint_blocks / x_embedder keys)")
    try:
        cfg = sc.infer_transformer_config(shapes)
    except (KeyError, ValueError, IndexError) as exc:
        raise CheckpointLoadError(f"{path}: incomplete SD3 diffusion model: {type(exc).__name__}: {exc}") from exc
    stored = gguf_load.stored_types(path)
    sd = sc.strip_prefix(read_gguf_state_dict(path))
    converted = sc.original_to_diffusers(sd)
    sd.clear()
    with _empty_init():
        model = SD3Transformer2DModel.from_config(cfg)
    gguf_load.assign_gguf(model, converted, dtype, "transformer", path)
    return model, stored
