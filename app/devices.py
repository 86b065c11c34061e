"""Device and precision policy from the flags: where the model runs and in which dtype.

`DevicePolicy.from_args(args)` probes torch when called (never at import): CUDA (honouring `--device-id`), else
Apple MPS, else CPU. `--use-cpu all` forces the CPU. Weights are fp16 on a GPU unless `--no-half` or
`--precision full`; the VAE is fp32 with `--no-half-vae`; everything is fp32 on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: `--use-cpu` values that move image generation to the CPU (A1111 accepts task names; "sd" is generation).
CPU_TASKS_FOR_GENERATION = ("all", "sd")


@dataclass(frozen=True)
class DevicePolicy:
    device: torch.device
    dtype: torch.dtype
    vae_dtype: torch.dtype
    #: "none" | "medvram" | "lowvram": how aggressively the model manager offloads weights to the CPU.
    offload: str = "none"
    #: Sample in fp32 while the model runs in fp16 (`--upcast-sampling`).
    upcast_sampling: bool = False
    #: `--medvram-sdxl`: use "medvram" only for SDXL models.
    offload_sdxl_only: bool = False

    @property
    def is_gpu(self) -> bool:
        return self.device.type in ("cuda", "mps")

    def offload_for(self, is_sdxl: bool) -> str:
        """The offload mode for a model (`--medvram-sdxl` applies only to SDXL)."""
        if self.offload == "none" and self.offload_sdxl_only and is_sdxl:
            return "medvram"
        return self.offload

    def describe(self) -> str:
        name = str(self.device)
        if self.device.type == "cuda":
            import torch

            try:
                name += f" ({torch.cuda.get_device_name(self.device)})"
            except Exception:  # a broken driver must not stop the description
                pass
        return (f"device {name}, dtype {str(self.dtype).removeprefix('torch.')}, "
                f"VAE {str(self.vae_dtype).removeprefix('torch.')}, offload {self.offload}")

    @classmethod
    def cpu(cls) -> DevicePolicy:
        import torch

        return cls(device=torch.device("cpu"), dtype=torch.float32, vae_dtype=torch.float32)

    @classmethod
    def from_args(cls, args: argparse.Namespace | Any) -> DevicePolicy:
        """Choose the device and dtypes for the parsed flags (imports and probes torch now)."""
        import torch

        device = _pick_device(torch, args)
        on_gpu = device.type in ("cuda", "mps")
        full = bool(getattr(args, "no_half", False)) or getattr(args, "precision", "autocast") == "full"
        dtype = torch.float16 if on_gpu and not full else torch.float32
        vae_full = full or bool(getattr(args, "no_half_vae", False))
        vae_dtype = torch.float16 if on_gpu and not vae_full else torch.float32
        if getattr(args, "lowvram", False):
            offload = "lowvram"
        elif getattr(args, "medvram", False):
            offload = "medvram"
        else:
            offload = "none"
        return cls(
            device=device,
            dtype=dtype,
            vae_dtype=vae_dtype,
            offload=offload if on_gpu else "none",
            upcast_sampling=bool(getattr(args, "upcast_sampling", False)) and dtype == torch.float16,
            offload_sdxl_only=bool(getattr(args, "medvram_sdxl", False)) and on_gpu,
        )


def _pick_device(torch: Any, args: Any) -> torch.device:
    use_cpu = [str(v).lower() for v in (getattr(args, "use_cpu", None) or [])]
    if any(v in CPU_TASKS_FOR_GENERATION for v in use_cpu):
        return torch.device("cpu")
    if torch.cuda.is_available():
        device_id = getattr(args, "device_id", None)
        if device_id not in (None, ""):
            index = int(device_id)
            count = torch.cuda.device_count()
            if not 0 <= index < count:
                raise ValueError(f"--device-id {device_id}: there are {count} CUDA device(s) (0..{count - 1})")
            return torch.device("cuda", index)
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def free_memory() -> None:
    """Collect garbage and free cached accelerator memory (no-op for torch when it was never imported, or without
    CUDA): after a failed job, and `modules.devices.torch_gc()` for extensions."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def execution_device(module: Any) -> Any:
    """The device a module computes on. Under sequential CPU offload (``--lowvram``) its weights sit
    on the ``meta`` device between calls and accelerate's hooks bring them to the hook's
    execution device for each forward, so the parameters' device is not where inputs belong."""
    import torch

    for sub in module.modules():
        device = getattr(getattr(sub, "_hf_hook", None), "execution_device", None)
        if device is not None:
            return torch.device(device) if not isinstance(device, int) else torch.device("cuda", device)
    device = getattr(module, "device", None)
    if device is None:
        device = next(module.parameters()).device
    return device


def family_compute_dtype(dtype: Any, half: str, device: Any) -> Any:
    """The compute dtype for a model family: where the policy says fp16, a family trained in bf16 (its
    ``half_dtype``) computes in bf16 if the device has it (fp16 overflows those DiTs and their LLM encoders)."""
    import torch

    if dtype != torch.float16 or half != "bfloat16":
        return dtype
    if torch.device(device).type == "cuda" and not torch.cuda.is_bf16_supported():
        return dtype
    return torch.bfloat16


@contextlib.contextmanager
def visiting(module: Any, target: Any) -> Iterator[Any]:
    """The device to run ``module`` on for one call. A module parked in CPU memory (a large text encoder on a GPU
    machine) visits ``target`` for the call and goes back after it; otherwise it stays where it is."""
    import torch

    device = execution_device(module)
    if target is None or device.type != "cpu" or torch.device(target).type == "cpu":
        yield device
        return
    module.to(target)
    try:
        yield torch.device(target)
    finally:
        module.to("cpu")
