"""The img2img resize modes (spec §7.3) and the "Resize to / Resize by" target size.

0 ``Just resize``: stretch to ``width x height``.
1 ``Crop and resize``: keep the aspect, cover the target, crop the centre.
2 ``Resize and fill``: keep the aspect, fit inside, centre, and fill the borders by stretching
  the outermost rows/columns of the resized image.
3 ``Just resize (latent upscale)``: the image is encoded at its own size and the *latent* is
  resized bilinearly (done by ``app.engine.modes.img2img``); for pixel images (masks) it acts like mode 0.

Pixel resizing uses Lanczos; when an ``upscaler`` name is given (setting ``upscaler_for_img2img``)
and the image must grow, it is first upscaled with that upscaler of the given ``UpscalerRegistry``.
PIL only at import time (no torch).
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from app.engine.image import upscalers
from app.params import RESIZE_MODES

JUST_RESIZE, CROP_AND_RESIZE, RESIZE_AND_FILL, LATENT_RESIZE = range(4)


class ImageInputError(ValueError):
    """A bad image input (not an image, wrong size, too large, blank mask...), with a precise message."""


def resize_mode_index(mode: int | str) -> int:
    """A resize mode as its index; accepts the index or the A1111 name."""
    if isinstance(mode, str):
        if mode in RESIZE_MODES:
            return RESIZE_MODES.index(mode)
        try:
            mode = int(mode)
        except ValueError:
            raise ImageInputError(f"resize_mode: unknown mode {mode!r}; valid: {', '.join(RESIZE_MODES)}") from None
    if isinstance(mode, bool) or not 0 <= int(mode) < len(RESIZE_MODES):
        raise ImageInputError(f"resize_mode must be 0..{len(RESIZE_MODES) - 1} ({', '.join(RESIZE_MODES)}), got {mode!r}")
    return int(mode)


def target_size(image_size: tuple[int, int], width: int, height: int, scale_by: float | None = None) -> tuple[int, int]:
    """``Resize to`` gives ``width x height``; ``Resize by`` gives ``int(w*scale) x int(h*scale)``.

    Both are floored to multiples of 8 (like the rest of the engine).
    """
    if scale_by is not None:
        if not scale_by > 0:
            raise ImageInputError(f"scale_by must be > 0, got {scale_by}")
        width, height = int(image_size[0] * scale_by), int(image_size[1] * scale_by)
    width, height = int(width) // 8 * 8, int(height) // 8 * 8
    if width < 8 or height < 8:
        raise ImageInputError(f"the img2img size must be at least 8x8, got {width}x{height}")
    return width, height


def _plain_resize(image: Image.Image, width: int, height: int, upscaler: str | None,
                  registry: upscalers.UpscalerRegistry | None) -> Image.Image:
    if (image.width, image.height) == (width, height):
        return image.copy()
    if upscaler and upscaler != "None" and image.mode != "L":
        scale = max(width / image.width, height / image.height)
        if scale > 1.0:
            image = (registry or upscalers.UpscalerRegistry()).upscale(image, upscaler, scale)
    if (image.width, image.height) != (width, height):
        image = image.resize((width, height), resample=Image.Resampling.LANCZOS)
    return image


def _canvas(image: Image.Image, width: int, height: int) -> Image.Image:
    mode = image.mode if image.mode in ("L", "RGB", "RGBA") else "RGB"
    return Image.new(mode, (width, height))


def resize_image(mode: int | str, image: Image.Image, width: int, height: int, upscaler: str | None = None,
                 registry: upscalers.UpscalerRegistry | None = None) -> Image.Image:
    """Resize ``image`` to exactly ``width x height`` with resize *mode* (index or name); *upscaler* is looked up in
    *registry* (the job's model manager's ``upscalers``; None: the built-in upscalers only)."""
    index = resize_mode_index(mode)
    if width < 1 or height < 1:
        raise ImageInputError(f"target size must be positive, got {width}x{height}")
    if index in (JUST_RESIZE, LATENT_RESIZE):
        return _plain_resize(image, width, height, upscaler, registry)
    ratio, src_ratio = width / height, image.width / image.height
    if index == CROP_AND_RESIZE:
        cover_w = ratio > src_ratio
        src_w = width if cover_w else image.width * height // image.height
        src_h = height if not cover_w else image.height * width // image.width
    else:
        fit_w = ratio < src_ratio
        src_w = width if fit_w else image.width * height // image.height
        src_h = height if not fit_w else image.height * width // image.width
    src_w, src_h = max(1, src_w), max(1, src_h)
    resized = _plain_resize(image, src_w, src_h, upscaler, registry)
    out = _canvas(resized, width, height)
    left, top = width // 2 - src_w // 2, height // 2 - src_h // 2
    out.paste(resized.convert(out.mode), (left, top))
    if index == RESIZE_AND_FILL:
        _fill_borders(out, resized.convert(out.mode), left, top)
    return out


def _fill_borders(out: Image.Image, resized: Image.Image, left: int, top: int) -> None:
    """Stretch the first/last row (or column) of *resized* over the empty bands around it."""
    width, height = out.size
    rw, rh = resized.size
    if top > 0:
        first = resized.crop((0, 0, rw, 1)).resize((width, top), Image.Resampling.NEAREST)
        out.paste(first, (0, 0))
    bottom = height - (top + rh)
    if bottom > 0:
        last = resized.crop((0, rh - 1, rw, rh)).resize((width, bottom), Image.Resampling.NEAREST)
        out.paste(last, (0, top + rh))
    if left > 0:
        first = resized.crop((0, 0, 1, rh)).resize((left, height), Image.Resampling.NEAREST)
        out.paste(first, (0, 0))
    right = width - (left + rw)
    if right > 0:
        last = resized.crop((rw - 1, 0, rw, rh)).resize((right, height), Image.Resampling.NEAREST)
        out.paste(last, (left + rw, 0))


def flatten(image: Image.Image, background: str = "#ffffff") -> Image.Image:
    """RGB image; transparent parts are composited over *background* (setting img2img_background_color)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        try:
            base = Image.new("RGBA", rgba.size, background or "#ffffff")
        except ValueError:
            base = Image.new("RGBA", rgba.size, "#ffffff")
        base.alpha_composite(rgba)
        return base.convert("RGB")
    return image.convert("RGB")


def check_image(image: Any, what: str, max_megapixels: float | None = None) -> Image.Image:
    """*image* as a loaded PIL image, or ``ImageInputError`` naming *what* is wrong with it."""
    if not isinstance(image, Image.Image):
        raise ImageInputError(f"{what}: expected an image, got {type(image).__name__}")
    try:
        image.load()
    except (OSError, ValueError) as exc:
        raise ImageInputError(f"{what}: the image data cannot be decoded ({exc})") from exc
    if image.width < 1 or image.height < 1:
        raise ImageInputError(f"{what}: the image is empty ({image.width}x{image.height})")
    if max_megapixels is not None and max_megapixels > 0:
        mp = image.width * image.height / 1_000_000
        if mp > max_megapixels:
            raise ImageInputError(
                f"{what}: {image.width}x{image.height} is {mp:.1f} megapixels, more than the img_max_size_mp "
                f"limit of {max_megapixels:g}"
            )
    return image


def check_size(width: int, height: int, what: str, max_megapixels: float | None) -> None:
    """Refuse an output size above the ``img_max_size_mp`` setting."""
    if max_megapixels is not None and max_megapixels > 0 and width * height / 1_000_000 > max_megapixels:
        raise ImageInputError(
            f"{what}: {width}x{height} is {width * height / 1_000_000:.1f} megapixels, more than the "
            f"img_max_size_mp limit of {max_megapixels:g}"
        )
