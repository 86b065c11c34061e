"""Live previews: a cheap latent → RGB approximation (no VAE decode).

A fixed linear map from the 4 latent channels to RGB per family ("Approx cheap"), or a TAESD
decoder when the model manager provides one (``models/VAE-taesd``, setting
``show_progress_type`` = "TAESD").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

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
    """[B,4,h,w] latents → [B,3,h,w] RGB in [0,1]."""
    factors = _SDXL_FACTORS if str(family).startswith("sdxl") else _SD1_FACTORS
    coefs = torch.tensor(factors, dtype=torch.float32, device=latents.device)
    x = latents[:, : coefs.shape[0]].float()
    rgb = torch.einsum("blhw,lr->brhw", x, coefs)
    return ((rgb + 1) / 2).clamp(0, 1)


def latent_preview(latents: torch.Tensor, model: Any = None, settings: Any = None):
    """A PIL preview of the first image of the batch (upscaled ×8 so it has the image's size)."""
    from PIL import Image

    family = getattr(getattr(model, "loaded", model), "family", "sd1") if model is not None else "sd1"
    decoder = None
    kind = settings.get("show_progress_type", "Approx cheap") if settings is not None else "Approx cheap"
    if kind == "TAESD" and model is not None:
        decoder = getattr(model, "taesd", None)
    with torch.inference_mode():
        if decoder is not None:
            img = decoder.decode(latents[:1].to(decoder.device, decoder.dtype)).sample.float()
            rgb = (img / 2 + 0.5).clamp(0, 1)
        else:
            rgb = cheap_approximation(latents[:1], family)
    arr = (255.0 * rgb[0].permute(1, 2, 0).cpu().numpy()).astype(np.uint8)
    image = Image.fromarray(arr)
    if decoder is None:
        image = image.resize((image.width * 8, image.height * 8), Image.Resampling.NEAREST)
    return image
