"""Folder layout: --data-dir, per-folder flags, default data dir, lazy folder creation."""

from __future__ import annotations

from pathlib import Path

import pytest

import app.paths as paths_module
from app.cli import parse_args
from app.paths import Paths, default_data_dir, paths_from_args


def paths_for(*argv: str) -> Paths:
    return paths_from_args(parse_args(list(argv), environ={}))


@pytest.mark.parametrize(
    ("attr", "relative"),
    [
        ("models_dir", "models"),
        ("extensions_dir", "extensions"),
        ("outputs_dir", "outputs"),
        ("log_dir", "log"),
        ("config_file", "config.json"),
        ("ui_config_file", "ui-config.json"),
        ("styles_file", "styles.csv"),
        ("cache_file", "cache.json"),
        ("params_file", "params.txt"),
    ],
)
def test_data_dir_files(tmp_path, attr, relative):
    assert getattr(paths_for("--data-dir", str(tmp_path)), attr) == tmp_path / relative


@pytest.mark.parametrize(
    ("attr", "relatives"),
    [
        ("ckpt_dirs", ["models/Stable-diffusion"]),
        ("vae_dirs", ["models/VAE"]),
        ("lora_dirs", ["models/Lora", "models/LyCORIS"]),
        ("embeddings_dirs", ["embeddings"]),
        ("hypernetwork_dirs", ["models/hypernetworks"]),
        ("esrgan_dirs", ["models/ESRGAN"]),
        ("realesrgan_dirs", ["models/RealESRGAN"]),
        ("swinir_dirs", ["models/SwinIR"]),
        ("dat_dirs", ["models/DAT"]),
    ],
)
def test_data_dir_folders(tmp_path, attr, relatives):
    assert getattr(paths_for("--data-dir", str(tmp_path)), attr) == tuple(tmp_path / r for r in relatives)


def test_from_data_dir_equals_flag(tmp_path):
    assert Paths.from_data_dir(tmp_path) == paths_for("--data-dir", str(tmp_path))


@pytest.mark.parametrize(
    ("flag", "attr", "expected"),
    [
        # --ckpt-dir and --vae-dir add a folder after the models folder
        ("--ckpt-dir", "ckpt_dirs", ("models/Stable-diffusion", "X")),
        ("--vae-dir", "vae_dirs", ("models/VAE", "X")),
        # the others replace their default
        ("--lora-dir", "lora_dirs", ("X", "models/LyCORIS")),
        ("--lyco-dir-backcompat", "lora_dirs", ("models/Lora", "X")),
        ("--embeddings-dir", "embeddings_dirs", ("X",)),
        ("--hypernetwork-dir", "hypernetwork_dirs", ("X",)),
        ("--esrgan-models-path", "esrgan_dirs", ("X",)),
        ("--realesrgan-models-path", "realesrgan_dirs", ("X",)),
        ("--swinir-models-path", "swinir_dirs", ("X",)),
        ("--dat-models-path", "dat_dirs", ("X",)),
        ("--ui-settings-file", "config_file", "X"),
        ("--ui-config-file", "ui_config_file", "X"),
        ("--styles-file", "styles_file", "X"),
        ("--ckpt", "ckpt_file", "X"),
        ("--vae-path", "vae_file", "X"),
    ],
)
def test_per_folder_flags(tmp_path, flag, attr, expected):
    data, other = tmp_path / "data", tmp_path / "elsewhere"
    got = getattr(paths_for("--data-dir", str(data), flag, str(other)), attr)

    def resolve(rel: str) -> Path:
        return other if rel == "X" else data / rel

    assert got == (tuple(resolve(r) for r in expected) if isinstance(expected, tuple) else resolve(expected))


def test_models_dir_moves_every_model_folder(tmp_path):
    p = paths_for("--data-dir", str(tmp_path / "d"), "--models-dir", str(tmp_path / "m"))
    assert p.models_dir == tmp_path / "m"
    assert p.ckpt_dirs == (tmp_path / "m" / "Stable-diffusion",)
    assert p.lora_dirs == (tmp_path / "m" / "Lora", tmp_path / "m" / "LyCORIS")
    assert p.esrgan_dirs == (tmp_path / "m" / "ESRGAN",)
    assert p.embeddings_dirs == (tmp_path / "d" / "embeddings",)  # embeddings are not under models/
    assert p.config_file == tmp_path / "d" / "config.json"


def test_several_styles_files(tmp_path):
    p = paths_for("--data-dir", str(tmp_path), "--styles-file", "a.csv", "--styles-file", str(tmp_path / "b.csv"))
    assert p.styles_files == (Path("a.csv").resolve(), tmp_path / "b.csv")
    assert p.styles_file == Path("a.csv").resolve()


def test_relative_flags_are_relative_to_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = paths_for("--data-dir", "data", "--lora-dir", "loras")
    assert p.data_dir == tmp_path / "data"
    assert p.lora_dirs[0] == tmp_path / "loras"


def test_default_data_dir_is_install_root_when_it_has_models(tmp_path, monkeypatch):
    install = tmp_path / "install"
    (install / "models").mkdir(parents=True)
    monkeypatch.setattr(paths_module, "INSTALL_DIR", install)
    assert default_data_dir() == install
    assert paths_for().data_dir == install


def test_default_data_dir_falls_back_to_cwd(tmp_path, monkeypatch):
    monkeypatch.setattr(paths_module, "INSTALL_DIR", tmp_path / "no-models-here")
    monkeypatch.chdir(tmp_path)
    assert default_data_dir() == tmp_path


def test_nothing_is_created_until_ensure_dirs(tmp_path):
    data = tmp_path / "fresh"
    p = paths_for("--data-dir", str(data))
    assert not data.exists()
    p.ensure_dirs()
    for rel in ("models/Stable-diffusion", "models/VAE", "models/Lora", "models/LyCORIS", "models/ESRGAN",
                "models/RealESRGAN", "models/SwinIR", "models/DAT", "embeddings", "extensions", "outputs"):
        assert (data / rel).is_dir(), rel
    assert not (data / "config.json").exists()


def test_resolve_setting_paths(tmp_path):
    p = Paths.from_data_dir(tmp_path)
    assert p.resolve("outputs/txt2img-images") == tmp_path / "outputs" / "txt2img-images"
    absolute = tmp_path / "abs"
    assert p.resolve(str(absolute)) == absolute
