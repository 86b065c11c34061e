"""Overlapping tile grids for SD upscale and tiled upscalers (A1111 ``split_grid``/``combine_grid``).

Pure module: numpy + PIL only. The layout rule (spec §8.1): with ``n = ceil((L - ov) / (tile - ov))``
tiles along an axis of length ``L`` the step is ``d = (L - tile) / (n - 1)`` (0 for one tile); tile
``i`` starts at ``int(i * d)``, moved back to ``L - tile`` when it would reach the end. Recombining
pastes the first tile of a row raw and every later tile's first ``overlap`` columns through a
0→255 ramp, then combines the rows the same way vertically.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

__all__ = [
    "Grid",
    "GridRow",
    "GridTile",
    "combine_grid",
    "map_tiles",
    "split_grid",
    "tile_ranges",
    "tile_starts",
]


@dataclass
class GridTile:
    """One tile of a row: its left edge ``x``, width ``w`` and the image (replaceable)."""

    x: int
    w: int
    image: Image.Image

    def __iter__(self):  # allows ``for x, w, tile in row`` like A1111's lists
        return iter((self.x, self.w, self.image))


@dataclass
class GridRow:
    """One row of tiles: its top edge ``y``, height ``h`` and the tiles left to right."""

    y: int
    h: int
    tiles: list[GridTile] = field(default_factory=list)

    def __iter__(self):  # allows ``for y, h, row in grid.tiles``
        return iter((self.y, self.h, self.tiles))


@dataclass
class Grid:
    """A split image: rows of tiles plus the geometry needed to put it back together."""

    tiles: list[GridRow]
    tile_w: int
    tile_h: int
    image_w: int
    image_h: int
    overlap: int

    @property
    def cols(self) -> int:
        return len(self.tiles[0].tiles) if self.tiles else 0

    @property
    def rows(self) -> int:
        return len(self.tiles)

    def __len__(self) -> int:
        return sum(len(row.tiles) for row in self.tiles)

    def iter_tiles(self):
        """Yield every :class:`GridTile` row by row (to process and replace ``.image`` in place)."""
        for row in self.tiles:
            yield from row.tiles


def _check_geometry(length: int, tile: int, overlap: int, what: str = "tile") -> None:
    if int(tile) <= 0:
        raise ValueError(f"{what} size must be positive, got {tile}")
    if int(overlap) < 0:
        raise ValueError(f"{what} overlap must be >= 0, got {overlap}")
    if int(overlap) >= int(tile):
        raise ValueError(f"{what} overlap ({overlap}) must be smaller than the {what} size ({tile})")
    if int(length) <= 0:
        raise ValueError(f"image length must be positive, got {length}")


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of the tiles covering ``length`` pixels (A1111's split_grid rule).

    An axis shorter than one tile yields a single tile at 0 (it then extends past the end;
    A1111 would start it at a negative offset).
    """
    _check_geometry(length, tile, overlap)
    count = max(1, math.ceil((length - overlap) / (tile - overlap)))
    step = (length - tile) / (count - 1) if count > 1 else 0
    starts = []
    for i in range(count):
        pos = int(i * step)
        if pos + tile >= length:
            pos = length - tile
        starts.append(max(0, pos))
    return starts


def tile_ranges(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """``(start, stop)`` pairs of the tiles along one axis; ``stop`` is clipped to ``length``."""
    return [(s, min(s + tile, length)) for s in tile_starts(length, tile, overlap)]


def _crop(image: Image.Image, x: int, y: int, w: int, h: int) -> Image.Image:
    """Crop a tile; where it extends past the image (image smaller than a tile) the edge pixels are
    repeated, so smoothing models see no black border (A1111 pads black at a negative offset)."""
    if (x + w <= image.width and y + h <= image.height) or image.mode not in ("RGB", "RGBA", "L"):
        return image.crop((x, y, x + w, y + h))
    part = np.asarray(image.crop((x, y, min(x + w, image.width), min(y + h, image.height))))
    pad = [(0, h - part.shape[0]), (0, w - part.shape[1])] + [(0, 0)] * (part.ndim - 2)
    return Image.fromarray(np.pad(part, pad, mode="edge"), image.mode)


def split_grid(image: Image.Image, tile_w: int = 512, tile_h: int = 512, overlap: int = 64) -> Grid:
    """Cut ``image`` into overlapping ``tile_w``×``tile_h`` tiles (every tile has the full tile size;
    an image smaller than a tile gives one tile padded with its edge pixels)."""
    w, h = image.size
    xs = tile_starts(w, tile_w, overlap)
    ys = tile_starts(h, tile_h, overlap)
    grid = Grid([], int(tile_w), int(tile_h), w, h, int(overlap))
    for y in ys:
        row = GridRow(y, int(tile_h))
        for x in xs:
            row.tiles.append(GridTile(x, int(tile_w), _crop(image, x, y, int(tile_w), int(tile_h))))
        grid.tiles.append(row)
    return grid


def map_tiles(grid: Grid, fn: Callable[[Image.Image], Image.Image]) -> Grid:
    """Apply ``fn`` to every tile (e.g. a 4x upscaler) and return the grid at the output's scale.

    The scale is taken from the first output (``output.width // tile.width``, as A1111's
    ``upscale_with_model``); every output must have exactly the scaled tile size.
    """
    scale: int | None = None
    rows: list[GridRow] = []
    for row in grid.tiles:
        new_row: list[GridTile] = []
        for tile in row.tiles:
            out = fn(tile.image)
            if scale is None:
                scale = max(1, out.width // tile.image.width)
            want = (tile.w * scale, row.h * scale)
            if out.size != want:
                raise ValueError(
                    f"map_tiles: tile at x={tile.x}, y={row.y} became {out.size[0]}x{out.size[1]}, expected {want[0]}x{want[1]}"
                )
            new_row.append(GridTile(tile.x * scale, tile.w * scale, out))
        rows.append(GridRow(row.y * (scale or 1), row.h * (scale or 1), new_row))
    k = scale or 1
    return Grid(rows, grid.tile_w * k, grid.tile_h * k, grid.image_w * k, grid.image_h * k, grid.overlap * k)


def _ramp_mask(overlap: int, length: int, horizontal: bool) -> Image.Image:
    """An 'L' mask rising 0→255 across ``overlap`` pixels (``int(i*255/overlap)``)."""
    ramp = (np.arange(overlap, dtype=np.float32) * 255 / overlap).astype(np.uint8)
    arr = np.repeat(ramp[None, :], length, axis=0) if horizontal else np.repeat(ramp[:, None], length, axis=1)
    return Image.fromarray(np.ascontiguousarray(arr), "L")


def combine_grid(grid: Grid) -> Image.Image:
    """Put the (processed) tiles back together with linear blending across the overlaps."""
    if not grid.tiles:
        raise ValueError("combine_grid: the grid has no tiles")
    ov = grid.overlap
    mode = grid.tiles[0].tiles[0].image.mode if grid.tiles[0].tiles else "RGB"
    mode = mode if mode in ("RGB", "RGBA", "L") else "RGB"
    mask_w = _ramp_mask(ov, grid.tile_h, horizontal=True) if ov > 0 else None
    mask_h = _ramp_mask(ov, grid.image_w, horizontal=False) if ov > 0 else None
    combined = Image.new(mode, (grid.image_w, grid.image_h))
    for row in grid.tiles:
        # 1. Build the row: raw first tile, ramp-blended left overlap for the others.
        line = Image.new(mode, (grid.image_w, row.h))
        for tile in row.tiles:
            img = tile.image.convert(mode) if tile.image.mode != mode else tile.image
            if img.size != (tile.w, row.h):
                raise ValueError(
                    f"combine_grid: tile at x={tile.x}, y={row.y} is {img.size[0]}x{img.size[1]}, "
                    f"expected {tile.w}x{row.h}"
                )
            if tile.x == 0 or mask_w is None:
                line.paste(img, (tile.x, 0))
                continue
            line.paste(img.crop((0, 0, ov, row.h)), (tile.x, 0), mask=mask_w)
            line.paste(img.crop((ov, 0, tile.w, row.h)), (tile.x + ov, 0))
        # 2. Add the row to the image the same way, vertically.
        if row.y == 0 or mask_h is None:
            combined.paste(line, (0, row.y))
            continue
        combined.paste(line.crop((0, 0, line.width, ov)), (0, row.y), mask=mask_h)
        combined.paste(line.crop((0, ov, line.width, row.h)), (0, row.y + ov))
    return combined
