"""``modules.images``: ``save_image`` (A1111 positional signature over ``app.outputs.save.save_image``),
``flatten`` and ``resize_image``."""

from __future__ import annotations

from typing import Any

from PIL import Image

# labelled grids (Prompt matrix, X/Y/Z plot)
from app.plugins.compat.grid_annotations import (  # noqa: F401 - re-exported as modules.images.*
    GridAnnotation,
    check_grid_size,
    draw_grid_annotations,
    draw_prompt_matrix,
)


def save_image(image: Image.Image, path: str, basename: str = "", seed: int | None = None, prompt: str | None = None,
               extension: str = "png", info: str | None = None, short_filename: bool = False,
               no_prompt: bool = False, grid: bool = False, pnginfo_section_name: str = "parameters", p: Any = None,
               existing_info: dict[str, Any] | None = None, forced_filename: str | None = None, suffix: str = "",
               save_to_dirs: bool | None = None) -> tuple[str, str | None]:
    """Save like A1111 and return ``(fullfn, txt_fullfn)`` (the second is None: no .txt side files)."""
    from app.outputs.save import save_image as save

    saved = save(image, path, infotext=info, seed=seed, prompt=None if no_prompt else prompt, basename=basename,
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
