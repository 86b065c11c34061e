"""Setting ``vae_tiling_mp``: big images decode (and encode) through diffusers' tiled VAE; 0 = exact full decode."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine.modes.txt2img import run_txt2img
from app.models.catalog.index import Catalog
from app.models.manager import ModelManager
from app.params import GenerationParams, HiresParams, SeedParams
from app.paths import Paths
from app.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tiny_data_dir):
    paths = Paths.from_data_dir(tiny_data_dir)
    settings = Settings(None)
    manager = ModelManager(Catalog(paths), settings, None, paths=paths)
    # The tiny VAE inherits SD's 512-px tiles; shrink them so a 128-px image spans several tiles.
    vae = manager.get("tiny-sd1").pipe.vae
    saved = vae.tile_sample_min_size, vae.tile_latent_min_size
    vae.tile_sample_min_size, vae.tile_latent_min_size = 64, 8
    yield manager, settings
    vae.tile_sample_min_size, vae.tile_latent_min_size = saved


def _run(env, size: int, **overrides):
    manager, settings = env
    params = GenerationParams(prompt="a cabin", steps=2, width=size, height=size, sampler_name="Euler",
                              checkpoint="tiny-sd1", save_images=False, save_grid=False,
                              seed=SeedParams(seed=7), override_settings=overrides)
    vae = manager.get("tiny-sd1").pipe.vae
    seen: list[bool] = []
    hook = vae.decoder.register_forward_pre_hook(lambda *_: seen.append(bool(vae.use_tiling)))
    try:
        image = run_txt2img(manager, params, settings).images[0]
    finally:
        hook.remove()
    return np.asarray(image, dtype=np.int16), seen, vae


def test_off_by_default_and_below_the_limit(env):
    base, seen, _ = _run(env, 128)
    assert seen and not any(seen)
    small, seen_small, _ = _run(env, 128, vae_tiling_mp=1.0)  # 128² = 0.016 MP < 1 MP: not tiled
    assert not any(seen_small)
    assert np.array_equal(base, small)


def test_big_image_decodes_tiled_and_close_to_the_full_decode(env):
    full, _, _ = _run(env, 128)
    tiled, seen, vae = _run(env, 128, vae_tiling_mp=0.01)  # 0.016 MP > 0.01 MP: tiled (64-px tiles here)
    assert any(seen), "the decoder never ran with tiling enabled"
    assert not vae.use_tiling, "tiling must be switched off again after the job"
    assert tiled.shape == full.shape == (128, 128, 3)
    assert not np.array_equal(full, tiled)  # really tiled (blended seams)
    assert np.abs(full - tiled).mean() < 20  # ...but the same picture


def test_hires_encode_path_also_tiles(env):
    manager, settings = env
    params = GenerationParams(prompt="a cabin", steps=2, width=64, height=64, sampler_name="Euler",
                              checkpoint="tiny-sd1", save_images=False, save_grid=False, seed=SeedParams(seed=3),
                              hires=HiresParams(enabled=True, upscaler="Lanczos", scale=2.0, steps=1),
                              override_settings={"vae_tiling_mp": 0.01})
    vae = manager.get("tiny-sd1").pipe.vae
    seen: list[bool] = []
    hook = vae.encoder.register_forward_pre_hook(lambda *_: seen.append(bool(vae.use_tiling)))
    try:
        result = run_txt2img(manager, params, settings)
    finally:
        hook.remove()
    assert result.images[0].size == (128, 128)
    assert any(seen) and not vae.use_tiling
