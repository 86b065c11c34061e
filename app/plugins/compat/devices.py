"""``modules.devices``: ``torch_gc()`` and the device names extensions read."""

from __future__ import annotations

from typing import Any

from app.devices import free_memory

cpu = "cpu"


def torch_gc() -> None:
    """Free cached accelerator memory (no-op without torch or CUDA)."""
    free_memory()


def __getattr__(name: str) -> Any:
    if name in ("device", "device_unet", "device_vae", "dtype", "dtype_vae", "dtype_unet"):
        from app.plugins.compat.shared import _runtime

        policy = getattr(_runtime(), "devices", None)
        if policy is None:
            return "cpu" if name.startswith("device") else None
        if name.startswith("device"):
            return policy.device
        return policy.vae_dtype if name == "dtype_vae" else policy.dtype
    raise AttributeError(f"module 'modules.devices' has no attribute {name!r}")


class NansException(Exception):  # noqa: N818 - A1111's name
    """A1111 raises it when a model produced NaNs; extensions catch it around ``process_images`` (ADetailer).
    Atelier's engine reports NaNs with its own error, so this is never raised here."""
