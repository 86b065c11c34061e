"""SD upscale script: 64² by 2 with 64-tiles / overlap 8 → 9 tiles and a 128² result, tile-only model
inputs, seeds per batch, infotext keys, script-arg forms, errors. Tiling vectors live in test_tiles.py."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.engine.image import upscalers as up
from app.engine.image.resize import ImageInputError
from app.engine.modes.runners import register_runners, run_img2img
from app.engine.modes.sd_upscale import parse_args
from app.params import GenerationParams, Img2ImgParams, ScriptParams, SeedParams
from app.paths import Paths


@pytest.fixture(scope="module")
def env(tiny_data_dir, tmp_path_factory):
    from app.models.catalog.index import Catalog
    from app.models.manager import ModelManager
    from app.settings import Settings

    out = tmp_path_factory.mktemp("sdup-out")
    paths = Paths.from_data_dir(tiny_data_dir)
    settings = Settings(None)
    settings.set("outdir_img2img_samples", str(out / "samples"), save=False)
    return ModelManager(Catalog(paths), settings, None, paths=paths), settings, out


def _init() -> Image.Image:
    rs = np.random.RandomState(5)
    return Image.fromarray((rs.rand(64, 64, 3) * 255).astype(np.uint8))


def _params(args, **kw) -> GenerationParams:
    base = dict(prompt="a castle", steps=2, width=64, height=64, sampler_name="Euler", checkpoint="tiny-sd1",
                cfg_scale=1.0, save_images=False, seed=SeedParams(seed=kw.pop("seed", 100)))
    base.update(kw)
    return GenerationParams(img2img=Img2ImgParams(init_images=[_init()], denoising_strength=0.5),
                            script=ScriptParams("SD upscale", list(args)), **base)


@pytest.mark.slow
def test_nine_tiles_and_128_result_through_the_service(env):
    from app.jobs.service import JobService

    manager, settings, _ = env
    unet = manager.get("tiny-sd1").loaded.pipe.unet
    shapes = []
    hook = unet.register_forward_pre_hook(lambda mod, a: shapes.append(tuple(a[0].shape)))
    svc = JobService(manager, settings)
    register_runners(svc)
    try:
        job = svc.submit(_params(["", 8, "Lanczos", 2.0], save_images=True), kind="img2img")
        res = job.wait(300)
    finally:
        svc.shutdown()
        hook.remove()
    assert job.progress.job_count == 9
    assert len(res.images) == 1 and res.images[0].size == (128, 128)
    assert len(shapes) == 9 * 2 and set(shapes) == {(1, 4, 8, 8)}  # 9 tiles x 2 steps, one tile at a time
    text = res.infotexts[0]
    assert "SD upscale overlap: 8" in text and "SD upscale upscaler: Lanczos" in text
    assert "Size: 64x64" in text and "Seed: 100" in text and "Denoising strength: 0.5" in text
    assert len(res.saved_paths) == 1 and Image.open(res.saved_paths[0]).size == (128, 128)


@pytest.mark.slow
def test_batches_seeds_and_upscale_count(env):
    manager, settings, _ = env
    res = run_img2img(manager, _params([8, "lanczos", 2.0], batch_size=4, n_iter=2), settings)
    assert [im.size for im in res.images] == [(128, 128), (128, 128)]
    assert res.seeds == [100, 101]
    assert "Seed: 101" in res.infotexts[1]
    assert not np.array_equal(np.asarray(res.images[0]), np.asarray(res.images[1]))
    # upscaler "None": no upscale, a 64² image is one tile
    same = run_img2img(manager, _params([8, "None", 2.0]), settings)
    assert same.images[0].size == (64, 64) and "SD upscale upscaler: None" in same.infotexts[0]


def test_script_arg_forms(env):
    reg = up.registry_of(env[0])
    assert parse_args(["", 16, "LANCZOS", 3.0], reg).upscaler.name == "Lanczos"
    a = parse_args([32, 2, 1.5], reg)
    assert (a.overlap, a.upscaler.name, a.scale_factor) == (32, "Nearest", 1.5)
    assert parse_args({"overlap": 8, "upscaler": "tiny-esrgan-4x", "scale_factor": 2}, reg).upscaler.kind == "ESRGAN"
    assert parse_args([], reg) == parse_args([64, "None", 2.0], reg)
    with pytest.raises(ImageInputError, match="Tile overlap"):
        parse_args([-1, "None", 2.0], reg)
    with pytest.raises(ImageInputError, match="out of range"):
        parse_args([8, 99, 2.0], reg)
    with pytest.raises(up.UpscalerError, match="not found"):
        parse_args([8, "nope", 2.0], reg)


@pytest.mark.slow
def test_overlap_not_smaller_than_tile_is_an_error(env):
    manager, settings, _ = env
    with pytest.raises(ImageInputError, match="smaller than the tile size"):
        run_img2img(manager, _params([64, "None", 2.0]), settings)
