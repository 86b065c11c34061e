"""``modules.masking`` (and ``processing.create_binary_mask``): mask helpers over the inpainting code of
``app.engine.modes.inpaint`` - crop region of a mask, growing it to an aspect ratio, filling masked pixels."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from app.engine.modes.inpaint import binary_mask, expand_crop_region, fill_masked, mask_crop_region

__all__ = ["create_binary_mask", "expand_crop_region", "fill", "get_crop_region", "get_crop_region_v2"]


def _as_image(mask: Any) -> Image.Image:
    return mask if isinstance(mask, Image.Image) else Image.fromarray(np.asarray(mask).astype(np.uint8))


def get_crop_region_v2(mask: Any, pad: int = 0) -> tuple[int, int, int, int] | None:
    """``(x1, y1, x2, y2)`` around the non-zero pixels grown by ``pad`` (clipped); None for a blank mask."""
    return mask_crop_region(_as_image(mask), int(pad))


def get_crop_region(mask: Any, pad: int = 0) -> tuple[int, int, int, int]:
    """As ``get_crop_region_v2``; a blank mask gives the whole image (A1111 returns an empty, inverted box
    there, which its callers treat as "nothing to crop")."""
    image = _as_image(mask)
    return get_crop_region_v2(image, pad) or (0, 0, image.width, image.height)


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The image with its masked area replaced by the surrounding colours ("fill" masked content)."""
    return fill_masked(image, mask)


def create_binary_mask(image: Image.Image, round: bool = True) -> Image.Image:  # noqa: A002 - A1111's name
    """An "L" mask: the alpha channel of a brush image (thresholded at 128 when ``round``), else the grey image."""
    return binary_mask(image, round_mask=round)
