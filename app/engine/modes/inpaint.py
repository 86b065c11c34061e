"""Inpaint masks: reading, inverting, blurring, "Only masked" crop maths, fill, latent mask, overlay.

Pure image maths (numpy + PIL, no torch) shared by img2img, batch img2img and the tests.

- ``binary_mask``: an RGBA mask whose alpha is not fully opaque uses ``alpha > 128`` (A1111's rule;
  a fully opaque RGBA or any other mode uses the luminance), optionally rounded to 0/255.
- ``blur_mask``: Gaussian, separately along x and y, kernel ``2*int(2.5*sigma+0.5)+1`` with
  reflected borders (OpenCV's default border), so results match A1111's ``cv2.GaussianBlur``.
- ``mask_crop_region`` / ``expand_crop_region``: the bounding box of the mask plus padding,
  grown to the processing aspect ratio (spec vector: (0,0,128,32) at 512x512 → (0,0,128,128)).
- ``fill_masked``: the "fill" masked content: masked pixels get the blurred colours of their
  surroundings (normalised convolution at decreasing radii).
- ``apply_overlay``: paste the result back (``paste_to`` for Only masked) and put the original
  back over it wherever the overlay mask is 0, so unmasked pixels stay the original.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter, ImageOps
from scipy.ndimage import correlate1d

from app.engine.image.resize import ImageInputError, resize_image

Box = tuple[int, int, int, int]


class BlankMaskError(ImageInputError):
    """The mask selects nothing (all black after processing)."""


def binary_mask(mask: Image.Image, round_mask: bool = True) -> Image.Image:
    """An "L" mask (255 = inpaint) from a brush/upload image."""
    if mask.mode == "RGBA" and mask.getextrema()[-1] != (255, 255):
        alpha = mask.getchannel("A")
        return alpha.point(lambda v: 255 if v > 128 else 0) if round_mask else alpha
    return mask.convert("L")


def gaussian_kernel(sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian (size ``2*int(2.5*sigma+0.5)+1``)."""
    size = 2 * int(2.5 * sigma + 0.5) + 1
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    k = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return k / k.sum()


def _blur_axis(arr: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    return correlate1d(arr, gaussian_kernel(sigma), axis=axis, mode="mirror")


def blur_mask(mask: Image.Image, blur_x: float, blur_y: float) -> Image.Image:
    """Gaussian blur of an "L" mask with separate sigmas along x and y (0 = no blur on that axis)."""
    if blur_x <= 0 and blur_y <= 0:
        return mask
    arr = np.asarray(mask.convert("L"), dtype=np.float64)
    if blur_x > 0:
        arr = np.clip(np.rint(_blur_axis(arr, float(blur_x), axis=1)), 0, 255)
    if blur_y > 0:
        arr = np.clip(np.rint(_blur_axis(arr, float(blur_y), axis=0)), 0, 255)
    return Image.fromarray(arr.astype(np.uint8), "L")


def mask_crop_region(mask: Image.Image, padding: int = 0) -> Box | None:
    """Bounding box of the non-zero mask pixels grown by *padding* (clipped); None for a blank mask."""
    box = mask.convert("L").getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    w, h = mask.size
    return max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, w), min(y2 + padding, h)


def expand_crop_region(box: Box, width: int, height: int, image_w: int, image_h: int) -> Box:
    """Grow *box* (centred, kept inside the image) to the aspect ratio of ``width x height``."""
    x1, y1, x2, y2 = box
    target = width / height
    if (x2 - x1) / (y2 - y1) > target:
        y1, y2 = _grow((x2 - x1) / target, y1, y2, image_h)
    else:
        x1, x2 = _grow((y2 - y1) * target, x1, x2, image_w)
    return x1, y1, x2, y2


def _grow(desired: float, lo: int, hi: int, limit: int) -> tuple[int, int]:
    extra = int(desired - (hi - lo))
    lo -= extra // 2
    hi += extra - extra // 2
    if hi >= limit:  # shift back inside at the far end
        lo -= hi - limit
        hi = limit
    if lo < 0:  # and at the near end
        hi -= lo
        lo = 0
    return lo, min(hi, limit)


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """Replace the masked area with the blurred colours around it ("fill" masked content).

    Normalised convolution layered from coarse to fine: at radius r the colour estimate is
    ``blur(image*keep) / blur(keep)`` (a premultiplied-alpha blur) and it is laid over the previous
    layers with opacity ``blur(keep)`` (how much known colour is near), so fine estimates win close
    to the edge. Kept pixels are the original at the end.
    """
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    keep = 255 - np.asarray(mask.convert("L"), dtype=np.uint8)
    if keep.max() == 0:
        mean = tuple(int(v) for v in rgb.reshape(-1, 3).mean(0))
        return Image.new("RGB", image.size, mean)
    rgba = image.convert("RGB").convert("RGBA")
    rgba.putalpha(Image.fromarray(keep, "L"))
    premultiplied = rgba.convert("RGBa")
    out = np.zeros_like(rgb)
    for radius, layers in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2)):
        blurred = np.asarray(premultiplied.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA"), dtype=np.float32)
        estimate, opacity = blurred[..., :3], blurred[..., 3:] / 255.0
        if radius == 256:  # the first layer covers everything that has any known colour nearby
            opacity = (opacity > 0).astype(np.float32)
        for _ in range(layers):
            out = out * (1.0 - opacity) + estimate * opacity
    k = keep[..., None].astype(np.float32) / 255.0
    out = out * (1.0 - k) + rgb * k
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")


def latent_mask(mask: Image.Image, latent_w: int, latent_h: int, round_mask: bool = True) -> np.ndarray:
    """[h, w] float mask in [0, 1] (1 = regenerate) at latent resolution."""
    small = mask.convert("L").resize((latent_w, latent_h), resample=Image.Resampling.BICUBIC)
    arr = np.asarray(small, dtype=np.float32) / 255.0
    return np.around(arr) if round_mask else arr


@dataclass
class PreparedMask:
    """A processed mask for one job.

    ``mask``: "L" at the processing size (W x H), used for the latent mask and the inpainting
    conditioning. ``overlay``: "L" at the output size, 255 where the generated pixels are kept.
    ``crop``: the "Only masked" crop box in the init image, or None; ``paste_to`` (x, y, w, h).
    """

    mask: Image.Image
    overlay: Image.Image
    crop: Box | None = None

    @property
    def paste_to(self) -> tuple[int, int, int, int] | None:
        if self.crop is None:
            return None
        x1, y1, x2, y2 = self.crop
        return x1, y1, x2 - x1, y2 - y1


def prepare_mask(
    mask: Image.Image,
    image_size: tuple[int, int],
    width: int,
    height: int,
    *,
    resize_mode: int = 0,
    invert: bool = False,
    blur_x: float = 4,
    blur_y: float = 4,
    round_mask: bool = True,
    only_masked: bool = False,
    padding: int = 32,
    warn=None,
) -> PreparedMask:
    """Binary → (invert) → blur → (crop for Only masked) → processing size. Raises ``BlankMaskError``."""
    m = binary_mask(mask, round_mask)
    if m.size != tuple(image_size):
        if warn is not None:
            warn(f"mask is {m.width}x{m.height} but the image is {image_size[0]}x{image_size[1]}; the mask was resized")
        m = m.resize(tuple(image_size), resample=Image.Resampling.NEAREST)
    if invert:
        m = ImageOps.invert(m)
    if m.getbbox() is None:
        raise BlankMaskError("the inpaint mask is blank (it selects no pixel)")
    m = blur_mask(m, blur_x, blur_y)
    if only_masked:
        box = mask_crop_region(m, padding)
        if box is None:
            raise BlankMaskError("the inpaint mask is blank (it selects no pixel)")
        box = expand_crop_region(box, width, height, m.width, m.height)
        processing = resize_image(2, m.crop(box), width, height)
        return PreparedMask(processing, m, box)
    processing = resize_image(0 if resize_mode == 3 else resize_mode, m, width, height)
    overlay = Image.fromarray(np.clip(np.asarray(processing, dtype=np.float32) * 2, 0, 255).astype(np.uint8), "L")
    return PreparedMask(processing, overlay, None)


def overlay_image(image: Image.Image, prepared: PreparedMask) -> Image.Image:
    """The original as RGBA, transparent where the generated pixels show (A1111's overlay image)."""
    base = image.convert("RGBA")
    alpha = ImageOps.invert(prepared.overlay.convert("L"))
    if alpha.size != base.size:
        alpha = alpha.resize(base.size, resample=Image.Resampling.LANCZOS)
    arr = np.asarray(base).copy()
    arr[..., 3] = np.minimum(arr[..., 3], np.asarray(alpha))
    return Image.fromarray(arr, "RGBA")


def apply_overlay(result: Image.Image, overlay: Image.Image | None, paste_to: tuple[int, int, int, int] | None) -> Image.Image:
    """Paste *result* at ``paste_to`` (Only masked) and composite the original *overlay* over it."""
    if overlay is None:
        return result
    if paste_to is not None:
        x, y, w, h = paste_to
        canvas = Image.new("RGBA", overlay.size)
        canvas.paste(resize_image(1, result.convert("RGB"), w, h), (x, y))
        result = canvas
    out = result.convert("RGBA")
    out.alpha_composite(overlay)
    return out.convert("RGB")


def masked_pixels(image: Image.Image, mask: Image.Image, weight: float = 1.0, round_mask: bool = True) -> np.ndarray:
    """The inpainting-model conditioning image as ``[H, W, 3]`` float32 in [-1, 1]: masked pixels pushed to grey,
    ``x*(1-w*m)`` (A1111's ``inpainting_mask_weight`` *w*; with w = 1 and a 0/1 mask this is ``FluxFillPipeline``'s
    ``image * (1 - mask)``)."""
    m = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
    if round_mask:
        m = np.around(m)
    x = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return (x * (1.0 - weight * m)[..., None]).astype(np.float32)


def masked_image_for_conditioning(image: Image.Image, mask: Image.Image, weight: float = 1.0, round_mask: bool = True) -> Image.Image:
    """:func:`masked_pixels` as an 8-bit image (for looking at it; the engine encodes the float pixels)."""
    x = masked_pixels(image, mask, weight, round_mask)
    return Image.fromarray(np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8), "RGB")
