"""Upscaler registry: A1111 names and stable ids, spandrel model files (tiny ESRGAN 32→128), tiled
inference equal to untiled, LRU, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from app.engine.image import upscalers as up
from app.paths import Paths


@pytest.fixture(scope="module")
def registry(tiny_data_dir):
    return up.UpscalerRegistry(Paths.from_data_dir(tiny_data_dir), cache_size=1)


def _noise(w=32, h=32, seed=0) -> Image.Image:
    rs = np.random.RandomState(seed)
    return Image.fromarray((rs.rand(h, w, 3) * 255).astype(np.uint8))


def test_listing_names_ids_and_order(registry):
    items = registry.list()
    assert [u.name for u in items[:3]] == ["None", "Lanczos", "Nearest"]
    esr = registry.find("tiny-esrgan-4x")
    assert esr.id == "esrgan:tiny-esrgan-4x" and esr.kind == "ESRGAN" and esr.scale == 4
    assert esr.model_path is not None and esr.model_path.name == "tiny-esrgan-4x.pth"
    assert esr.model_name == "ESRGAN"
    assert not any(u.is_latent for u in items)
    latents = [u.name for u in registry.list(include_latent=True) if u.is_latent]
    assert latents[0] == "Latent" and len(latents) == 6
    assert registry.find("LANCZOS").id == "lanczos" and registry.find("esrgan:tiny-esrgan-4x") is esr
    assert registry.find("tiny-esrgan-4x.pth") is esr


def test_unknown_and_latent_names_are_clear_errors(registry):
    with pytest.raises(up.UpscalerError, match="'nope' not found; available: None, Lanczos, Nearest, tiny-esrgan-4x"):
        registry.find("nope")
    with pytest.raises(up.UpscalerError, match="upscales latents"):
        registry.upscale(_noise(), "Latent (bicubic)", 2)
    with pytest.raises(up.UpscalerError, match="must be > 0"):
        registry.upscale(_noise(), "Lanczos", 0)


@pytest.mark.parametrize(("name", "scale", "size"), [("None", 2, (32, 32)), ("Lanczos", 2.5, (80, 80)),
                                                     ("Nearest", 3, (96, 96)), ("tiny-esrgan-4x", 4, (128, 128)),
                                                     ("tiny-esrgan-4x", 2, (64, 64)), ("tiny-esrgan-4x", 6, (192, 192))])
def test_upscale_sizes(registry, name, scale, size):
    assert registry.upscale(_noise(), name, scale, tile=0).size == size


def test_esrgan_tiled_equals_untiled(registry):
    img = _noise(40, 32)
    whole = np.asarray(registry.upscale(img, "tiny-esrgan-4x", 4, tile=0), np.float32)
    tiled = np.asarray(registry.upscale(img, "tiny-esrgan-4x", 4, tile=16, overlap=8), np.float32)
    assert whole.shape == tiled.shape == (128, 160, 3)
    assert np.abs(whole - tiled).mean() < 2.0


class _LocalModel:
    """A spandrel-like descriptor whose output depends on a small neighbourhood (bilinear x2)."""

    scale = 2
    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self):
        self.calls = []

    def __call__(self, x):
        self.calls.append(tuple(x.shape[-2:]))
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def test_tiled_blending_geometry_matches_whole_image():
    img = _noise(70, 45, seed=2)
    model = _LocalModel()
    whole = np.asarray(up.run_model_tiled(model, img, 0, 0), np.float32)
    tiled_model = _LocalModel()
    tiled = np.asarray(up.run_model_tiled(tiled_model, img, 24, 8), np.float32)
    assert whole.shape == tiled.shape == (90, 140, 3)
    assert len(tiled_model.calls) == 4 * 3 and set(tiled_model.calls) == {(24, 24)}  # only tiles on the device
    diff = np.abs(whole - tiled)
    assert diff.mean() < 1.0 and np.percentile(diff, 99) < 8


def test_lru_and_bad_model_file(tmp_path, tiny_data_dir):
    esrgan = tmp_path / "models" / "ESRGAN"
    esrgan.mkdir(parents=True)
    (esrgan / "broken.pth").write_bytes(b"not a model")
    (esrgan / "tiny.pth").write_bytes((tiny_data_dir / "models/ESRGAN/tiny-esrgan-4x.pth").read_bytes())
    reg = up.UpscalerRegistry(Paths.from_data_dir(tmp_path), cache_size=1)
    with pytest.raises(up.UpscalerError, match="broken.pth"):
        reg.upscale(_noise(8, 8), "broken", 4)
    reg.upscale(_noise(8, 8), "tiny", 4)
    reg.upscale(_noise(8, 8), "tiny", 4)
    assert reg.load_count == 1


def test_registry_and_hires_helpers(tiny_data_dir):
    reg = up.UpscalerRegistry(Paths.from_data_dir(tiny_data_dir))
    assert "tiny-esrgan-4x" in reg.names()
    assert [u.name for u in reg.list()][:3] == ["None", "Lanczos", "Nearest"]
    assert reg.upscale(_noise(), "tiny-esrgan-4x", 4).size == (128, 128)
    from app.engine.modes.hires import available_upscalers, upscale_image

    assert "tiny-esrgan-4x" in available_upscalers(reg) and "tiny-esrgan-4x" not in available_upscalers()
    assert upscale_image(_noise(), "tiny-esrgan-4x", 100, 90, reg).size == (100, 90)


def test_each_manager_and_runtime_has_its_own_registry(tiny_data_dir, tmp_path):
    from app.cli import parse_args
    from app.models.catalog.index import Catalog
    from app.models.manager import ModelManager
    from app.runtime import Runtime

    paths = Paths.from_data_dir(tiny_data_dir)
    a, b = ModelManager(Catalog(paths), paths=paths), ModelManager(Catalog(paths), paths=paths)
    assert a.upscalers is not b.upscalers and up.registry_of(a) is a.upscalers
    assert "tiny-esrgan-4x" in a.upscalers.names()
    one = Runtime(parse_args(["--data-dir", str(tiny_data_dir)], environ={}))
    other = Runtime(parse_args(["--data-dir", str(tmp_path)], environ={}))
    assert one.manager.upscalers is one.upscalers and one.upscalers is not other.upscalers
    assert "tiny-esrgan-4x" in one.upscalers.names() and "tiny-esrgan-4x" not in other.upscalers.names()
