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

ComfyUI's "scaled fp8" files (``flux1-dev-fp8_scaled.safetensors``, ``sd3.5_large_fp8_scaled.safetensors``,
``t5xxl_fp8_e4m3fn_scaled.safetensors``) store ``weight / scale`` in fp8 with the scale next to it
(``<module>.scale_weight``: one float32 per tensor; newer files ``<module>.weight_scale``, maybe one per row) so that
each matrix uses fp8's whole range. Such a linear stays an ``Fp8Linear`` too and keeps its scale as a float32 buffer
``scale_weight`` (shape ``[1, 1]`` or ``[rows, 1]``): the forward computes with ``weight.to(dtype) * scale``, the
multiplication done in float32 and rounded once to the compute dtype, which is exactly the weight the old
fold-at-load (``checkpoint_io.fold_fp8_scales``) would have produced in that dtype. ``scale_input`` (used by ComfyUI
only for fp8 x fp8 matrix products) is not needed for that and dropped. The loaders take the scales out of the state
dict (``pop_scales``), put them through the same key conversion as the weights (``convert_scales``: fused q/k/v split
by rows, so per-row scales split alike) and fold the scaled tensors they do not keep in fp8 (norms, embeddings,
linears outside the blocks) into the compute dtype (``fold``).

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
#: ComfyUI's scaled-fp8 files keep each weight's scale next to it under one of these names
SCALE_SUFFIXES = (".scale_weight", ".weight_scale")


def is_fp8(t: Any) -> bool:
    """True for a tensor stored in a float8 dtype."""
    return isinstance(t, torch.Tensor) and t.dtype in FP8_DTYPES


class Fp8Linear(torch.nn.Linear):
    """An ``nn.Linear`` whose weight is stored in fp8 and cast to the input's dtype for each forward call."""

    compute_dtype: torch.dtype
    storage_dtype: torch.dtype
    scale_weight: torch.Tensor | None  # a scaled-fp8 file's float32 scale, [1, 1] or [rows, 1]; None when unscaled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        weight = self.weight.to(x.dtype)
        if self.scale_weight is not None:  # float32 product, rounded once to x's dtype (in place: one temporary)
            weight = weight.mul_(self.scale_weight)
        return F.linear(x, weight, bias)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Fp8Linear:
        scale = self._buffers.pop("scale_weight", None)
        try:
            super()._apply(fn, recurse)
        finally:  # the scale follows the device but stays float32 (a bf16 scale would shift the whole matrix)
            self._buffers["scale_weight"] = None if scale is None else scale.to(fn(scale).device)
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


def to_fp8_linears(model: torch.nn.Module, names: set[str], compute_dtype: torch.dtype,
                   scales: dict[str, torch.Tensor] | None = None) -> int:
    """Turn the (already assigned, fp8-weighted) linears *names* of *model* into ``Fp8Linear``; returns the count.

    *scales* (``{"<name>.weight": float32 [1|rows, 1]}``, see ``pop_scales``) gives the scaled-fp8 ones their scale."""
    scales = scales or {}
    for name in names:
        module = model.get_submodule(name)
        module.__class__ = Fp8Linear
        module.compute_dtype = compute_dtype  # type: ignore[assignment]
        module.storage_dtype = module.weight.dtype  # type: ignore[assignment]
        scale = scales.get(name + ".weight")
        if scale is not None:
            scale = _compact(scale.to(device=module.weight.device, dtype=torch.float32))
        module.register_buffer("scale_weight", scale, persistent=False)  # not a weight of the file's layout
    return len(names)


# -- ComfyUI's scaled fp8 ---------------------------------------------------------------------------------------

def pop_scales(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Take the scales of *sd*'s scaled fp8 weights out of it: ``{"<module>.weight": float32 [rows, 1]}`` (a
    per-tensor scale is a stride-0 view, no copy). Scale keys next to a weight that is not fp8 are left alone.
    ``ValueError`` for a scale that is neither one value nor one per row."""
    out: dict[str, torch.Tensor] = {}
    for key in [k for k in sd if k.endswith(SCALE_SUFFIXES)]:
        weight_key = key.rsplit(".", 1)[0] + ".weight"
        weight = sd.get(weight_key)
        if not is_fp8(weight):
            continue
        scale = sd.pop(key).float().reshape(-1, 1)
        rows = int(weight.shape[0])
        if scale.shape[0] not in (1, rows):
            raise ValueError(f"{key}: {scale.shape[0]} scale values for a weight of {rows} rows")
        out[weight_key] = scale.expand(rows, 1)
    return out


def convert_scales(scales: dict[str, torch.Tensor],
                   convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """*scales* (``pop_scales``) under the names *convert* gives their weights: the converters split fused
    projections by rows and reorder rows, so ``[rows, 1]`` scales go through them as the weights do. A part whose
    rows share one value comes back as ``[1, 1]``."""
    return {key: _compact(scale) for key, scale in convert(scales).items()}


def _compact(scale: torch.Tensor) -> torch.Tensor:
    """*scale* as ``[rows, 1]``, or ``[1, 1]`` when every row has the same value (a per-tensor scale)."""
    scale = scale.reshape(-1, 1)
    return scale[:1].clone() if bool((scale == scale[:1]).all()) else scale.contiguous()


def fold(weight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``weight * scale`` in *dtype* (product in float32, rounded once): a scaled fp8 tensor that is not kept fp8."""
    scale = scale.to(weight.device).reshape(-1, *([1] * (weight.ndim - 1)))
    return (weight.float() * scale).to(dtype)


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
