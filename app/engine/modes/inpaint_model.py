"""The extra network input of inpainting models (SD's 9-channel UNets, FLUX.1 Fill): the mask and the latents of the
image with the masked pixels grey, in the family's channel layout (``Family.inpaint_channels``).

- img2img / inpaint: the job's mask (a full one without a mask, as A1111: the model then repaints everything).
- txt2img and its hires pass (A1111's ``txt2img_image_conditioning``): the whole picture is masked and the masked image is
  uniform grey, so the model draws freely. Without this an inpainting model cannot run txt2img at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from app.engine.denoise import Inpainting
from app.engine.modes import inpaint as ip
from app.engine.vae_io import encode_pixels


def is_inpainting_model(plan: Any) -> bool:
    return bool(getattr(plan.model.loaded, "is_inpainting", False))


def model_channels(plan: Any, images: list[Image.Image], mask: Image.Image, weight: float, round_mask: bool,
                   device: torch.device) -> torch.Tensor:
    """The extra channels for *images* (processing size) under the "L" *mask* (255 = regenerate)."""
    masked = np.stack([ip.masked_pixels(im, mask, weight, round_mask) for im in images])
    latents = encode_pixels(plan, torch.from_numpy(masked).permute(0, 3, 1, 2)).float().to(device)
    m = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
    if round_mask:
        m = np.around(m)
    pixel_mask = torch.from_numpy(m)[None, None].expand(len(images), 1, *m.shape).to(latents)
    return plan.family.inpaint_channels(pixel_mask, latents)


def whole_picture(plan: Any, batch: int, width: int, height: int, device: torch.device) -> Inpainting | None:
    """txt2img on an inpainting model: everything masked, a grey masked image (None for other models)."""
    if not is_inpainting_model(plan):
        return None
    grey = Image.new("RGB", (width, height), (128, 128, 128))
    full = Image.new("L", (width, height), 255)
    extra = model_channels(plan, [grey] * batch, full, 1.0, True, device)
    return Inpainting(mask=None, unet_extra_channels=extra, blend=False)
