"""img2img colour correction (setting ``img2img_color_correction``), numpy only.

The result's colours are matched to the init image: per-channel histogram matching in CIE LAB
(sRGB, D65), then a "luminosity" blend keeps the generated image's luminance with the corrected
hue and saturation (W3C non-separable blend ``SetLum(corrected, Lum(generated))``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_M_RGB2XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
_M_XYZ2RGB = np.linalg.inv(_M_RGB2XYZ)
_WHITE = np.array([0.95047, 1.0, 1.08883])
_EPS, _KAPPA = 216 / 24389, 24389 / 27


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8/float RGB in [0,255] (H,W,3) → LAB (L in [0,100])."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ _M_RGB2XYZ.T / _WHITE
    f = np.where(xyz > _EPS, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """LAB → float RGB in [0,255] (clipped)."""
    fy = (lab[..., 0] + 16) / 116
    fx = fy + lab[..., 1] / 500
    fz = fy - lab[..., 2] / 200
    f = np.stack([fx, fy, fz], axis=-1)
    xyz = np.where(f**3 > _EPS, f**3, (116 * f - 16) / _KAPPA) * _WHITE
    lin = np.clip(xyz @ _M_XYZ2RGB.T, 0, 1)
    c = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    return np.clip(c * 255.0, 0, 255)


def match_histogram(source: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Map the values of 1-D *source* so its distribution matches *template* (quantile mapping)."""
    src_values, src_index, src_counts = np.unique(source.ravel(), return_inverse=True, return_counts=True)
    tpl_values, tpl_counts = np.unique(template.ravel(), return_counts=True)
    src_q = np.cumsum(src_counts) / source.size
    tpl_q = np.cumsum(tpl_counts) / template.size
    mapped = np.interp(src_q, tpl_q, tpl_values)
    return mapped[src_index].reshape(source.shape)


def _lum(c: np.ndarray) -> np.ndarray:
    return c[..., 0] * 0.3 + c[..., 1] * 0.59 + c[..., 2] * 0.11


def _clip_color(c: np.ndarray) -> np.ndarray:
    lum = _lum(c)[..., None]
    lo = c.min(axis=-1, keepdims=True)
    hi = c.max(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(lo < 0, lum + (c - lum) * lum / np.maximum(lum - lo, 1e-12), c)
        c = np.where(hi > 1, lum + (c - lum) * (1 - lum) / np.maximum(hi - lum, 1e-12), c)
    return c


def luminosity_blend(base: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Hue/saturation of *base*, luminance of *top* (floats in [0,1], H x W x 3)."""
    return np.clip(_clip_color(base + (_lum(top) - _lum(base))[..., None]), 0, 1)


def correction_target(image: Image.Image) -> np.ndarray:
    """What ``apply`` matches to: the LAB pixels of the (processed) init image."""
    return rgb_to_lab(np.asarray(image.convert("RGB")))


def apply(target: np.ndarray, image: Image.Image) -> Image.Image:
    """*image* with its colours matched to *target* (from ``correction_target``)."""
    generated = np.asarray(image.convert("RGB"), dtype=np.float64)
    lab = rgb_to_lab(generated)
    matched = np.stack([match_histogram(lab[..., i], target[..., i]) for i in range(3)], axis=-1)
    corrected = lab_to_rgb(matched) / 255.0
    out = luminosity_blend(corrected, generated / 255.0)
    return Image.fromarray(np.rint(out * 255).astype(np.uint8), "RGB")
