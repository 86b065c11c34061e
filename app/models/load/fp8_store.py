"""fp8 files kept small in memory: linear weights stored as ``float8_e4m3fn``, computed in the compute dtype.

An fp8 file (``flux1-dev-fp8_e4m3fn.safetensors``, ``z_image_turbo_fp8_e4m3fn.safetensors``,
``t5xxl_fp8_e4m3fn.safetensors``) holds its matrices in one byte per value. Upcasting them at load doubles (bf16) or
quadruples (fp32) their memory. Instead, every ``nn.Linear`` inside the repeated blocks whose weight the file stores
in fp8 becomes an ``Fp8Linear``: the weight stays fp8, and each forward call casts it to the input's dtype (one
temporary copy of one matrix at a time) and computes as the upcast model would. Every fp8 value is exactly
representable in bf16 / fp16 / fp32, so the result equals the upcast path's up to nothing but the order of float
operations (in practice bit-identical on CPU).

What stays in the compute dtype: everything outside the blocks (input embedders, timestep/guidance MLPs, final
layers: small, and models read their dtype, e.g. diffusers' ``ModelMixin.dtype`` is the first parameter's), norms and
biases, and linears the caller names *dense* (T5's ``wo``: transformers casts the hidden states to
``wo.weight.dtype`` before calling it). ``.to(dtype)`` on the model does not upcast the fp8 weights: ``Fp8Linear``
keeps its storage dtype and takes the new dtype as its compute dtype; ``.to(device)`` moves the fp8 bytes.

LoRA on an fp8 base is applied in the forward pass (``app.models.lora.forward_delta``, as for GGUF): merging a delta
into an fp8 weight would round it to fp8 (the LoRA mostly lost) and writing the weight back is avoided entirely, so
the fp8 weights never drift and removing the hook restores the model exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


def is_fp8(t: Any) -> bool:
    """True for a tensor stored in a float8 dtype."""
    return isinstance(t, torch.Tensor) and t.dtype in FP8_DTYPES


class Fp8Linear(torch.nn.Linear):
    """An ``nn.Linear`` whose weight is stored in fp8 and cast to the input's dtype for each forward call."""

    compute_dtype: torch.dtype
    storage_dtype: torch.dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight.to(x.dtype), bias)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Fp8Linear:
        super()._apply(fn, recurse)
        weight = self.weight
        if weight.dtype != self.storage_dtype and weight.is_floating_point() and weight.device.type != "meta":
            self.compute_dtype = weight.dtype  # a model-wide .to(dtype): new compute dtype, storage unchanged
            weight.data = weight.data.to(self.storage_dtype)  # exact: the values came from fp8
        return self


def keep_fp8_names(sd: dict[str, torch.Tensor], model: torch.nn.Module, blocks: tuple[str, ...],
                   dense: tuple[str, ...] = ()) -> set[str]:
    """The module names of *model*'s plain linears under one of the *blocks* prefixes (not ending with one of
    *dense*) whose weight *sd* holds in fp8: those keep their weights fp8 (``Fp8Linear``)."""
    if not blocks:
        return set()
    names: set[str] = set()
    for key, value in sd.items():
        name, _, attr = key.rpartition(".")
        if attr != "weight" or not is_fp8(value) or not name.startswith(blocks) or (dense and name.endswith(dense)):
            continue
        try:
            module = model.get_submodule(name)
        except AttributeError:
            continue
        if type(module) is torch.nn.Linear:
            names.add(name)
    return names


def to_fp8_linears(model: torch.nn.Module, names: set[str], compute_dtype: torch.dtype) -> int:
    """Turn the (already assigned, fp8-weighted) linears *names* of *model* into ``Fp8Linear``; returns the count."""
    for name in names:
        module = model.get_submodule(name)
        module.__class__ = Fp8Linear
        module.compute_dtype = compute_dtype  # type: ignore[assignment]
        module.storage_dtype = module.weight.dtype  # type: ignore[assignment]
    return len(names)


def fp8_linears(model: torch.nn.Module) -> list[Fp8Linear]:
    """The ``Fp8Linear`` modules of *model*."""
    return [m for m in model.modules() if isinstance(m, Fp8Linear)]


def parameter_bytes(model: torch.nn.Module) -> int:
    """Bytes held by *model*'s parameters and buffers (shared tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for t in (*model.parameters(), *model.buffers()):
        key = t.data_ptr() if t.device.type != "meta" else id(t)
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total
