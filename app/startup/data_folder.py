"""Start-up scans of the data folder that need neither the model catalog nor torch: whether any checkpoint file
exists (the first-run guide, the warm-up) and the clean-up of temp files that an interrupted atomic write left.

Split out of `app.runtime` (which calls both at start) because they read only `app.paths.Paths` and the settings:
cheap folder walks the server can do before, and without, the generation stack.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.outputs.fileio import remove_stale_temp_files
from app.paths import Paths

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")


def has_checkpoints(paths: Paths) -> bool:
    """Whether any checkpoint file exists (a cheap scan, without importing the catalog): `--ckpt`, a single-file
    checkpoint or diffusers folder in the checkpoint folders, or a split-file model (Z-Image, FLUX)."""
    if paths.ckpt_file is not None and paths.ckpt_file.is_file():
        return True
    for folder in paths.ckpt_dirs:
        if folder.is_dir():
            for p in folder.rglob("*"):
                if p.name == "model_index.json" or (
                        p.suffix in CHECKPOINT_SUFFIXES and ".vae." not in p.name and p.is_file()):
                    return True  # a single-file checkpoint or a diffusers folder
    for folder in getattr(paths, "diffusion_model_dirs", ()):  # split-file models (Z-Image, FLUX)
        if folder.is_dir():
            for p in folder.rglob("*"):
                if p.name == "model_index.json" or (p.suffix in (*CHECKPOINT_SUFFIXES, ".gguf") and p.is_file()):
                    return True
    return False


def clean_interrupted_writes(paths: Paths, settings: Any) -> list[Path]:
    """Delete the temp files that atomic writes left when a previous run died mid-write: next to config.json,
    ui-config.json, styles, cache.json, params.txt (only temp files of those names) and in the output folders
    (`outputs/`, `log/images` and every `outdir_*` of *settings*, three levels deep). Returns the removed paths."""
    p = paths
    removed: list[Path] = []
    named: dict[Path, set[str]] = {}
    for file in (p.config_file, p.ui_config_file, p.cache_file, p.params_file, p.styles_file, *p.styles_files,
                 p.data_dir / "last_used.json"):
        named.setdefault(Path(file).parent, set()).add(Path(file).name)
    for folder, names in named.items():
        removed += remove_stale_temp_files(folder, targets=names)
    outputs = {p.outputs_dir, p.log_dir / "images"}
    for info in settings.options():
        value = settings.get(info.key)
        if info.key.startswith("outdir_") and isinstance(value, str) and value.strip():
            outputs.add(p.resolve(value.strip()))
    for folder in sorted(outputs):
        removed += remove_stale_temp_files(folder, depth=3)
    return removed
