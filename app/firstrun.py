"""What a first run without a model tells the user, in one place: where checkpoints go (the real absolute folder),
which model families Atelier loads, and the download command exactly as it must be typed.

The console (the Runtime's start-up warning), the page (`app.ui.firstrun`) and the "no checkpoint" error of the
model manager all read it from here, so they cannot disagree. `SUPPORTED_FAMILIES` is the one list of loadable
families shown to users: a new family adds its line there when its loader lands.
Pure module: no torch, no gradio.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from app.paths import INSTALL_DIR, Paths

#: The download tool's module and its starter model (see `app.devtools.download.DOWNLOADS`).
DOWNLOAD_MODULE = "app.devtools.download"
STARTER_MODEL = "sd15"
STARTER_DESCRIPTION = "Stable Diffusion 1.5 (4.3 GB, checked against its sha256)"
CHECKPOINT_FILES = ".safetensors or .ckpt"


@dataclass(frozen=True)
class Family:
    """A model family users can load: `label` as shown to users, `variants` the kinds of files that work."""

    key: str
    label: str
    variants: str
    split: bool = False  # ComfyUI's split files (diffusion model, text encoder, VAE), not one checkpoint


#: The families the loader supports today, in the order shown to users.
SUPPORTED_FAMILIES: tuple[Family, ...] = (
    Family("sd1", "SD 1.x", "Stable Diffusion 1.4/1.5 and their fine-tunes, inpainting models"),
    Family("sd2", "SD 2.x", "512 and 768 (v-prediction) models, inpainting models"),
    Family("sdxl", "SDXL", "SDXL 1.0 base and its fine-tunes, inpainting models, the SDXL refiner"),
    Family("zimage", "Z-Image Turbo", "ComfyUI's split files: the diffusion model in models/diffusion_models, "
           "qwen_3_4b.safetensors in models/text_encoders, the FLUX VAE ae.safetensors in models/VAE", split=True),
    Family("flux", "FLUX.1 dev/schnell/Fill", "ComfyUI's split files: the diffusion model in models/diffusion_models, "
           "clip_l.safetensors and t5xxl_fp16.safetensors in models/text_encoders, ae.safetensors in models/VAE "
           "(or one all-in-one checkpoint in models/Stable-diffusion)", split=True),
    Family("sd3", "SD3.5 large/medium", "Stability's sd3.5_large/medium.safetensors in models/Stable-diffusion with "
           "clip_l, clip_g and t5xxl_fp16.safetensors in models/text_encoders (or the diffusion model in "
           "models/diffusion_models and the SD3 VAE in models/VAE)", split=True),
)


def family_labels(families: tuple[Family, ...] = SUPPORTED_FAMILIES, split: bool | None = False) -> str:
    """`"SD 1.x, SD 2.x, SDXL"`: the families in one line (``split``: False = one-file checkpoints, True = the
    split-file families, None = all)."""
    return ", ".join(f.label for f in families if split is None or f.split == split)


def split_file_hint(families: tuple[Family, ...] = SUPPORTED_FAMILIES) -> str:
    """`"Z-Image Turbo: ComfyUI's split files: ..."` for the families that come as split files."""
    return "; ".join(f"{f.label}: {f.variants}" for f in families if f.split)


def no_checkpoint_message(folder: Path) -> str:
    """The error of a job that needs a checkpoint when there is none (no class name, the absolute folder)."""
    split = split_file_hint()
    return (f"no checkpoint found: put a {CHECKPOINT_FILES} file ({family_labels()}) into {folder}"
            + (f" (or {split})" if split else "")
            + ", then press the refresh button next to the checkpoint list")


def _shown_python(python: str, install_dir: Path) -> str:
    """The interpreter as the user types it from the install folder: relative when it lives inside it
    (`venv/bin/python`), else its absolute path."""
    path = Path(python)
    try:
        rel = path.relative_to(install_dir)
    except ValueError:
        return str(path)
    return str(rel) if len(rel.parts) > 1 else f".{os.sep}{rel}"


def download_commands(data_dir: Path, models_dir: Path, *, python: str | None = None,
                      install_dir: Path = INSTALL_DIR) -> list[str]:
    """The shell lines that download the starter model into the folder this server reads: `cd` into the install
    folder, then the download tool run by this server's own Python, with `--data-dir`/`--models-dir` only when
    they differ from what the tool assumes there."""
    shown = _shown_python(python or sys.executable, install_dir)
    command = [shown, "-m", DOWNLOAD_MODULE, STARTER_MODEL]
    if Path(data_dir).resolve() != Path(install_dir).resolve():
        command += ["--data-dir", str(data_dir)]
    if Path(models_dir).resolve() != (Path(data_dir) / "models").resolve():
        command += ["--models-dir", str(models_dir)]
    return [f"cd {shlex.quote(str(install_dir))}", shlex.join(command)]


@dataclass(frozen=True)
class FirstRunGuide:
    """Everything the "no model yet" hint says."""

    folder: Path  # where checkpoints go (absolute)
    families: tuple[Family, ...]
    download: list[str] | None  # shell lines; None with --no-download-sd-model

    def text(self) -> str:
        """The console version (one log message)."""
        lines = [f"no checkpoint found. Put a {CHECKPOINT_FILES} checkpoint ({family_labels(self.families)}) into",
                 f"    {self.folder}"]
        split = split_file_hint(self.families)
        if split:
            lines.append(f"or {split}")
        if self.download:
            lines += [f"or download {STARTER_DESCRIPTION} with:", *(f"    {line}" for line in self.download)]
        return "\n".join(lines)


def first_run_guide(paths: Paths, no_download: bool = False, *, python: str | None = None,
                    install_dir: Path = INSTALL_DIR) -> FirstRunGuide:
    """The guide for a runtime's `paths` (`app.paths.Paths`); `no_download` is `--no-download-sd-model`."""
    data_dir, models_dir, folder = Path(paths.data_dir), Path(paths.models_dir), Path(paths.ckpt_dirs[0])
    download = None if no_download else download_commands(data_dir, models_dir, python=python,
                                                          install_dir=install_dir)
    return FirstRunGuide(folder=folder, families=SUPPORTED_FAMILIES, download=download)
