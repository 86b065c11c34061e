"""The size picker's arithmetic: an aspect ratio and a pixel budget in megapixels → width and height, snapped
to a family's size step (pure; the UI and the API docs use it)."""

from __future__ import annotations

import math

#: The ratios the picker offers, landscape first; each has its portrait twin.
ASPECT_RATIOS: tuple[str, ...] = ("1:1", "4:3", "3:2", "16:9", "21:9", "3:4", "2:3", "9:16", "9:21")
MEGAPIXELS: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


def parse_ratio(ratio: str) -> tuple[int, int]:
    """``"16:9"`` → ``(16, 9)``; a clear ``ValueError`` otherwise."""
    left, sep, right = str(ratio).partition(":")
    try:
        a, b = int(left), int(right)
    except ValueError:
        a = b = 0
    if not sep or a <= 0 or b <= 0:
        raise ValueError(f"aspect ratio must look like 16:9, got {ratio!r}")
    return a, b


def size_for(ratio: str, megapixels: float, step: int = 64) -> tuple[int, int]:
    """Width and height with the given aspect ratio and about ``megapixels`` × 1024² pixels, each a multiple of
    ``step`` (rounded to the nearest multiple, at least one step)."""
    a, b = parse_ratio(ratio)
    if not (0.05 <= float(megapixels) <= 16):
        raise ValueError(f"megapixels must be between 0.05 and 16, got {megapixels}")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    pixels = float(megapixels) * 1024 * 1024  # as ComfyUI counts them: 1 MP is 1024 x 1024
    width = math.sqrt(pixels * a / b)
    height = width * b / a
    return max(step, math.floor(width / step + 0.5) * step), max(step, math.floor(height / step + 0.5) * step)
