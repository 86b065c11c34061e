"""``modules.images``: ``save_image`` (A1111 positional signature over ``app.outputs.save.save_image``; a relative
folder is under the data dir, as Atelier's own outputs), ``flatten``, ``resize_image``, and the tile grid of SD
upscale (``Grid``, ``split_grid``, ``combine_grid`` over ``app.engine.image.tiles``) and ``image_grid``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PIL import Image

from app.engine.image import tiles as _tiles
from app.plugins.compat.current import current

# labelled grids (Prompt matrix, X/Y/Z plot)
from app.plugins.compat.grid_annotations import (  # noqa: F401 - re-exported as modules.images.*
    GridAnnotation,
    check_grid_size,
    draw_grid_annotations,
    draw_prompt_matrix,
)

__all__ = ["Grid", "combine_grid", "flatten", "image_grid", "resize_image", "save_image", "split_grid",
           "resolve_output_dir"]


class Grid(tuple):
    """A1111's ``images.Grid`` namedtuple: ``tiles`` is ``[[y, h, [[x, w, image], ...]], ...]`` of plain lists, so
    scripts can replace ``tiledata[2]`` in place before ``combine_grid``."""

    _fields = ("tiles", "tile_w", "tile_h", "image_w", "image_h", "overlap")

    def __new__(cls, tiles: list[Any], tile_w: int = 512, tile_h: int = 512, image_w: int = 1024,
                image_h: int = 1024, overlap: int = 0) -> Grid:
        return super().__new__(cls, (tiles, tile_w, tile_h, image_w, image_h, overlap))

    tiles = property(lambda self: self[0])
    tile_w = property(lambda self: self[1])
    tile_h = property(lambda self: self[2])
    image_w = property(lambda self: self[3])
    image_h = property(lambda self: self[4])
    overlap = property(lambda self: self[5])


def split_grid(image: Image.Image, tile_w: int = 512, tile_h: int = 512, overlap: int = 64) -> Grid:
    """Cut ``image`` into overlapping tiles (``app.engine.image.tiles.split_grid``) as A1111's list layout."""
    grid = _tiles.split_grid(image, tile_w, tile_h, overlap)
    rows = [[row.y, row.h, [[t.x, t.w, t.image] for t in row.tiles]] for row in grid.tiles]
    return Grid(rows, grid.tile_w, grid.tile_h, grid.image_w, grid.image_h, grid.overlap)


def combine_grid(grid: Any) -> Image.Image:
    """Blend the (processed) tiles of a ``split_grid`` result back into one image."""
    rows = [_tiles.GridRow(int(y), int(h), [_tiles.GridTile(int(x), int(w), img) for x, w, img in row])
            for y, h, row in grid.tiles]
    return _tiles.combine_grid(_tiles.Grid(rows, int(grid.tile_w), int(grid.tile_h), int(grid.image_w),
                                           int(grid.image_h), int(grid.overlap)))


def resolve_output_dir(path: str | None) -> str:
    """A relative (or empty: the data dir itself) output folder resolved against the data dir, not the process
    working directory."""
    folder = Path(str(path or ""))
    data_dir = getattr(getattr(current().runtime, "paths", None), "data_dir", None)
    return str(folder if folder.is_absolute() or data_dir is None else Path(data_dir) / folder)


def save_image(image: Image.Image, path: str, basename: str = "", seed: int | None = None, prompt: str | None = None,
               extension: str = "png", info: str | None = None, short_filename: bool = False,
               no_prompt: bool = False, grid: bool = False, pnginfo_section_name: str = "parameters", p: Any = None,
               existing_info: dict[str, Any] | None = None, forced_filename: str | None = None, suffix: str = "",
               save_to_dirs: bool | None = None) -> tuple[str, str | None]:
    """Save like A1111 and return ``(fullfn, txt_fullfn)`` (the second is None: no .txt side files)."""
    from app.outputs.save import save_image as save

    saved = save(image, resolve_output_dir(path), infotext=info, seed=seed, prompt=None if no_prompt else prompt, basename=basename,
                 extension=extension.lstrip("."), suffix=suffix, forced_filename=forced_filename,
                 short_filename=short_filename, save_to_dirs=bool(save_to_dirs), existing_info=existing_info)
    return str(saved), None


def flatten(img: Image.Image, bgcolor: str) -> Image.Image:
    """Replace transparency with ``bgcolor`` (A1111 ``images.flatten``)."""
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, bgcolor)
        background.paste(img, mask=img)
        img = background
    return img.convert("RGB")


def resize_image(resize_mode: int, im: Image.Image, width: int, height: int, upscaler_name: str | None = None) -> Image.Image:
    """A1111 resize modes 0 (just resize), 1 (crop and resize), 2 (resize and fill), with Lanczos."""
    if resize_mode == 0:
        return im.resize((width, height), Image.LANCZOS)
    ratio, src_ratio = width / height, im.width / im.height
    if resize_mode == 1:
        src_w = width if ratio > src_ratio else im.width * height // im.height
        src_h = height if ratio <= src_ratio else im.height * width // im.width
        resized = im.resize((src_w, src_h), Image.LANCZOS)
        out = Image.new("RGB", (width, height))
        out.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
        return out
    src_w = width if ratio < src_ratio else im.width * height // im.height
    src_h = height if ratio >= src_ratio else im.height * width // im.width
    resized = im.resize((src_w, src_h), Image.LANCZOS)
    out = Image.new("RGB", (width, height))
    out.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    if ratio < src_ratio and height > src_h:  # fill the bands by stretching the edge rows
        fill = height // 2 - src_h // 2
        out.paste(resized.resize((width, fill), box=(0, 0, width, 0)), box=(0, 0))
        out.paste(resized.resize((width, fill), box=(0, resized.height, width, resized.height)), box=(0, fill + src_h))
    elif ratio > src_ratio and width > src_w:
        fill = width // 2 - src_w // 2
        out.paste(resized.resize((fill, height), box=(0, 0, 0, height)), box=(0, 0))
        out.paste(resized.resize((fill, height), box=(resized.width, 0, resized.width, height)), box=(fill + src_w, 0))
    return out


def image_grid(imgs: list[Image.Image], batch_size: int = 1, rows: int | None = None) -> Image.Image:
    """The images in a grid of ``rows`` rows (default: about square), as A1111's ``image_grid``."""
    if not imgs:
        raise ValueError("image_grid: no images")
    if rows is None:
        rows = max(1, round(math.sqrt(len(imgs))))
    rows = min(rows, len(imgs))
    cols = math.ceil(len(imgs) / rows)
    w, h = imgs[0].size
    grid = Image.new("RGB", size=(cols * w, rows * h), color="black")
    for i, img in enumerate(imgs):
        grid.paste(img, box=(i % cols * w, i // cols * h))
    return grid
