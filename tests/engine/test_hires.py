"""Hires fix: target-size vectors (spec §7.2), latent modes, crop, step counts."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from app.engine.modes.hires import (
    LATENT_MODES,
    HiresTarget,
    available_upscalers,
    crop_latents,
    hires_steps,
    hires_target,
    upscale_image,
    upscale_latents,
)
from app.params import LATENT_UPSCALE_MODES


@pytest.mark.parametrize(
    ("size", "scale", "resize", "expected", "final"),
    [
        ((512, 768), 2.0, (0, 0), (1024, 1536), (1024, 1536)),
        ((512, 768), 2.0, (1024, 0), (1024, 1536), (1024, 1536)),
        ((512, 768), 2.0, (0, 1024), (682, 1024), (682, 1024)),
        ((512, 768), 2.0, (1024, 1024), (1024, 1536), (1024, 1024)),
        ((640, 448), 2.5, (0, 0), (1600, 1120), (1600, 1120)),
        ((512, 512), 1.5, (0, 0), (768, 768), (768, 768)),
        ((768, 512), 2.0, (1024, 1024), (1536, 1024), (1024, 1024)),
    ],
)
def test_target_size_vectors(size, scale, resize, expected, final):
    target = hires_target(size[0], size[1], scale, *resize)
    assert (target.width, target.height) == expected
    assert (target.final_width, target.final_height) == final


def test_target_crop_is_64_latent_rows():
    target = hires_target(512, 768, 2.0, 1024, 1024)
    assert (target.truncate_x, target.truncate_y) == (0, 64)
    lat = torch.arange(192 * 128, dtype=torch.float32).reshape(1, 1, 192, 128)
    cropped = crop_latents(lat, target)
    assert cropped.shape[-2:] == (128, 128)
    assert torch.equal(cropped, lat[..., 32:160, :])


@pytest.mark.parametrize("bad", [(0, 512, 2.0, 0, 0), (512, 512, 0.0, 0, 0), (512, 512, 2.0, -8, 0)])
def test_target_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        hires_target(*bad)


def test_latent_modes_match_params_and_interpolate():
    assert tuple(LATENT_MODES) == LATENT_UPSCALE_MODES
    lat = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    outs = {}
    for mode in LATENT_MODES:
        out = upscale_latents(lat, mode, 128, 96)
        assert out.shape == (2, 4, 12, 16)
        outs[mode] = out
    assert not torch.equal(outs["Latent"], outs["Latent (bicubic)"])
    nearest = upscale_latents(lat, "Latent (nearest)", 128, 128)
    assert torch.equal(nearest[..., ::2, ::2], lat)
    with pytest.raises(ValueError, match="unknown latent upscale mode"):
        upscale_latents(lat, "Latent (fancy)", 128, 128)


def test_pil_upscalers_and_unknown_name():
    img = Image.new("RGB", (16, 8), (10, 200, 30))
    assert upscale_image(img, "Lanczos", 40, 20).size == (40, 20)
    assert upscale_image(img, "Nearest", 32, 16).getpixel((5, 5)) == (10, 200, 30)
    names = available_upscalers()
    assert names[:6] == list(LATENT_UPSCALE_MODES) and "Lanczos" in names
    with pytest.raises(ValueError, match="not available|unknown|not found"):
        upscale_image(img, "No Such Upscaler 4x", 32, 16)


@pytest.mark.parametrize(
    ("base", "hr", "denoise", "expected"),
    [
        (20, 0, 0.7, (28, 8, 20)),  # runs exactly base steps out of int(20/0.7)=28
        (20, 10, 0.5, (20, 10, 10)),
        (8, 4, 1.0, (4, 0, 4)),  # 4/0.999 → 4
    ],
)
def test_hires_pass_runs_exactly_hires_steps(base, hr, denoise, expected):
    assert hires_steps(base, hr, denoise) == expected


def test_final_size_property():
    assert HiresTarget(1024, 1536, 0, 64).final_height == 1024


# ------------------------------------------------------------------------------ end to end (tiny SD1)
@pytest.fixture(scope="module")
def env(tiny_data_dir):
    from app.models.catalog.index import Catalog
    from app.models.manager import ModelManager
    from app.paths import Paths
    from app.settings import Settings

    paths = Paths.from_data_dir(tiny_data_dir)
    settings = Settings(None)
    return ModelManager(Catalog(paths), settings, None, paths=paths), settings


def _hires_run(env, **hires):
    from app.engine.modes.txt2img import run_txt2img
    from app.params import GenerationParams, HiresParams, SeedParams

    manager, settings = env
    params = GenerationParams(
        prompt="a cat", steps=2, width=64, height=64, sampler_name="Euler", checkpoint="tiny-sd1", save_images=False,
        seed=SeedParams(seed=5), hires=HiresParams(enabled=True, **hires),
    )
    return run_txt2img(manager, params, settings)


@pytest.mark.slow
def test_hires_latent_doubles_size_with_infotext(env):
    from app.infotext.parse import parse_generation_parameters

    res = _hires_run(env, steps=2)
    assert res.images[0].size == (128, 128)
    pairs = parse_generation_parameters(res.infotexts[0])
    assert (pairs["Size-1"], pairs["Size-2"]) == ("64", "64")  # first-pass size
    assert pairs["Denoising strength"] == "0.7"
    assert pairs["Hires upscale"] == "2.0" and pairs["Hires upscaler"] == "Latent" and pairs["Hires steps"] == "2"
    assert res.info["denoising_strength"] == 0.7


@pytest.mark.slow
def test_hires_image_upscaler_and_resize_crop(env):
    res = _hires_run(env, upscaler="Lanczos", resize_x=96, resize_y=64, denoising_strength=0.5)
    assert res.images[0].size == (96, 64)
    assert 'Hires resize: 96x64' in res.infotexts[0] and "Hires upscaler: Lanczos" in res.infotexts[0]


@pytest.mark.slow
def test_hires_prompt_and_unknown_upscaler(env):
    res = _hires_run(env, prompt="a dog", upscaler="Latent (nearest-exact)")
    assert "Hires prompt: a dog" in res.infotexts[0]
    with pytest.raises(ValueError, match="hires upscaler 'Nope 4x' not found"):
        _hires_run(env, upscaler="Nope 4x")


@pytest.mark.slow
def test_hires_checkpoint_runs_second_pass_on_other_model(env):
    manager, _ = env
    res = _hires_run(env, checkpoint="tiny-sd2v", upscaler="Latent (bicubic)")
    assert res.images[0].size == (128, 128)
    assert "Hires checkpoint: tiny-sd2v" in res.infotexts[0] and "Model: tiny-sd1," in res.infotexts[0]
    assert manager.current.model_name == "tiny-sd1"  # the job's model is active again
    with pytest.raises(ValueError, match="cannot continue a sd1 image"):
        _hires_run(env, checkpoint="tiny-sdxl")
    assert manager.current.model_name == "tiny-sd1"


@pytest.mark.slow
def test_save_before_highres_fix(env, tmp_path):
    from app.engine.modes.txt2img import run_txt2img
    from app.params import GenerationParams, HiresParams, SeedParams

    manager, settings = env
    params = GenerationParams(
        prompt="a cat", steps=2, width=64, height=64, sampler_name="Euler", checkpoint="tiny-sd1", seed=SeedParams(seed=9),
        hires=HiresParams(enabled=True), override_settings={
            "save_images_before_highres_fix": True, "outdir_txt2img_samples": str(tmp_path)},
    )
    res = run_txt2img(manager, params, settings)
    names = sorted(p.rsplit("/", 1)[-1] for p in res.saved_paths)
    assert names == ["00000-9-before-highres-fix.png", "00001-9.png"]
    assert len(res.images) == 1 and res.images[0].size == (128, 128)


@pytest.mark.slow
def test_hires_with_model_upscaler(env):
    res = _hires_run(env, upscaler="tiny-esrgan-4x", scale=1.5, denoising_strength=0.3)
    assert res.images[0].size == (96, 96)
    assert "Hires upscaler: tiny-esrgan-4x" in res.infotexts[0]
