"""The X/Y/Z plot's pictures and grid infotexts (A1111 1.10 ``draw_xyz_grid``), PIL only.

For every Z value the X×Y cells make one sub grid (X across, Y down, cells ``margin`` px apart) with the X labels on
top and the Y labels on the left; the sub grids are then put side by side with the Z labels above them. With
"Draw legend" off there are no labels and no margins (A1111 only spaces the cells when it draws labels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from app.infotext.format import quote
from app.plugins.compat.grid_annotations import GridAnnotation, draw_grid_annotations


def plain_grid(images: Sequence[Image.Image], rows: int, margin: int = 0) -> Image.Image:
    """*images* in *rows* rows (row-major) on white, cells the size of the largest image, *margin* px apart."""
    cols = max(1, -(-len(images) // rows))
    w = max(im.width for im in images)
    h = max(im.height for im in images)
    grid = Image.new("RGB", (cols * w + (cols - 1) * margin, rows * h + (rows - 1) * margin), "white")
    for i, image in enumerate(images):
        grid.paste(image.convert("RGB"), ((i % cols) * (w + margin), (i // cols) * (h + margin)))
    return grid


def sub_grid(cells: Sequence[Image.Image], x_labels: Sequence[str], y_labels: Sequence[str], draw_legend: bool,
             margin: int) -> Image.Image:
    """One Z value's X×Y grid (cells in X-fastest order)."""
    rows = len(y_labels)
    if not draw_legend:
        return plain_grid(cells, rows)
    grid = plain_grid(cells, rows, margin)
    w = max(im.width for im in cells)
    h = max(im.height for im in cells)
    return draw_grid_annotations(grid, w, h, [[GridAnnotation(x)] for x in x_labels],
                                 [[GridAnnotation(y)] for y in y_labels], margin)


def draw_plot(cells: Sequence[Image.Image], x_labels: Sequence[str], y_labels: Sequence[str],
              z_labels: Sequence[str], draw_legend: bool, margin: int) -> tuple[Image.Image, list[Image.Image]]:
    """(the whole grid, the per-Z sub grids) of *cells* indexed ``ix + iy * nx + iz * nx * ny``."""
    per_z = len(x_labels) * len(y_labels)
    subs = [sub_grid(cells[iz * per_z:(iz + 1) * per_z], x_labels, y_labels, draw_legend, margin)
            for iz in range(len(z_labels))]
    whole = plain_grid(subs, 1)
    if draw_legend:
        whole = draw_grid_annotations(whole, subs[0].width, subs[0].height, [[GridAnnotation(z)] for z in z_labels],
                                      [[GridAnnotation()]])
    return whole, subs


def empty_cell(like: Image.Image | None, width: int, height: int) -> Image.Image:
    """A black stand-in for a cell that produced no image (interrupted or failed), as A1111."""
    if like is not None:
        return Image.new(like.mode, like.size)
    return Image.new("RGB", (width, height))


def with_params(text: str, pairs: Mapping[str, Any]) -> str:
    """*text* (an infotext) with *pairs* added to its parameter line, before ``Version:`` as A1111 writes its
    extra generation params."""
    if not pairs:
        return text
    head, newline, line = text.rpartition("\n")  # the parameter line is the last one
    added = ", ".join(f"{key}: {quote(value)}" for key, value in pairs.items())
    marker = line.find("Version: ")
    if marker > 0 and line[marker - 2:marker] == ", ":
        line = f"{line[:marker]}{added}, {line[marker:]}"
    else:
        line = f"{line}, {added}" if line else added
    return f"{head}{newline}{line}"
