"""Speed options applied to a loaded pipeline (settings section "Optimizations").

``apply_optimisations(pipe, settings)`` is called by the model manager after a checkpoint is loaded
and whenever it is asked to re-apply (a changed setting). Everything here keeps the images identical
except where a setting says otherwise:

- ``cross_attention_optimization``: "Automatic", "sdp", "sdp-no-mem" (and the A1111 names that have
  no separate implementation here: "sub-quadratic", "Doggettx", "InvokeAI", "xformers") use
  PyTorch's ``scaled_dot_product_attention`` (diffusers ``AttnProcessor2_0``, the default of a
  fresh model); "None" uses the plain matmul/softmax attention (``AttnProcessor``: more memory,
  same maths). Modules with other processors (LoRA/IP-Adapter style) are left alone.
- ``torch_compile`` (off by default): ``unet.compile()`` (``torch.compile`` in place, so module
  hooks and identity stay). The first generation at a new size is slow (compilation); later ones are
  faster on a GPU; on a CPU the gain is small and a C++ compiler is needed.
- ``channels_last`` (not a built-in setting; pass it in *overrides*): UNet weights in NHWC memory
  format. Measured on this CPU it did not help (see docs/BENCHMARKS.md), so it is off unless asked.

Token merging settings exist in the options list but are not implemented; they are reported as such
(``report["unsupported"]``) and never change the output silently. DeepCache (``deepcache_enabled``) is
applied per sampling run by ``app.engine.sampling.deepcache`` (see there), not here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from typing import Any

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

log = logging.getLogger(__name__)

SDPA_CHOICES = ("Automatic", "sdp", "sdp-no-mem", "sub-quadratic", "Doggettx", "InvokeAI", "xformers")
_NOT_IMPLEMENTED = ("token_merging_ratio", "token_merging_ratio_img2img", "token_merging_ratio_hr")


def _get(settings: Any, overrides: dict[str, Any], key: str, default: Any) -> Any:
    if key in overrides:
        return overrides[key]
    if settings is None or not hasattr(settings, "get"):
        return default
    value = settings.get(key)
    return default if value is None else value


def attention_processor_class(choice: str) -> type:
    """The diffusers processor class for a ``cross_attention_optimization`` value."""
    if choice == "None":
        return AttnProcessor
    if choice in SDPA_CHOICES:
        return AttnProcessor2_0
    raise ValueError(
        f"cross_attention_optimization: unknown value {choice!r}; expected one of {', '.join(SDPA_CHOICES + ('None',))}"
    )


def set_attention(module: torch.nn.Module, choice: str) -> int:
    """Give every plain-attention ``Attention`` of *module* the processor for *choice*; returns how many changed."""
    cls = attention_processor_class(choice)
    changed = 0
    for sub in module.modules():
        if not isinstance(sub, Attention):
            continue
        current = sub.processor
        if type(current) is cls or type(current) not in (AttnProcessor, AttnProcessor2_0):
            continue  # already right, or a special processor (LoRA, IP-Adapter, ...) that we must keep
        sub.set_processor(cls())
        changed += 1
    return changed


def attention_summary(module: torch.nn.Module) -> dict[str, int]:
    """``{processor class name: count}`` over the ``Attention`` modules of *module*."""
    out: dict[str, int] = {}
    for sub in module.modules():
        if isinstance(sub, Attention):
            name = type(sub.processor).__name__
            out[name] = out.get(name, 0) + 1
    return out


def apply_optimisations(pipe: Any, settings: Any = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Apply the optimisation settings to *pipe* (see module doc); returns what was done."""
    overrides = dict(overrides or {})
    report: dict[str, Any] = {"unsupported": []}
    choice = str(_get(settings, overrides, "cross_attention_optimization", "Automatic") or "Automatic")
    changed = 0
    for name in ("unet", "vae"):
        module = getattr(pipe, name, None)
        if isinstance(module, torch.nn.Module):
            changed += set_attention(module, choice)
    report["attention"] = attention_processor_class(choice).__name__
    report["attention_changed"] = changed
    unet = getattr(pipe, "unet", None)
    if isinstance(unet, torch.nn.Module):
        if bool(_get(settings, overrides, "channels_last", False)):
            unet.to(memory_format=torch.channels_last)
            report["channels_last"] = True
        if bool(_get(settings, overrides, "torch_compile", False)):
            if getattr(unet, "_compiled_call_impl", None) is None:
                unet.compile()
            report["torch_compile"] = True
        elif getattr(unet, "_compiled_call_impl", None) is not None:
            unet._compiled_call_impl = None  # setting turned off: back to eager
            report["torch_compile"] = False
    for key in _NOT_IMPLEMENTED:
        if _get(settings, overrides, key, 0):
            report["unsupported"].append(key)
    if report["unsupported"]:
        log.warning(
            "optimisation settings without an implementation are ignored (images unchanged): %s",
            ", ".join(report["unsupported"]),
        )
    return report


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -2, -4, -8
_ALLOCATOR_TUNED: list[bool] = []


def tune_allocator(keep_bytes: int = 2 << 30) -> bool:
    """Keep freed tensor memory in the process instead of returning it to the OS after every step (glibc only).

    Large tensors are normally ``mmap``-ed and unmapped on free, and the job worker thread gets its own
    malloc arena whose heaps are trimmed, so every step faults its activation pages in again: measured
    ~950k page faults and ~2 s of kernel time per SD1.5 256² job (+9 % CPU) in the worker against ~0 with
    this. One arena, no ``mmap`` for tensors, and up to *keep_bytes* of free memory kept at the top of
    the heap. Peak RSS is unchanged; RSS stays near the peak between jobs. Call once, early, before the
    worker thread starts. Returns True when applied; ``ATELIER_MALLOC_TUNING=0`` turns it off.
    """
    if _ALLOCATOR_TUNED:
        return _ALLOCATOR_TUNED[0]
    applied = False
    if sys.platform.startswith("linux") and os.environ.get("ATELIER_MALLOC_TUNING", "1") != "0":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            keep = int(min(max(keep_bytes, 0), 2**31 - 1))
            applied = all(
                mallopt(param, value) == 1
                for param, value in (
                    (_M_ARENA_MAX, 1),
                    (_M_MMAP_MAX, 0),
                    (_M_TRIM_THRESHOLD, keep),
                    (_M_TOP_PAD, 64 << 20),
                )
            )
        except (OSError, AttributeError) as exc:  # not glibc (musl, macOS): nothing to tune
            log.debug("malloc tuning not available: %s", exc)
    _ALLOCATOR_TUNED.append(applied)
    return applied
