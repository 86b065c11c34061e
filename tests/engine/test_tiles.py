"""Tile grid tables from spec §8.1 (SD upscale split_grid / combine_grid)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.engine.image.tiles import Grid, combine_grid, map_tiles, split_grid, tile_ranges, tile_starts


@pytest.mark.parametrize(
    ("size", "tile", "overlap", "cols", "rows", "xs", "ys"),
    [
        ((1024, 1024), 512, 64, 3, 3, [0, 256, 512], [0, 256, 512]),
        ((1024, 768), 512, 64, 3, 2, [0, 256, 512], [0, 256]),
        ((2048, 2048), 512, 64, 5, 5, [0, 384, 768, 1152, 1536], [0, 384, 768, 1152, 1536]),
        ((1536, 1536), 768, 64, 3, 3, [0, 384, 768], [0, 384, 768]),
        ((128, 128), 64, 8, 3, 3, [0, 32, 64], [0, 32, 64]),
        ((512, 512), 512, 64, 1, 1, [0], [0]),
    ],
)
def test_split_grid_vectors(size, tile, overlap, cols, rows, xs, ys):
    img = Image.new("RGB", size)
    grid = split_grid(img, tile, tile, overlap)
    assert (grid.cols, grid.rows) == (cols, rows)
    assert len(grid) == cols * rows
    assert [t.x for t in grid.tiles[0].tiles] == xs
    assert [r.y for r in grid.tiles] == ys
    assert all(t.image.size == (tile, tile) for t in grid.iter_tiles())
    assert (grid.image_w, grid.image_h, grid.overlap) == (size[0], size[1], overlap)


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "starts"),
    [
        (1000, 512, 64, [0, 244, 488]),  # dx = 244.0
        (1100, 512, 64, [0, 294, 588]),  # 3 tiles, last clamped to the end
        (700, 512, 0, [0, 188]),
        (513, 512, 64, [0, 1]),
        (300, 512, 64, [0]),  # shorter than a tile: a single tile at 0
    ],
)
def test_tile_starts(length, tile, overlap, starts):
    assert tile_starts(length, tile, overlap) == starts
    assert tile_ranges(length, tile, overlap) == [(s, min(s + tile, length)) for s in starts]


def test_tile_ranges_cover_the_axis():
    for length in range(65, 400, 7):
        ranges = tile_ranges(length, 64, 16)
        covered = np.zeros(length, bool)
        for a, b in ranges:
            covered[a:b] = True
        assert covered.all(), length
        assert ranges[-1][1] == length


@pytest.mark.parametrize(("tile", "overlap"), [(64, 64), (64, 100), (0, 0), (64, -1)])
def test_bad_geometry_raises(tile, overlap):
    with pytest.raises(ValueError, match="overlap|size"):
        tile_starts(128, tile, overlap)


def test_sd_upscale_case_64_by_2():
    """The repo API test: a 64² image, ×2 Lanczos, tile 64, overlap 8 → 9 tiles, 128² result."""
    src = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    up = src.resize((128, 128), Image.LANCZOS)
    grid = split_grid(up, 64, 64, 8)
    assert len(grid) == 9
    out = combine_grid(grid)
    assert out.size == (128, 128)
    assert np.array_equal(np.asarray(out), np.asarray(up))  # unmodified tiles recombine exactly


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_roundtrip_identity(mode):
    arr = np.random.default_rng(1).integers(0, 256, (300, 420, len(mode)), dtype=np.uint8)
    img = Image.fromarray(arr[..., 0] if mode == "L" else arr, mode)
    out = combine_grid(split_grid(img, 128, 96, 32))
    assert out.mode == mode
    assert np.array_equal(np.asarray(out), np.asarray(img))


def test_horizontal_blend_is_a_linear_ramp():
    img = Image.new("RGB", (112, 64))
    grid = split_grid(img, 64, 64, 16)
    assert [t.x for t in grid.tiles[0].tiles] == [0, 48]
    grid.tiles[0].tiles[0].image = Image.new("RGB", (64, 64), (0, 0, 0))
    grid.tiles[0].tiles[1].image = Image.new("RGB", (64, 64), (255, 255, 255))
    out = np.asarray(combine_grid(grid))[:, :, 0]
    expected_ramp = (np.arange(16, dtype=np.float32) * 255 / 16).astype(np.uint8)
    assert np.array_equal(out[10, 48:64], expected_ramp)
    assert (out[:, :48] == 0).all() and (out[:, 64:] == 255).all()
    assert (out == out[0]).all()  # every row is the same


def test_vertical_blend_is_a_linear_ramp():
    img = Image.new("L", (64, 112))
    grid = split_grid(img, 64, 64, 16)
    grid.tiles[0].tiles[0].image = Image.new("L", (64, 64), 0)
    grid.tiles[1].tiles[0].image = Image.new("L", (64, 64), 200)
    out = np.asarray(combine_grid(grid))
    assert (out[:48] == 0).all() and (out[64:] == 200).all()
    col = out[48:64, 5].astype(int)
    ramp = (np.arange(16, dtype=np.float32) * 255 / 16).astype(np.uint8).astype(int)
    assert np.all(np.abs(col - ramp * 200 / 255) <= 1)
    assert np.all(np.diff(col) >= 0)


def test_a1111_style_unpacking():
    grid = split_grid(Image.new("RGB", (128, 128)), 64, 64, 8)
    assert isinstance(grid, Grid)
    for y, h, row in grid.tiles:
        for x, w, tile in row:
            assert tile.size == (w, h)
            assert x + w <= 128 and y + h <= 128


def test_wrong_tile_size_is_reported():
    grid = split_grid(Image.new("RGB", (128, 128)), 64, 64, 8)
    grid.tiles[1].tiles[2].image = Image.new("RGB", (32, 32))
    with pytest.raises(ValueError, match="x=64, y=32"):
        combine_grid(grid)


def test_overlap_zero_tiles_side_by_side():
    arr = np.random.default_rng(2).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    grid = split_grid(Image.fromarray(arr), 64, 64, 0)
    assert len(grid) == 4
    assert np.array_equal(np.asarray(combine_grid(grid)), arr)


def test_map_tiles_upscales_like_a1111_upscale_with_model():
    """Tiled 2x nearest 'upscaler': the recombined image equals upscaling the whole image."""
    arr = np.random.default_rng(3).integers(0, 256, (100, 140, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    grid = split_grid(img, 64, 64, 8)
    up = map_tiles(grid, lambda t: t.resize((t.width * 2, t.height * 2), Image.NEAREST))
    assert (up.image_w, up.image_h, up.tile_w, up.overlap) == (280, 200, 128, 16)
    assert [t.x for t in up.tiles[0].tiles] == [2 * t.x for t in grid.tiles[0].tiles]
    out = combine_grid(up)
    assert np.array_equal(np.asarray(out), np.asarray(img.resize((280, 200), Image.NEAREST)))


def test_map_tiles_small_image_and_bad_output():
    img = Image.new("RGB", (40, 30), (10, 20, 30))
    grid = split_grid(img, 64, 64, 8)  # one tile, padded beyond the image
    out = combine_grid(map_tiles(grid, lambda t: t.resize((t.width * 4, t.height * 4))))
    assert out.size == (160, 120) and out.getpixel((159, 119)) == (10, 20, 30)
    with pytest.raises(ValueError, match="expected 128x128"):
        map_tiles(split_grid(Image.new("RGB", (128, 128)), 64, 64, 8), lambda t: t.resize((128, 100)))
