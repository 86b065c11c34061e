"""Where a loaded model's weights live: on the compute device in the device policy's dtypes, under diffusers' CPU
offload (``--medvram`` / ``--lowvram``), or parked in RAM when the model stops being active.

Split out of ``app.models.manager``: the manager decides *which* model is active and cached; this module only moves
one pipeline's modules, so the device and dtype rules can be read (and changed) in one place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from app.devices import free_memory
from app.models.handle import ModelHandle

#: the pipeline attributes moved as a whole (the diffusion model, the VAE, the text encoders: SD3.5 has a third, T5)
PLACED_COMPONENTS = ("unet", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")


def components(pipe: Any) -> dict[str, torch.nn.Module]:
    """The pipeline's modules named in `PLACED_COMPONENTS` that exist (name → module)."""
    return {n: getattr(pipe, n) for n in PLACED_COMPONENTS if isinstance(getattr(pipe, n, None), torch.nn.Module)}


def place(handle: ModelHandle, policy: Any) -> None:
    """Move the model to the compute device in the policy's dtypes, or set up CPU offload (*policy*: a
    ``DevicePolicy``). A family that parks its text encoder keeps it on the CPU."""
    pipe = handle.loaded.pipe
    from app.devices import family_compute_dtype
    from app.families import family_of

    family = family_of(handle.loaded)
    device = policy.device
    offload = policy.offload_for(bool(getattr(handle.loaded, "is_sdxl", False)))
    comps = components(pipe)
    compute_dtype = family_compute_dtype(policy.dtype, family.half_dtype, device)
    for name, module in comps.items():
        dtype = policy.vae_dtype if name == "vae" else compute_dtype
        if name == "vae" and handle.vae_fp32:
            dtype = torch.float32
        if getattr(module, "dtype", dtype) != dtype:
            module.to(dtype=dtype)
    if device.type == "cpu" or offload == "none":
        for name, module in comps.items():
            parked = family.offload_text_encoder and name.startswith("text_encoder")
            module.to("cpu" if parked else device)  # a parked encoder visits the GPU only to encode
    elif offload == "medvram":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.enable_sequential_cpu_offload(device=device)
    handle.offload = offload if device.type != "cpu" else "none"


def move_off_device(handle: ModelHandle, policy: Any) -> None:
    """Move a model that is no longer active off the GPU (nothing to do on a CPU policy)."""
    if policy.device.type == "cpu":
        return
    pipe = handle.loaded.pipe
    if handle.offload != "none" and hasattr(pipe, "remove_all_hooks"):
        pipe.remove_all_hooks()
    for module in components(pipe).values():
        module.to("cpu")
    handle.offload = "none"
    free_memory()


@contextlib.contextmanager
def weights_editable(handle: ModelHandle, policy: Any, *, active: bool) -> Iterator[None]:
    """Offload hooks (sequential offload keeps weights off the modules) are removed while weights are replaced,
    then set up again; a model without offload, or not the *active* one, is edited as it is."""
    if handle.offload == "none" or not active:
        yield
        return
    pipe = handle.loaded.pipe
    pipe.remove_all_hooks()
    handle.offload = "none"
    try:
        yield
    finally:
        place(handle, policy)
