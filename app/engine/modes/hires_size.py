"""Hires fix target size (spec §7.2), pure: the UI's "from WxH to WxH" label uses it in the server process (no
torch), the hires pass (`app.engine.modes.hires`) on the generation side."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HiresTarget", "hires_target"]


@dataclass(frozen=True)
class HiresTarget:
    width: int  # size the first-pass result is upscaled to (before the crop)
    height: int
    truncate_x: int = 0  # latent pixels cropped in total (half each side)
    truncate_y: int = 0

    @property
    def final_width(self) -> int:
        return self.width - self.truncate_x * 8

    @property
    def final_height(self) -> int:
        return self.height - self.truncate_y * 8


def hires_target(width: int, height: int, scale: float, resize_x: int = 0, resize_y: int = 0, latent_factor: int = 8) -> HiresTarget:
    """The hires-fix target size for a ``width x height`` first pass (spec §7.2)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"first-pass size must be positive, got {width}x{height}")
    if resize_x < 0 or resize_y < 0:
        raise ValueError(f"hires resize values must be >= 0, got {resize_x}x{resize_y}")
    if resize_x == 0 and resize_y == 0:
        if scale <= 0:
            raise ValueError(f"hires upscale factor must be > 0, got {scale}")
        return HiresTarget(int(width * scale), int(height * scale))
    if resize_y == 0:
        return HiresTarget(resize_x, resize_x * height // width)
    if resize_x == 0:
        return HiresTarget(resize_y * width // height, resize_y)
    if width / height < resize_x / resize_y:
        x, y = resize_x, resize_x * height // width
    else:
        x, y = resize_y * width // height, resize_y
    return HiresTarget(x, y, (x - resize_x) // latent_factor, (y - resize_y) // latent_factor)
