"""``modules.img2img``: ``process_batch`` - run an img2img ``p`` over every image of a folder (with masks of the
same name from ``inpaint_mask_dir``) and save the results to ``output_dir``, as A1111's batch tab does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def _images(folder: str) -> list[Path]:
    root = Path(folder)
    return sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if root.is_dir() else []


def process_batch(p: Any, input_dir: str, output_dir: str, inpaint_mask_dir: str, args: Any = None,
                  to_scale: bool = False, scale_by: float = 1.0, use_png_info: bool = False,
                  png_info_props: Any = None, png_info_dir: Any = None) -> Any:
    """Process each image of ``input_dir``; returns the last ``Processed`` (None for an empty folder)."""
    from app.plugins.compat.images import save_image
    from app.plugins.compat.processing import process_images

    files = _images(input_dir)
    masks = {m.stem: m for m in _images(inpaint_mask_dir)} if inpaint_mask_dir else {}
    processed = None
    for file in files:
        with Image.open(file) as raw:
            image = ImageOps.exif_transpose(raw).convert("RGB")
        p.init_images = [image] * max(1, int(p.batch_size))
        if to_scale:
            p.width, p.height = int(image.width * scale_by), int(image.height * scale_by)
        if file.stem in masks:
            with Image.open(masks[file.stem]) as mask:
                p.image_mask = mask.copy()
        processed = process_images(p)
        if output_dir:
            os.makedirs(output_dir, exist_ok=True)
            for n, result in enumerate(processed.images):
                name = file.stem if n == 0 else f"{file.stem}-{n}"
                save_image(result, output_dir, "", forced_filename=name, extension="png",
                           info=processed.infotexts[n] if n < len(processed.infotexts) else None)
    return processed
