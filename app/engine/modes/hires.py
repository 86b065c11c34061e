"""Hires fix: target size, latent / image upscaling and the second (img2img-like) pass.

Target size (spec §7.2): with no resize values, ``int(w*scale) x int(h*scale)``; one resize value
keeps the aspect; both → scale to cover, then crop the latent centrally (``truncate_x/y`` latent
pixels). The second pass always runs exactly ``hires steps`` (or the base steps when 0) out of a
schedule of ``int(steps / min(denoise, 0.999))`` (A1111's fixed-steps img2img rule, spec §6.3).
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from app.engine.image import upscalers
from app.engine.modes.hires_size import HiresTarget, hires_target  # noqa: F401 - re-exported: the pass and tests use them from here
from app.engine.rng import img2img_schedule

#: Latent upscale modes: name → (torch interpolate mode, antialias).
LATENT_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
PIL_UPSCALERS = upscalers.PIL_UPSCALERS
available_upscalers = upscalers.hires_upscaler_names  # the names live with the registry (torch-free)


def is_latent_mode(name: str) -> bool:
    return name in LATENT_MODES


def upscale_latents(latents: torch.Tensor, mode: str, width: int, height: int, latent_factor: int = 8) -> torch.Tensor:
    """Resize latents to the latent size of ``width x height`` with a ``Latent (...)`` mode."""
    if mode not in LATENT_MODES:
        raise ValueError(f"unknown latent upscale mode {mode!r}; valid: {', '.join(LATENT_MODES)}")
    interp, antialias = LATENT_MODES[mode]
    size = (height // latent_factor, width // latent_factor)
    kwargs: dict[str, Any] = {"mode": interp}
    if interp in ("bilinear", "bicubic"):
        kwargs["antialias"] = antialias
        kwargs["align_corners"] = False
    return torch.nn.functional.interpolate(latents.float(), size=size, **kwargs).to(latents.dtype)


def crop_latents(latents: torch.Tensor, target: HiresTarget) -> torch.Tensor:
    """Crop ``truncate_x/y`` latent pixels centrally (both resize values set)."""
    ty, tx = target.truncate_y, target.truncate_x
    if not tx and not ty:
        return latents
    h, w = latents.shape[-2:]
    return latents[..., ty // 2 : h - (ty + 1) // 2, tx // 2 : w - (tx + 1) // 2]


def upscale_image(image, name: str, width: int, height: int, registry: upscalers.UpscalerRegistry | None = None):
    """Upscale a PIL image to exactly ``width x height`` with the named upscaler (of *registry* for model files)."""
    if name in ("Lanczos", "Nearest", "None", ""):
        resample = Image.Resampling.NEAREST if name == "Nearest" else Image.Resampling.LANCZOS
        return image.resize((width, height), resample=resample)
    if registry is None or name not in available_upscalers(registry):
        raise ValueError(
            f"hires upscaler {name!r} is not available; choose one of {', '.join(available_upscalers(registry))}"
        )
    scale = max(width / image.width, height / image.height)
    upscaled = registry.upscale(image, name, scale)
    if upscaled.size != (width, height):
        upscaled = upscaled.resize((width, height), resample=Image.Resampling.LANCZOS)
    return upscaled


def hires_steps(base_steps: int, hr_steps: int, denoising_strength: float):
    """``(total, start_step, run_steps)`` of the hires pass (exactly hr_steps, or base steps when 0)."""
    sched = img2img_schedule(hr_steps or base_steps, denoising_strength, fix_steps=True)
    return sched.total_steps, sched.start_index, sched.run_steps
