"""LoRA on quantized weights (GGUF, fp8 kept in memory): the delta is added to the module's output in the forward pass,
never merged.

A GGUF linear (diffusers' ``GGUFLinear``) holds ggml blocks, not a float matrix, so ``ModelPatch`` cannot add a
delta to its weight and write it back without re-quantizing (lossy, slow, and not restorable bit for bit). Instead a
forward hook adds ``x @ ΔWᵀ + Δb`` to what the module returns: the same result as running on ``W + ΔW`` up to
float rounding, and the quantized weight is never touched, so removing the hook is an exact restore. An fp8 weight
(``app.models.load.fp8_store.Fp8Linear``) is treated alike: merged, the delta would be rounded to fp8 (mostly lost)
and the weight would have to be written back.

The summed delta of a module (``ΔW``: all networks on it, multipliers applied) is held densely in the module's
compute dtype on the weight's device while it is applied: as large as the patched module's dequantized weight,
freed on restore. The hook moves it to the input's device when the model was moved (offload).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.hooks import RemovableHandle

_FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)


def is_quantized(module: torch.nn.Module) -> bool:
    """True when *module*'s weight holds quantized blocks (a ``GGUFParameter``: it has a ``quant_type``) or is
    stored in fp8."""
    weight = getattr(module, "weight", None)
    return getattr(weight, "quant_type", None) is not None or getattr(weight, "dtype", None) in _FP8


def dequantized_weight(module: torch.nn.Module) -> torch.Tensor:
    """The float32 matrix a quantized module computes with (its logical shape)."""
    if module.weight.dtype in _FP8:
        weight = module.weight.detach().to(torch.float32)
        scale = getattr(module, "scale_weight", None)  # a scaled-fp8 file's scale (fp8_store.Fp8Linear)
        return weight if scale is None else weight * scale.to(weight.device)
    from diffusers.quantizers.gguf.utils import dequantize_gguf_tensor

    return dequantize_gguf_tensor(module.weight.detach()).to(torch.float32)


class _AddDelta:
    """A forward hook returning ``output + linear(x, ΔW, Δb)``."""

    def __init__(self, weight: torch.Tensor | None, bias: torch.Tensor | None) -> None:
        self.weight, self.bias = weight, bias

    def __call__(self, module: torch.nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        x = args[0]
        dtype = self.weight.dtype if self.weight is not None else output.dtype
        if self.weight is not None and self.weight.device != x.device:
            self.weight = self.weight.to(x.device)
        if self.bias is not None and self.bias.device != x.device:
            self.bias = self.bias.to(x.device)
        if self.weight is None:
            return output + self.bias.to(output.dtype)
        return output + F.linear(x.to(dtype), self.weight, self.bias).to(output.dtype)


def attach_delta(module: torch.nn.Module, weight: torch.Tensor | None, bias: torch.Tensor | None) -> RemovableHandle:
    """Add ``(weight, bias)`` (float deltas, logical shapes) to *module*'s output until the handle is removed."""
    dtype = getattr(module, "compute_dtype", None) or torch.float32
    device = module.weight.device
    w = weight.to(device=device, dtype=dtype) if weight is not None else None
    b = bias.to(device=device, dtype=dtype) if bias is not None else None
    return module.register_forward_hook(_AddDelta(w, b))
