"""Where Atelier's files live: the A1111 folder layout under one data dir, with per-folder overrides.

`Paths.from_data_dir(dir)` gives the default layout; `paths_from_args(args)` applies `--data-dir`, `--models-dir`,
`--ckpt-dir`, `--vae-dir`, `--diffusion-models-dir` (`--unet-dir`), `--text-encoders-dir` (`--clip-dir`), `--lora-dir`, `--embeddings-dir`, `--esrgan-models-path` and friends. Nothing is created
here at import or construction: `Paths.ensure_dirs()` is called by the Runtime when it starts.
Pure module: no torch, no gradio.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from pathlib import Path

#: The package folder's parent: the install (repo) root.
INSTALL_DIR = Path(__file__).resolve().parent.parent

#: Model sub-folders created at start (A1111 names), relative to the models dir.
MODEL_SUBDIRS: tuple[str, ...] = (
    "Stable-diffusion", "VAE", "Lora", "LyCORIS", "hypernetworks", "ESRGAN", "RealESRGAN", "SwinIR", "DAT",
    "VAE-approx", "VAE-taesd", "diffusion_models", "text_encoders",
)
#: ComfyUI's other names of the split-file folders: scanned when present, never created
ALIAS_SUBDIRS: tuple[str, ...] = ("unet", "clip", "vae")


def default_data_dir(cwd: Path | None = None) -> Path:
    """The install root when it holds `models/` (a git checkout), else the current directory."""
    if (INSTALL_DIR / "models").is_dir():
        return INSTALL_DIR
    return (cwd or Path.cwd()).resolve()


def _unique(paths: list[Path]) -> tuple[Path, ...]:
    seen: list[Path] = []
    for p in paths:
        if p not in seen:
            seen.append(p)
    return tuple(seen)


@dataclass(frozen=True)
class Paths:
    """Absolute locations of every folder and file Atelier reads or writes.

    Lists of folders are searched in order; the first entry is where new files go.
    """

    data_dir: Path
    models_dir: Path
    ckpt_dirs: tuple[Path, ...]
    vae_dirs: tuple[Path, ...]
    lora_dirs: tuple[Path, ...]
    embeddings_dirs: tuple[Path, ...]
    hypernetwork_dirs: tuple[Path, ...]
    esrgan_dirs: tuple[Path, ...]
    realesrgan_dirs: tuple[Path, ...]
    swinir_dirs: tuple[Path, ...]
    dat_dirs: tuple[Path, ...]
    extensions_dir: Path
    outputs_dir: Path
    log_dir: Path
    config_file: Path
    ui_config_file: Path
    styles_file: Path
    cache_file: Path
    params_file: Path
    styles_files: tuple[Path, ...] = field(default=())
    #: diffusion models alone (ComfyUI split layout: Z-Image ...): models/diffusion_models, models/unet
    diffusion_model_dirs: tuple[Path, ...] = field(default=())
    #: text encoders alone (qwen_3_4b ...): models/text_encoders, models/clip
    text_encoder_dirs: tuple[Path, ...] = field(default=())
    #: VAE folders of the split layout besides `vae_dirs` (models/vae, distinct from models/VAE on Linux)
    extra_vae_dirs: tuple[Path, ...] = field(default=())
    #: `--ckpt FILE`: an extra checkpoint listed (and loaded at start) besides the folders.
    ckpt_file: Path | None = None
    #: `--vae-path FILE`: the VAE used for every checkpoint.
    vae_file: Path | None = None

    @classmethod
    def from_data_dir(cls, data_dir: Path | str, models_dir: Path | str | None = None) -> Paths:
        """The A1111 layout under `data_dir` (models in `data_dir/models` unless `models_dir` is given)."""
        data = Path(data_dir).expanduser().resolve()
        models = Path(models_dir).expanduser().resolve() if models_dir else data / "models"
        styles = data / "styles.csv"
        return cls(
            data_dir=data,
            models_dir=models,
            ckpt_dirs=(models / "Stable-diffusion",),
            vae_dirs=(models / "VAE",),
            lora_dirs=(models / "Lora", models / "LyCORIS"),
            embeddings_dirs=(data / "embeddings",),
            hypernetwork_dirs=(models / "hypernetworks",),
            esrgan_dirs=(models / "ESRGAN",),
            realesrgan_dirs=(models / "RealESRGAN",),
            swinir_dirs=(models / "SwinIR",),
            dat_dirs=(models / "DAT",),
            extensions_dir=data / "extensions",
            outputs_dir=data / "outputs",
            log_dir=data / "log",
            config_file=data / "config.json",
            ui_config_file=data / "ui-config.json",
            styles_file=styles,
            cache_file=data / "cache.json",
            params_file=data / "params.txt",
            styles_files=(styles,),
            diffusion_model_dirs=(models / "diffusion_models", models / "unet"),
            text_encoder_dirs=(models / "text_encoders", models / "clip"),
            extra_vae_dirs=(models / "vae",),
        )

    def resolve(self, path: str | Path) -> Path:
        """A path from a setting (e.g. `outputs/txt2img-images`): relative ones are taken from the data dir."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.data_dir / p

    def all_model_dirs(self) -> tuple[Path, ...]:
        """Every model folder, for creating them and for the UI's folder listing."""
        groups = (self.ckpt_dirs, self.vae_dirs, self.lora_dirs, self.hypernetwork_dirs, self.esrgan_dirs,
                  self.realesrgan_dirs, self.swinir_dirs, self.dat_dirs, self.diffusion_model_dirs,
                  self.text_encoder_dirs)
        extra = tuple(self.models_dir / name for name in MODEL_SUBDIRS)
        aliases = {self.models_dir / name for name in ALIAS_SUBDIRS}
        return _unique([p for group in groups for p in group if p not in aliases] + list(extra))

    def module_vae_dirs(self) -> tuple[Path, ...]:
        """Every folder whose VAE files a split-file model may use: the VAE dirs, then models/vae if distinct."""
        return _unique([*self.vae_dirs, *self.extra_vae_dirs])

    def ensure_dirs(self) -> None:
        """Create the data dir and the standard folders when missing (called once by the Runtime at start)."""
        for d in (self.data_dir, self.models_dir, *self.all_model_dirs(), *self.embeddings_dirs,
                  self.extensions_dir, self.outputs_dir):
            d.mkdir(parents=True, exist_ok=True)


def _abs(value: str | None) -> Path | None:
    """A flag value as an absolute path (relative flags are relative to the current directory, as in A1111)."""
    return Path(value).expanduser().resolve() if value else None


def paths_from_args(args: argparse.Namespace) -> Paths:
    """Paths for parsed flags: `--data-dir` first, then each per-folder flag replaces or extends its default."""
    data_dir = _abs(getattr(args, "data_dir", None)) or default_data_dir()
    base = Paths.from_data_dir(data_dir, _abs(getattr(args, "models_dir", None)))
    models = base.models_dir

    def flag(name: str) -> Path | None:
        return _abs(getattr(args, name, None))

    ckpt_dir, vae_dir = flag("ckpt_dir"), flag("vae_dir")
    dm_dir, te_dir = flag("diffusion_models_dir"), flag("text_encoders_dir")
    lora_dir, lyco_dir = flag("lora_dir"), flag("lyco_dir_backcompat")
    styles = [_abs(s) for s in (getattr(args, "styles_file", None) or [])]
    styles_files = tuple(p for p in styles if p is not None) or base.styles_files
    return replace(
        base,
        # --ckpt-dir and --vae-dir add a folder (A1111 scans both the models folder and the flag's folder).
        ckpt_dirs=_unique([*base.ckpt_dirs, *([ckpt_dir] if ckpt_dir else [])]),
        vae_dirs=_unique([*base.vae_dirs, *([vae_dir] if vae_dir else [])]),
        diffusion_model_dirs=_unique([*base.diffusion_model_dirs, *([dm_dir] if dm_dir else [])]),
        text_encoder_dirs=_unique([*base.text_encoder_dirs, *([te_dir] if te_dir else [])]),
        # The others replace their default folder.
        lora_dirs=_unique([lora_dir or models / "Lora", lyco_dir or models / "LyCORIS"]),
        embeddings_dirs=(flag("embeddings_dir") or base.embeddings_dirs[0],),
        hypernetwork_dirs=(flag("hypernetwork_dir") or base.hypernetwork_dirs[0],),
        esrgan_dirs=(flag("esrgan_models_path") or base.esrgan_dirs[0],),
        realesrgan_dirs=(flag("realesrgan_models_path") or base.realesrgan_dirs[0],),
        swinir_dirs=(flag("swinir_models_path") or base.swinir_dirs[0],),
        dat_dirs=(flag("dat_models_path") or base.dat_dirs[0],),
        config_file=flag("ui_settings_file") or base.config_file,
        ui_config_file=flag("ui_config_file") or base.ui_config_file,
        styles_file=styles_files[0],
        styles_files=styles_files,
        ckpt_file=flag("ckpt"),
        vae_file=flag("vae_path"),
    )
