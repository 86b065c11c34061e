"""Live previews without slowing sampling down much.

``show_progress_type``: "Full" decodes with the VAE; "TAESD" uses the tiny decoder from
``models/VAE-taesd`` when present; "Approx cheap" (and "Approx NN", whose model we do not ship)
is a fixed linear map from the 4 latent channels to RGB per family. With ``show_progress_grid``
the whole batch is shown as a grid, else its first image.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
from PIL import Image

from app.engine.plan import Plan
from app.engine.vae_io import decode

log = logging.getLogger(__name__)

# Linear latent → RGB factors (rows: latent channels, columns: R, G, B); well-known public values.
_SD1_FACTORS = (
    (0.298, 0.207, 0.208),
    (0.187, 0.286, 0.173),
    (-0.158, 0.189, 0.264),
    (-0.184, -0.271, -0.473),
)
_SDXL_FACTORS = (
    (0.3448, 0.4168, 0.4395),
    (-0.1953, -0.0290, 0.0250),
    (0.1074, 0.0886, -0.0163),
    (-0.3730, -0.2499, -0.2088),
)


def cheap_approximation(latents: torch.Tensor, family: str = "sd1") -> torch.Tensor:
    """[B,4,h,w] latents → [B,3,8h,8w] RGB in [0,1] (nearest upscaled to the image size)."""
    factors = _SDXL_FACTORS if str(family).startswith("sdxl") else _SD1_FACTORS
    coefs = torch.tensor(factors, dtype=torch.float32, device=latents.device)
    rgb = torch.einsum("blhw,lr->brhw", latents[:, : coefs.shape[0]].float(), coefs)
    rgb = ((rgb + 1) / 2).clamp(0, 1)
    return torch.nn.functional.interpolate(rgb, scale_factor=8, mode="nearest")


def _rgb(latents: torch.Tensor, plan: Plan) -> torch.Tensor:
    kind = str(plan.settings.get("show_progress_type", "Approx NN"))
    if kind == "Full":
        return decode(plan, latents)
    if kind == "TAESD" and plan.manager is not None and hasattr(plan.manager, "taesd"):
        decoder = plan.manager.taesd(plan.model)
        if decoder is not None:
            with torch.inference_mode():
                out = decoder.decode(latents.to(decoder.device, decoder.dtype)).sample.float()
            return (out / 2 + 0.5).clamp(0, 1)
    latent = plan.family.latent
    if latent.channels != 4 and latent.rgb_factors:
        return linear_preview(latents, latent.rgb_factors, latent.rgb_bias, latent.downscale)
    return cheap_approximation(latents, getattr(plan.model.loaded, "family", "sd1"))


def linear_preview(latents: torch.Tensor, factors: Any, bias: Any, downscale: int) -> torch.Tensor:
    """A family's linear latent → RGB map (``[-1, 1]`` output), nearest-upscaled to the image size."""
    coefs = torch.tensor(factors, dtype=torch.float32, device=latents.device)
    offset = torch.tensor(bias, dtype=torch.float32, device=latents.device).view(1, 3, 1, 1)
    rgb = torch.einsum("blhw,lr->brhw", latents[:, : coefs.shape[0]].float(), coefs) + offset
    rgb = ((rgb + 1) / 2).clamp(0, 1)
    return torch.nn.functional.interpolate(rgb, scale_factor=downscale, mode="nearest")


def preview_image(plan: Plan, latents: torch.Tensor) -> Image.Image | None:
    """The job's live preview of *latents*, or None when it cannot be made (never breaks the job)."""
    try:
        return latent_preview(latents, plan)
    except Exception as exc:  # a preview must never break the job
        log.debug("preview failed: %s", exc)
        return None


def latent_preview(latents: torch.Tensor, plan: Plan) -> Image.Image:
    """A PIL preview of the current latents of a batch."""
    batch = latents if plan.settings.get("show_progress_grid", True) else latents[:1]
    with torch.inference_mode():
        rgb = _rgb(batch, plan)
    arr = (255.0 * rgb.permute(0, 2, 3, 1).cpu().numpy()).astype(np.uint8)
    images = [Image.fromarray(a) for a in arr]
    if len(images) == 1:
        return images[0]
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h))
    for i, img in enumerate(images):
        grid.paste(img, (i % cols * w, i // cols * h))
    return grid
