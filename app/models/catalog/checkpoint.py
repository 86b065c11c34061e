"""Checkpoint names in A1111's formats (spec §5): `CheckpointInfo` and how it is built from a path.

Pure module (no torch).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from app.models.hashes import old_model_hash

CHECKPOINT_EXTENSIONS = (".ckpt", ".safetensors")
CHECKPOINT_EXCLUDED_SUFFIXES = (".vae.ckpt", ".vae.safetensors")


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint file (or diffusers folder) with A1111's names (spec §5).

    For `models/Stable-diffusion/sub/foo.safetensors`: name `sub/foo.safetensors`, name_for_extra `foo`
    (the infotext `Model:`), model_name `sub_foo`, title `sub/foo.safetensors [abcdef0123]` once the sha256 is
    known (else the name), short_title `foo [abcdef0123]`, shorthash = sha256[:10], old_hash = the 8-hex legacy
    hash ("" for folders).
    """

    filename: str
    name: str
    name_for_extra: str
    model_name: str
    title: str
    short_title: str
    shorthash: str | None
    sha256: str | None
    old_hash: str
    is_folder: bool = False

    @property
    def cache_title(self) -> str:
        """The cache.json title: `checkpoint/<name>`."""
        return f"checkpoint/{self.name}"

    def with_sha256(self, sha256: str) -> CheckpointInfo:
        """This info once its full sha256 is known (the title gains `[shorthash]`)."""
        short = sha256[:10]
        return replace(
            self,
            sha256=sha256,
            shorthash=short,
            title=f"{self.name} [{short}]",
            short_title=f"{self.name_for_extra} [{short}]",
        )

    def as_api(self) -> dict[str, str | None]:
        """The `/sdapi/v1/sd-models` item."""
        return {
            "title": self.title,
            "model_name": self.model_name,
            "hash": self.shorthash,
            "sha256": self.sha256,
            "filename": self.filename,
            "config": None,
        }

    @property
    def ids(self) -> list[str]:
        """Lookup aliases in A1111's order."""
        ids = [self.model_name, self.title, self.name, self.name_for_extra]
        if self.old_hash:
            ids = [self.old_hash, *ids, f"{self.name} [{self.old_hash}]"]
        if self.shorthash and self.sha256:
            ids += [
                self.shorthash,
                self.sha256,
                f"{self.name} [{self.shorthash}]",
                f"{self.name_for_extra} [{self.shorthash}]",
            ]
        return ids


def is_diffusers_folder(path: Path) -> bool:
    """A folder holding a diffusers pipeline (`model_index.json`)."""
    return (path / "model_index.json").is_file()


def _checkpoint_name(path: Path, ckpt_dirs: Sequence[Path]) -> str:
    """Path relative to the deepest checkpoint dir holding it (posix separators), else the basename."""
    absolute = Path(os.path.abspath(path))
    best: str | None = None
    best_depth = -1
    for folder in ckpt_dirs:
        base = Path(os.path.abspath(folder))
        try:
            rel = absolute.relative_to(base)
        except ValueError:
            continue
        if rel.parts and len(base.parts) > best_depth:
            best, best_depth = rel.as_posix(), len(base.parts)
    return best if best is not None else absolute.name


def checkpoint_info_for(
    path: Path | str, ckpt_dirs: Sequence[Path], sha256: str | None = None, old_hash: str | None = None
) -> CheckpointInfo:
    """Build the names of one checkpoint file or diffusers folder (hashes given or computed: old hash only)."""
    p = Path(path)
    is_folder = p.is_dir()
    name = _checkpoint_name(p, ckpt_dirs)
    flat = name.replace("/", "_").replace("\\", "_")
    if is_folder:
        name_for_extra, model_name = os.path.basename(name), flat
    else:
        name_for_extra, model_name = os.path.splitext(p.name)[0], os.path.splitext(flat)[0]
    if old_hash is None:
        old_hash = "" if is_folder else old_model_hash(p)
    shorthash = sha256[:10] if sha256 else None
    return CheckpointInfo(
        filename=os.path.abspath(p),
        name=name,
        name_for_extra=name_for_extra,
        model_name=model_name,
        title=f"{name} [{shorthash}]" if shorthash else name,
        short_title=f"{name_for_extra} [{shorthash}]" if shorthash else name_for_extra,
        shorthash=shorthash,
        sha256=sha256 or None,
        old_hash=old_hash,
        is_folder=is_folder,
    )
