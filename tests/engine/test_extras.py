"""Extras: single and batch upscaling, scale by / scale to (+crop), two-upscaler blend, saving with
the postprocess infotext, the "extras" runner in the job service, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.engine.image import upscalers as up
from app.engine.image.resize import ImageInputError
from app.engine.modes.extras import run_extras
from app.paths import Paths
from app.settings import Settings


@pytest.fixture(scope="module")
def env(tiny_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("extras-out")
    paths = Paths.from_data_dir(tiny_data_dir)
    settings = Settings(None)
    settings.set("outdir_extras_samples", str(out / "extras"), save=False)
    return settings, paths, up.UpscalerRegistry(paths, settings), out


def _img(w=32, h=24, seed=0) -> Image.Image:
    rs = np.random.RandomState(seed)
    return Image.fromarray((rs.rand(h, w, 3) * 255).astype(np.uint8))


def _run(env, **params):
    settings, paths, registry, _ = env
    return run_extras(params, settings, paths, None, registry)


def test_scale_by_single_image_saved_with_infotext(env):
    src = _img()
    src.info["parameters"] = "a cat\nSteps: 20, Seed: 1"
    res = _run(env, image=src, resize_mode=0, upscaling_resize=2, upscaler_1="Lanczos")
    assert res.images[0].size == (64, 48)
    assert res.infotexts == ["Postprocess upscale by: 2, Postprocess upscaler: Lanczos"]
    saved = Image.open(res.saved_paths[0])
    assert saved.size == (64, 48) and saved.info["extras"] == res.infotexts[0]
    assert saved.info["parameters"] == "a cat\nSteps: 20, Seed: 1"
    assert "extras" in res.saved_paths[0]


@pytest.mark.parametrize(("crop", "size"), [(True, (100, 40)), (False, (100, 75))])
def test_scale_to_with_and_without_crop(env, crop, size):
    res = _run(env, image=_img(40, 30), resize_mode=1, upscaling_resize_w=100, upscaling_resize_h=40,
               upscaling_crop=crop, upscaler_1="tiny-esrgan-4x", save_output=False)
    img = res.images[0]
    assert img.size == size
    assert ("Postprocess crop to: 100x40" in res.infotexts[0]) == crop
    assert "Postprocess upscale to: 100x40" in res.infotexts[0]


def test_two_upscalers_blend_by_visibility(env):
    src = _img()
    kw = dict(image=src, upscaling_resize=2, save_output=False)
    a = np.asarray(_run(env, upscaler_1="Lanczos", **kw).images[0], np.float32)
    b = np.asarray(_run(env, upscaler_1="Nearest", **kw).images[0], np.float32)
    mixed = _run(env, upscaler_1="Lanczos", upscaler_2="Nearest", extras_upscaler_2_visibility=0.25, **kw)
    m = np.asarray(mixed.images[0], np.float32)
    assert np.abs(m - (0.75 * a + 0.25 * b)).max() <= 1.0
    assert "Postprocess upscaler 2: Nearest" in mixed.infotexts[0]
    zero = _run(env, upscaler_1="Lanczos", upscaler_2="Nearest", extras_upscaler_2_visibility=0.0, **kw)
    assert np.array_equal(np.asarray(zero.images[0], np.float32), a)


def test_batch_keeps_original_names(env):
    _, _, _, out = env
    res = _run(env, images=[_img(seed=1), _img(seed=2)], names=["first.png", "dir/second.jpg"],
               upscaling_resize=2, upscaler_1="tiny-esrgan-4x")
    assert [im.size for im in res.images] == [(64, 48), (64, 48)]
    assert sorted(p.split("/")[-1] for p in res.saved_paths) == ["first.png", "second.png"]


def test_batch_from_directory(env, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _img(seed=3).save(src / "a.png")
    _img(seed=4).save(src / "b.png")
    (src / "notes.txt").write_text("skip me")
    res = _run(env, input_dir=str(src), output_dir=str(tmp_path / "out"), upscaling_resize=2, upscaler_1="Lanczos")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    assert len(res.images) == 2


def test_upscaler_none_returns_the_image(env):
    res = _run(env, image=_img(), upscaler_1="None", save_output=False)
    assert res.images[0].size == (32, 24) and res.infotexts == [""]


def test_errors(env):
    with pytest.raises(up.UpscalerError, match="'missing' not found"):
        _run(env, image=_img(), upscaler_1="missing")
    with pytest.raises(ImageInputError, match="no input image"):
        _run(env)
    with pytest.raises(ImageInputError, match="expected an image"):
        _run(env, image="nope", upscaler_1="Lanczos")
    with pytest.raises(ImageInputError, match="resize_mode"):
        _run(env, image=_img(), resize_mode=3, upscaler_1="Lanczos")
    with pytest.raises(ImageInputError, match="img_max_size_mp"):
        settings, paths, registry, _ = env
        settings.set("img_max_size_mp", 0.001, save=False)
        try:
            run_extras({"image": _img(), "upscaler_1": "Lanczos", "upscaling_resize": 8}, settings, paths, None, registry)
        finally:
            settings.set("img_max_size_mp", 200.0, save=False)


def test_extras_runner_in_service(env):
    from app.engine.modes.runners import register_runners
    from app.jobs.service import JobService

    settings, paths, _, _ = env
    svc = JobService(None, settings, paths)
    register_runners(svc)
    try:
        job = svc.submit({"image": _img(), "upscaler_1": "tiny-esrgan-4x", "upscaling_resize": 4,
                          "save_output": False}, kind="extras")
        res = job.wait(60)
        bad = svc.submit({"image": _img(), "upscaler_1": "nope"}, kind="extras")
        with pytest.raises(Exception, match="nope"):
            bad.wait(60)
    finally:
        svc.shutdown()
    assert res.images[0].size == (128, 96) and job.progress.job_count == 1
