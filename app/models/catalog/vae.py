"""VAE files: the list behind the `sd_vae` setting and A1111's resolution order on model load (spec §9.2).

Pure module (no torch).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.models.catalog.scan import natural_sort_key, read_user_metadata, walk_files

log = logging.getLogger(__name__)

VAE_EXTENSIONS = (".ckpt", ".pt", ".safetensors")
#: Suffixes of VAE files kept next to checkpoints (only these are taken from checkpoint folders).
VAE_NEAR_SUFFIXES = (".vae.ckpt", ".vae.pt", ".vae.safetensors")

AUTOMATIC = "Automatic"
NONE = "None"

#: `resolve_vae` sources.
SOURCE_FLAG = "--vae-path"
SOURCE_SETTING = "setting"
SOURCE_USER_METADATA = "user metadata"
SOURCE_NEAR_CHECKPOINT = "near checkpoint"
SOURCE_NONE = "none"


@dataclass(frozen=True)
class VaeInfo:
    """One VAE file. `name` is the file's basename (the `sd_vae` value); `filename` its absolute path."""

    name: str
    filename: str

    def as_api(self) -> dict[str, str]:
        """The `/sdapi/v1/sd-vae` item."""
        return {"model_name": self.name, "filename": self.filename}


def is_automatic(value: str | None) -> bool:
    """ "Automatic" (also the legacy "auto", and empty) means: pick per checkpoint."""
    return value in (None, "", AUTOMATIC, "auto")


def list_vaes(ckpt_dirs: Sequence[Path], vae_dirs: Sequence[Path]) -> list[VaeInfo]:
    """`*.vae.{ckpt,pt,safetensors}` under checkpoint dirs and any `.ckpt/.pt/.safetensors` under VAE dirs.

    Keyed by basename (a later folder wins a name clash, scanning models/Stable-diffusion, models/VAE,
    then --ckpt-dir, --vae-dir as A1111 does) and naturally sorted by name.
    """
    groups: list[tuple[Path, bool]] = []
    for i in range(max(len(ckpt_dirs), len(vae_dirs))):
        if i < len(ckpt_dirs):
            groups.append((Path(ckpt_dirs[i]), True))
        if i < len(vae_dirs):
            groups.append((Path(vae_dirs[i]), False))
    by_name: dict[str, str] = {}
    for folder, near_only in groups:
        for path in walk_files([folder], VAE_EXTENSIONS):
            if near_only and not path.name.lower().endswith(VAE_NEAR_SUFFIXES):
                continue
            by_name[path.name] = os.path.abspath(path)
    return [VaeInfo(name, by_name[name]) for name in sorted(by_name, key=natural_sort_key)]


def find_vae_near_checkpoint(vaes: Sequence[VaeInfo], checkpoint_filename: str | os.PathLike[str]) -> VaeInfo | None:
    """The first VAE whose basename starts with the checkpoint's basename minus its last extension."""
    stem = os.path.basename(os.fspath(checkpoint_filename).rstrip("/\\")).rsplit(".", 1)[0]
    for vae in vaes:
        if os.path.basename(vae.filename).startswith(stem):
            return vae
    return None


def _from_setting(by_name: dict[str, VaeInfo], value: str | None) -> tuple[VaeInfo | None, str]:
    if value == NONE:
        return None, SOURCE_SETTING
    found = by_name.get(value or "")
    if found is not None:
        return found, SOURCE_SETTING
    if not is_automatic(value):
        log.warning("Couldn't find VAE named %s; using None instead", value)
    return None, SOURCE_NONE


def resolve_vae(
    vaes: Sequence[VaeInfo],
    setting_value: str | None,
    checkpoint_filename: str | os.PathLike[str] | None,
    vae_path_flag: str | os.PathLike[str] | None = None,
    overrides_per_model: bool = True,
) -> tuple[VaeInfo | None, str]:
    """Which VAE to use when loading a checkpoint, and why (A1111 order, spec §9.2).

    1. `--vae-path` (FileNotFoundError when that file is missing);
    2. when `overrides_per_model` (setting `sd_vae_overrides_per_model_preferences`) and the setting is not
       Automatic: the setting ("None" → baked-in VAE; an unknown name warns and uses None);
    3. the checkpoint's user-metadata sidecar `vae` ("None" → baked-in);
    4. a VAE near the checkpoint (`foo.safetensors` → `foo.vae.pt`, ...);
    5. the setting value.
    Returns (None, source) for "use the checkpoint's own VAE"; source is one of "--vae-path", "setting",
    "user metadata", "near checkpoint", "none".
    """
    if vae_path_flag:
        path = Path(vae_path_flag)
        if not path.is_file():
            raise FileNotFoundError(f"--vae-path: VAE file not found: {path}")
        return VaeInfo(path.name, os.path.abspath(path)), SOURCE_FLAG
    by_name = {v.name: v for v in vaes}
    if overrides_per_model and not is_automatic(setting_value):
        return _from_setting(by_name, setting_value)
    if checkpoint_filename:
        wanted = read_user_metadata(checkpoint_filename).get("vae")
        if isinstance(wanted, str) and not is_automatic(wanted):
            if wanted == NONE:
                return None, SOURCE_USER_METADATA
            if wanted in by_name:
                return by_name[wanted], SOURCE_USER_METADATA
        near = find_vae_near_checkpoint(vaes, checkpoint_filename)
        if near is not None:
            return near, SOURCE_NEAR_CHECKPOINT
    return _from_setting(by_name, setting_value)
