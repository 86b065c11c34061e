"""Outpainting mk2's starting fill: noise shaped like the picture's own spectrum, coloured like its pixels.

What A1111's Outpainting mk2 does before inpainting the new border (after g-diffuser's idea), in our own numpy:
the known part of the image (mask 0) gives a magnitude spectrum; seeded noise (fixed seed 0, so the result only
follows the job seed) is blurred in frequency space, then given the picture's spectrum raised to the fall-off
exponent (lower = more fine detail) and the picture's phase; its values are histogram-matched, channel by channel,
to the known pixels; the known pixels are kept. ``color_variation`` (0..1) is how colourful the starting noise is
(0 = grey noise). Pure numpy (no scikit-image): the histogram match maps each noise value's rank to the same
quantile of the reference pixels.
"""

from __future__ import annotations

import numpy as np


def _fft(data: np.ndarray) -> np.ndarray:
    return np.fft.ifftshift(np.fft.fft2(np.fft.fftshift(data, axes=(0, 1)), axes=(0, 1), norm="ortho"), axes=(0, 1))


def _ifft(data: np.ndarray) -> np.ndarray:
    return np.fft.ifftshift(np.fft.ifft2(np.fft.fftshift(data, axes=(0, 1)), axes=(0, 1), norm="ortho"), axes=(0, 1))


def _falloff_window(h: int, w: int, power: float = 3.14) -> np.ndarray:
    """A low-pass window over the centred spectrum: ``(1 / ((x²+1)(y²+1)))^(power/pi)``, x, y in about [-1, 1]."""
    short = min(h, w)
    ys = (np.arange(h) / h * 2.0 - 1.0) * (h / short)
    xs = (np.arange(w) / w * 2.0 - 1.0) * (w / short)
    return (1.0 / np.outer(ys**2 + 1.0, xs**2 + 1.0)) ** (power / 3.14)


def match_histogram(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """*values* (n,) remapped so their distribution matches *reference* (m,) (rank → reference quantile)."""
    if values.size == 0 or reference.size == 0:
        return values
    order = np.argsort(values, kind="stable")
    quantiles = (np.arange(values.size) + 0.5) / values.size
    ref_sorted = np.sort(reference)
    ref_q = (np.arange(ref_sorted.size) + 0.5) / ref_sorted.size
    out = np.empty_like(values)
    out[order] = np.interp(quantiles, ref_q, ref_sorted)
    return out


def matched_noise(image: np.ndarray, mask: np.ndarray, falloff: float = 1.0, color_variation: float = 0.05) -> np.ndarray:
    """*image* (h, w, 3) in 0..1 with the area where *mask* (h, w) in 0..1 is > 0 filled with shaped noise."""
    image = image.astype(np.float64)
    mask = np.clip(mask.astype(np.float64), 0.0, 1.0)
    mask3 = mask[..., None]
    fill = image.size and float(np.mean(image))
    windowed = image * (1.0 - mask3)
    peak = float(windowed.max())
    if peak > 0:
        windowed = windowed / peak
    windowed = windowed + fill * mask3
    spectrum = _fft(windowed)
    magnitude = np.abs(spectrum)
    phase = np.divide(spectrum, magnitude, out=np.zeros_like(spectrum), where=magnitude > 0)
    generator = np.random.default_rng(0)  # fixed: the picture only follows the job seed
    noise = generator.random(image.shape)
    grey = noise.mean(axis=2, keepdims=True)
    noise = noise * color_variation + grey * (1.0 - color_variation)
    blurred = np.real(_ifft(_fft(noise) * _falloff_window(image.shape[0], image.shape[1])[..., None]))
    shaped = np.real(_ifft(np.abs(_fft(blurred)) ** 2 * magnitude**falloff * phase))
    shaped -= shaped.min()
    top = shaped.max()
    if top > 0:
        shaped /= top
    unknown, known = mask > 1e-6, mask < 1e-3
    if unknown.any() and known.any():
        for c in range(image.shape[2]):
            channel = shaped[..., c]
            channel[unknown] = match_histogram(channel[unknown], image[..., c][known])
    out = image * (1.0 - mask3) + shaped * mask3
    return np.clip(out, 0.0, 1.0)
