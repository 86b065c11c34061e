"""Apply network weight deltas in place and restore the exact original tensors.

``ModelPatch`` belongs to one pipeline (found through ``patch_for(unet)``, one per UNet object). Before
a module is first changed its ``weight`` / ``bias`` are copied to the CPU; ``apply`` writes
``(original in float32 + Σ deltas)`` cast back to the parameter's dtype, and ``restore`` copies the
backups back bit for bit and forgets them. Only parameter *data* is modified (no module is replaced,
no forward is wrapped), so whatever runs the model sees ordinary weights. The exception is a module whose weight is
quantized (a GGUF linear) or stored in fp8: its delta is added in the forward pass by a hook (``forward_delta``),
removed on restore.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from app.models.lora.forward_delta import attach_delta, dequantized_weight, is_quantized
from app.models.lora.network import NetworkError


@dataclass
class Delta:
    """One network's contribution to one module, already multiplied by its multiplier."""

    module: torch.nn.Module
    weight: torch.Tensor | None
    bias: torch.Tensor | None = None


class ModelPatch:
    """Backups and the applied signature of one model (see module doc)."""

    def __init__(self) -> None:
        self.signature: Hashable | None = None  # what is applied now (None: the original weights)
        self.info: Any = None  # the caller's record of what is applied (cleared on restore)
        self._backups: dict[int, tuple[torch.nn.Module, torch.Tensor, torch.Tensor | None]] = {}
        self._hooks: list[Any] = []  # forward-delta hooks of quantized modules
        self.lock = threading.RLock()

    @property
    def patched_modules(self) -> int:
        return len(self._backups) + len(self._hooks)

    def original_weight(self, module: torch.nn.Module) -> torch.Tensor:
        """The module's weight before any patch (a CPU copy when it is patched now; dequantized when quantized)."""
        if is_quantized(module):
            return dequantized_weight(module)
        saved = self._backups.get(id(module))
        return saved[1] if saved is not None else module.weight.detach()

    def _backup(self, module: torch.nn.Module) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor | None]:
        saved = self._backups.get(id(module))
        if saved is None:
            weight = module.weight
            if weight.device.type == "meta":
                raise NetworkError(
                    "LoRA weights cannot be patched while the model is sequentially offloaded (--lowvram): "
                    "its weights are not resident"
                )
            bias = getattr(module, "bias", None)
            saved = (
                module,
                weight.detach().to("cpu", copy=True),
                bias.detach().to("cpu", copy=True) if isinstance(bias, torch.Tensor) else None,
            )
            self._backups[id(module)] = saved
        return saved

    def apply(self, deltas: Iterable[Delta], signature: Hashable) -> int:
        """Restore, then add every delta (summed per module); returns the number of modules changed.

        On any error the model is restored before the exception propagates.
        """
        with self.lock:
            self.restore()
            grouped: dict[int, list[Delta]] = {}
            for d in deltas:
                grouped.setdefault(id(d.module), []).append(d)
            try:
                with torch.no_grad():
                    for items in grouped.values():
                        total_w = None
                        total_b = None
                        for d in items:
                            if d.weight is not None:
                                total_w = d.weight if total_w is None else total_w + d.weight
                            if d.bias is not None:
                                total_b = d.bias if total_b is None else total_b + d.bias
                        if is_quantized(items[0].module):  # blocks cannot take a delta: add it in the forward pass
                            self._hooks.append(attach_delta(items[0].module, total_w, total_b))
                            continue
                        module, orig_w, orig_b = self._backup(items[0].module)
                        if total_w is not None:
                            self._write(module.weight, orig_w, total_w)
                        if total_b is not None:
                            if orig_b is None:
                                raise NetworkError(
                                    f"a network changes the bias of a module without bias ({type(module).__name__})"
                                )
                            self._write(module.bias, orig_b, total_b)
            except BaseException:
                self.restore()
                raise
            self.signature = signature if grouped else None
            return len(grouped)

    @staticmethod
    def _write(param: torch.Tensor, original: torch.Tensor, delta: torch.Tensor) -> None:
        if delta.shape != original.shape:
            raise NetworkError(f"update shape {tuple(delta.shape)} does not match weight {tuple(original.shape)}")
        merged = original.to(torch.float32) + delta.to(torch.float32)
        param.data.copy_(merged.to(param.dtype))

    def restore(self) -> None:
        """Put every patched module's original tensors back (bit-exact) and forget the backups."""
        with self.lock:
            with torch.no_grad():
                for module, weight, bias in self._backups.values():
                    module.weight.data.copy_(weight)
                    if bias is not None:
                        module.bias.data.copy_(bias)
            self._backups.clear()
            for handle in self._hooks:
                handle.remove()
            self._hooks.clear()
            self.signature = None
            self.info = None


_PATCHES: weakref.WeakKeyDictionary[torch.nn.Module, ModelPatch] = weakref.WeakKeyDictionary()
_PATCHES_LOCK = threading.Lock()


def patch_for(unet: torch.nn.Module) -> ModelPatch:
    """The ``ModelPatch`` of the pipeline owning *unet* (created on first use)."""
    with _PATCHES_LOCK:
        patch = _PATCHES.get(unet)
        if patch is None:
            patch = _PATCHES[unet] = ModelPatch()
        return patch
