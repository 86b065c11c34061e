"""Embedding and upscaler model files: which files under the embeddings and ESRGAN/RealESRGAN/SwinIR/DAT folders
count, and under which names (spec §9.2). Split out of `index` because these two kinds are plain file listings: no
hashes at scan time, no aliases, no parts; `index.Catalog` caches the lists and answers the lookups.

Pure module (no torch): it reads folder listings and file sizes only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

from app.models.catalog.scan import walk_files

EMBEDDING_EXTENSIONS = (".pt", ".bin", ".safetensors", ".png", ".webp", ".jxl", ".avif")
_IMAGE_EXTENSIONS = (".png", ".webp", ".jxl", ".avif")
UPSCALER_EXTENSIONS = (".pth", ".pt", ".safetensors", ".ckpt")
#: (Paths attribute, kind) of the upscaler model folders; kind is the A1111 folder name.
UPSCALER_KINDS: tuple[tuple[str, str], ...] = (
    ("esrgan_dirs", "ESRGAN"),
    ("realesrgan_dirs", "RealESRGAN"),
    ("swinir_dirs", "SwinIR"),
    ("dat_dirs", "DAT"),
)


class EmbeddingFile(NamedTuple):
    """A textual-inversion file: `name` = file name without its last extension."""

    name: str
    path: Path


class UpscalerFile(NamedTuple):
    """An upscaler model file: `name` = file stem (as A1111 shows it), kind = "ESRGAN"|"RealESRGAN"|"SwinIR"|"DAT"."""

    name: str
    path: Path
    kind: str


def list_embedding_files(dirs: Iterable[Path]) -> list[EmbeddingFile]:
    """Textual-inversion files under *dirs* (recursive), skipping zero-byte and unreadable files and
    `*.preview.<image>` pictures (A1111 keeps card previews next to the embeddings)."""
    out: list[EmbeddingFile] = []
    for path in walk_files(tuple(dirs), EMBEDDING_EXTENSIONS):
        stem, ext = os.path.splitext(path.name)
        if ext.lower() in _IMAGE_EXTENSIONS and os.path.splitext(stem)[1].lower() == ".preview":
            continue
        try:
            if path.stat().st_size == 0:
                continue
        except OSError:
            continue
        out.append(EmbeddingFile(stem, path))
    return out


def list_upscaler_files(dirs_of: Callable[[str], tuple[Path, ...]]) -> list[UpscalerFile]:
    """Upscaler model files of every kind in `UPSCALER_KINDS`; `dirs_of(attr)` gives the folders of one kind."""
    out: list[UpscalerFile] = []
    for attr, kind in UPSCALER_KINDS:
        for path in walk_files(dirs_of(attr), UPSCALER_EXTENSIONS):
            out.append(UpscalerFile(os.path.splitext(path.name)[0], path, kind))
    return out
