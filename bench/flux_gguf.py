"""A random FLUX.1 dev transformer written straight to a GGUF ``Q8_0`` file, one tensor at a time, for the
real-shaped GGUF benchmark row (``bench/flux.py --gguf Q8_0``).

The file looks like city96's ``flux1-dev-Q8_0.gguf``: BFL's key names and layout (fused ``img_attn.qkv``,
``single_blocks.N.linear1``...), architecture ``flux``, every matrix ``Q8_0`` except the input embedders and the
final layer (``F32``, as city96 keeps them), vectors (norm scales, biases) ``F32``. The layout comes from a
``FluxTransformer2DModel`` built on the meta device (no memory) and converted with ``flux_convert``. Each tensor
is drawn on *device* (the GPU when there is one: 12 B values in seconds), rounded to bf16 as a bf16 model holds it,
quantized there (``q8_0``: ggml's reference ``Q8_0``, bit for bit the ``gguf`` package's quantizer) and appended to
the file, so memory holds one tensor at a time whatever the model's size (the largest real one, ``linear1``, is
66 M values). Values follow ``nn.Linear``'s default initialisation (uniform in +-1/sqrt(fan_in), weights and
biases), norm scales are ones: the distribution of the bf16 row's ``FluxTransformer2DModel(...)`` weights.

Shapes: ``full`` is FLUX.1 dev (width 3072 in 24 heads of 128, 19 double and 38 single blocks, T5-XXL's 4096 and
CLIP-L's 768 text widths, distilled guidance): 11.9 B values, a 12.7 GB file. ``small`` keeps the real head size
(128, so the real RoPE split) and every key of the layout but 2 heads, 2 double and 2 single blocks and the tiny
text widths of ``app.devtools.tiny_flux`` (so the tiny T5 / CLIP-L files fit it): seconds on a CPU, the same code.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: the tensors city96's converter keeps in a float type (``app.devtools.tiny_gguf``)
from app.devtools.tiny_gguf import FLUX_FLOAT_PREFIXES

SHAPES = ("full", "small")
QK8_0 = 32  # values per Q8_0 block (an fp16 scale and 32 int8 values: 34 bytes)


def transformer_config(shape: str) -> dict[str, Any]:
    """``FluxTransformer2DModel`` kwargs of FLUX.1 dev (*shape* ``full``) or its reduced copy (``small``)."""
    if shape == "full":
        return {"num_layers": 19, "num_single_layers": 38, "attention_head_dim": 128, "num_attention_heads": 24,
                "joint_attention_dim": 4096, "pooled_projection_dim": 768, "guidance_embeds": True}
    if shape == "small":
        from app.devtools import tiny_configs as tc
        from app.devtools.tiny_t5 import T5_TINY_WIDTH

        return {"num_layers": 2, "num_single_layers": 2, "attention_head_dim": 128, "num_attention_heads": 2,
                "joint_attention_dim": T5_TINY_WIDTH, "pooled_projection_dim": tc.SD1_HIDDEN, "guidance_embeds": True}
    raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")


def bfl_layout(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """``{BFL key: shape}`` of the transformer *config*, in file order (built on the meta device: no memory)."""
    from diffusers import FluxTransformer2DModel

    from app.models.load.flux_convert import diffusers_to_original

    with torch.device("meta"):
        model = FluxTransformer2DModel(**config)
    return {k: tuple(v.shape) for k, v in diffusers_to_original(model.state_dict()).items()}


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """ggml's ``roundf``: halves away from zero (``torch.round`` rounds them to even)."""
    a = x.abs()
    floored = torch.floor(a)
    return torch.sign(x) * (floored + torch.floor(2 * (a - floored)))


def q8_0(t: torch.Tensor) -> torch.Tensor:
    """The ``Q8_0`` blocks of *t* (last dimension a multiple of 32) as uint8 ``[..., width / 32 * 34]``, computed
    on *t*'s device: per block of 32 values ``d = max|x| / 127`` (fp16) then ``round(x / d)`` (int8)."""
    width = t.shape[-1]
    if width % QK8_0:
        raise ValueError(f"Q8_0 needs rows of a multiple of {QK8_0} values, got {width}")
    blocks = t.detach().float().reshape(-1, QK8_0)
    d = blocks.abs().amax(dim=1, keepdim=True) / 127
    inverse = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    qs = _round_half_away(blocks * inverse).to(torch.int8).view(torch.uint8)
    out = torch.cat([d.to(torch.float16).view(torch.uint8), qs], dim=1)
    return out.reshape(*t.shape[:-1], width // QK8_0 * (QK8_0 + 2))


def _draw(key: str, shape: tuple[int, ...], layout: dict[str, tuple[int, ...]], gen: torch.Generator,
          device: torch.device) -> torch.Tensor:
    """One random tensor (see the module doc), bf16-rounded, float32 on *device*."""
    if key.endswith(".scale"):  # RMSNorm scales
        return torch.ones(shape, device=device)
    weight = layout.get(key.rsplit(".", 1)[0] + ".weight", shape)
    bound = 1 / math.sqrt(weight[1]) if len(weight) == 2 else 0.02
    t = torch.empty(shape, device=device).uniform_(-bound, bound, generator=gen)
    return t.to(torch.bfloat16).float()


def write_flux_gguf(path: str | Path, shape: str = "full", device: str | torch.device = "cpu", seed: int = 0,
                    log: Any = None) -> Path:
    """Write the random FLUX.1 dev transformer of *shape* to the GGUF ``Q8_0`` file *path* (see the module doc)."""
    import gguf

    device = torch.device(device)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    layout = bfl_layout(transformer_config(shape))
    q_type = gguf.GGMLQuantizationType
    quantized = {k: len(s) == 2 and not k.startswith(FLUX_FLOAT_PREFIXES) for k, s in layout.items()}
    writer = gguf.GGUFWriter(str(path), "flux")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_string("general.quantization", "Q8_0")
    for key, dims in layout.items():
        if quantized[key]:
            byte_shape = (*dims[:-1], dims[-1] // QK8_0 * (QK8_0 + 2))
            writer.add_tensor_info(key, byte_shape, np.dtype(np.uint8), math.prod(byte_shape), raw_dtype=q_type.Q8_0)
        else:
            writer.add_tensor_info(key, dims, np.dtype(np.float32), 4 * math.prod(dims), raw_dtype=q_type.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    gen = torch.Generator(device).manual_seed(seed)
    for i, (key, dims) in enumerate(layout.items()):
        t = _draw(key, dims, layout, gen, device)
        data = q8_0(t) if quantized[key] else t
        writer.write_tensor_data(data.cpu().numpy())
        del t, data
        if log is not None and i % 100 == 0:
            log(f"GGUF Q8_0 transformer: {i}/{len(layout)} tensors")
    writer.close()
    return path
