"""Labelled grids for ``modules.images``: ``GridAnnotation``, ``draw_grid_annotations``, ``draw_prompt_matrix`` and
``check_grid_size``, as A1111's Prompt matrix and X/Y/Z scripts call them.

``draw_grid_annotations`` puts a band above the grid with one label block per column and a band on its left with one
per row; a label that is not active (``is_active=False``: the prompt part that is *off* in that cell) is drawn grey
and struck through, so a prompt matrix reads like A1111's. Pillow's built-in font is used (no font files needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from app.plugins.compat.current import current

ACTIVE = (0, 0, 0)
INACTIVE = (153, 153, 153)


@dataclass
class GridAnnotation:
    """One label line of a grid row or column."""

    text: str = ""
    is_active: bool = True


def check_grid_size(imgs: Sequence[Any] | None) -> bool:
    """Whether ``imgs`` can make a grid: images only, and together within ``img_max_size_mp`` megapixels."""
    if not imgs or any(im is None for im in imgs):
        return False
    settings = current().settings
    limit = float(settings.get("img_max_size_mp", 200) if settings is not None else 200)
    pixels = sum(im.width * im.height for im in imgs)
    return pixels <= limit * 1_000_000


def _font(size: int) -> Any:
    return ImageFont.load_default(size=max(8, size))


def _block_height(draw: ImageDraw.ImageDraw, lines: Sequence[GridAnnotation], font: Any, spacing: int) -> int:
    return sum(_text_height(draw, line.text or " ", font) + spacing for line in lines)


def _text_height(draw: ImageDraw.ImageDraw, text: str, font: Any) -> int:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return bottom - top


def _draw_lines(draw: ImageDraw.ImageDraw, center_x: float, top: float, lines: Sequence[GridAnnotation], font: Any,
                spacing: int) -> None:
    y = top
    for line in lines:
        text = line.text or " "
        left, t, right, bottom = draw.textbbox((0, 0), text, font=font)
        width, height = right - left, bottom - t
        x = center_x - width / 2
        colour = ACTIVE if line.is_active else INACTIVE
        draw.text((x - left, y - t), text, font=font, fill=colour)
        if not line.is_active:
            draw.line((x, y + height / 2, x + width, y + height / 2), fill=colour, width=max(1, height // 12))
        y += height + spacing


def draw_grid_annotations(im: Image.Image, width: int, height: int, hor_texts: Sequence[Sequence[GridAnnotation]],
                          ver_texts: Sequence[Sequence[GridAnnotation]], margin: int = 0) -> Image.Image:
    """``im`` (a grid of ``width`` x ``height`` cells, ``margin`` px apart) with its column labels above and its row
    labels on the left, on a white background."""
    cols, rows = max(1, len(hor_texts)), max(1, len(ver_texts))
    font = _font((width + height) // 25)
    spacing = max(2, font.size // 3) if hasattr(font, "size") else 4
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad_left = 0 if not any(any(a.text for a in t) for t in ver_texts) else width * 3 // 4
    top = max((_block_height(probe, lines, font, spacing) for lines in hor_texts), default=0)
    if not any(any(a.text for a in t) for t in hor_texts):  # no column labels: no band (A1111)
        top = 0
    pad_top = 0 if top == 0 else top + spacing * 2
    result = Image.new("RGB", (im.width + pad_left, im.height + pad_top), "white")
    result.paste(im, (pad_left, pad_top))
    draw = ImageDraw.Draw(result)
    for col, lines in enumerate(hor_texts[:cols]):
        center = pad_left + (width + margin) * col + width / 2
        _draw_lines(draw, center, spacing, lines, font, spacing)
    for row, lines in enumerate(ver_texts[:rows]):
        block = _block_height(draw, lines, font, spacing)
        y = pad_top + (height + margin) * row + height / 2 - block / 2
        _draw_lines(draw, pad_left / 2, y, lines, font, spacing)
    return result


def draw_prompt_matrix(im: Image.Image, width: int, height: int, all_prompts: Sequence[str],
                       margin: int = 0) -> Image.Image:
    """A prompt-matrix grid: ``all_prompts[0]`` is the base, the other parts are split between the columns (first
    half) and rows; each cell's label shows which parts are on."""
    parts = list(all_prompts[1:])
    boundary = (len(parts) + 1) // 2
    horizontal, vertical = parts[:boundary], parts[boundary:]
    hor_texts = [[GridAnnotation(x, is_active=bool(pos & (1 << i))) for i, x in enumerate(horizontal)]
                 for pos in range(1 << len(horizontal))]
    ver_texts = [[GridAnnotation(x, is_active=bool(pos & (1 << i))) for i, x in enumerate(vertical)]
                 for pos in range(1 << len(vertical))]
    return draw_grid_annotations(im, width, height, hor_texts, ver_texts, margin)
