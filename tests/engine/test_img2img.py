"""img2img: resize modes and sizes, A1111 step count (spied UNet calls), determinism, saving and
infotext through the job service, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.engine.image.resize import ImageInputError, flatten, resize_image, target_size
from app.engine.modes.runners import register_runners, run_img2img
from app.params import GenerationParams, Img2ImgParams, SeedParams
from tests.helpers import wait_for_step


def _stripes(w: int, h: int) -> Image.Image:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, :, 0] = (np.arange(w) * 255 // max(w - 1, 1))[None, :]
    arr[:, :, 1] = (np.arange(h) * 255 // max(h - 1, 1))[:, None]
    return Image.fromarray(arr)


# ----------------------------------------------------------------------------------- resize modes
@pytest.mark.parametrize("mode", [0, 1, 2, 3, "Just resize", "Crop and resize", "Resize and fill"])
@pytest.mark.parametrize(("src", "dst"), [((80, 48), (64, 64)), ((48, 80), (64, 32)), ((64, 64), (128, 64))])
def test_every_resize_mode_gives_the_target_size(mode, src, dst):
    assert resize_image(mode, _stripes(*src), *dst).size == dst


def test_crop_and_resize_crops_the_centre():
    img = Image.new("RGB", (100, 50), (255, 0, 0))
    img.paste((0, 0, 255), (25, 0, 75, 50))  # blue centre square
    out = np.asarray(resize_image(1, img, 32, 32))
    assert out[:, :, 2].min() > 200 and out[:, :, 0].max() < 60  # only the blue centre remains


def test_resize_and_fill_stretches_edges():
    img = Image.new("RGB", (64, 32), (0, 200, 0))
    img.paste((200, 0, 0), (0, 0, 64, 1))  # red top row
    img.paste((0, 0, 200), (0, 31, 64, 32))  # blue bottom row
    out = np.asarray(resize_image(2, img, 64, 64))
    assert tuple(out[2, 32]) == (200, 0, 0)  # band above = stretched top row
    assert tuple(out[61, 32]) == (0, 0, 200)  # band below = stretched bottom row
    assert tuple(out[32, 32]) == (0, 200, 0)


@pytest.mark.parametrize(
    ("size", "wh", "scale", "expected"),
    [((100, 60), (512, 512), None, (512, 512)), ((100, 60), (0, 0), 1.5, (144, 88)), ((64, 64), (70, 70), None, (64, 64))],
)
def test_target_size_resize_to_and_by(size, wh, scale, expected):
    assert target_size(size, *wh, scale) == expected


def test_bad_resize_inputs():
    with pytest.raises(ImageInputError, match="resize_mode"):
        resize_image(7, _stripes(8, 8), 8, 8)
    with pytest.raises(ImageInputError, match="scale_by"):
        target_size((64, 64), 64, 64, 0)
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert flatten(rgba, "#00ff00").getpixel((0, 0)) == (0, 255, 0)


# -------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def env(tiny_data_dir, tmp_path_factory):
    from app.models.catalog.index import Catalog
    from app.models.manager import ModelManager
    from app.paths import Paths
    from app.settings import Settings

    out = tmp_path_factory.mktemp("img2img-out")
    paths = Paths.from_data_dir(tiny_data_dir)
    settings = Settings(None)
    settings.set("outdir_img2img_samples", str(out / "samples"), save=False)
    settings.set("outdir_img2img_grids", str(out / "grids"), save=False)
    return ModelManager(Catalog(paths), settings, None, paths=paths), settings, out


def _params(image=None, **kw) -> GenerationParams:
    i2i = {k: kw.pop(k) for k in list(kw) if k in Img2ImgParams.__dataclass_fields__}
    base = dict(prompt="a cat", steps=4, width=64, height=64, sampler_name="Euler", checkpoint="tiny-sd1",
                save_images=False, seed=SeedParams(seed=kw.pop("seed", 7)))
    base.update(kw)
    return GenerationParams(img2img=Img2ImgParams(init_images=[image or _stripes(80, 48)], **i2i), **base)


def _count_unet_calls(unet, fn):
    calls = []
    hook = unet.register_forward_pre_hook(lambda mod, args: calls.append(1))
    try:
        result = fn()
    finally:
        hook.remove()
    return len(calls), result


@pytest.mark.slow
@pytest.mark.parametrize(("steps", "strength", "fix", "expected"),
                         [(20, 0.75, False, 16), (20, 1.0, False, 20), (20, 0.5, False, 11), (30, 0.3, False, 10),
                          (8, 0.5, True, 8)])
def test_img2img_step_count(env, steps, strength, fix, expected):
    manager, settings, _ = env
    unet = manager.get("tiny-sd1").loaded.pipe.unet
    params = _params(steps=steps, denoising_strength=strength, cfg_scale=1.0, width=32, height=32,
                     override_settings={"img2img_fix_steps": fix})
    n, res = _count_unet_calls(unet, lambda: run_img2img(manager, params, settings))
    assert n == expected  # cfg 1: one UNet call per sampling step
    assert f"Steps: {steps}," in res.infotexts[0] and f"Denoising strength: {strength}" in res.infotexts[0]


@pytest.mark.slow
@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_each_resize_mode_runs_end_to_end(env, mode):
    manager, settings, _ = env
    res = run_img2img(manager, _params(resize_mode=mode, width=64, height=32, steps=2), settings)
    assert res.images[0].size == (64, 32) and "Size: 64x32" in res.infotexts[0]


@pytest.mark.slow
def test_resize_by_and_determinism_and_strength(env):
    manager, settings, _ = env
    a = run_img2img(manager, _params(scale_by=0.5, image=_stripes(128, 96), steps=2), settings)
    b = run_img2img(manager, _params(scale_by=0.5, image=_stripes(128, 96), steps=2), settings)
    c = run_img2img(manager, _params(scale_by=0.5, image=_stripes(128, 96), steps=2, seed=8), settings)
    assert a.images[0].size == (64, 48) and "Size: 64x48" in a.infotexts[0]
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    assert not np.array_equal(np.asarray(a.images[0]), np.asarray(c.images[0]))
    low = run_img2img(manager, _params(image=_stripes(64, 64), denoising_strength=0.05, steps=4), settings)
    high = run_img2img(manager, _params(image=_stripes(64, 64), denoising_strength=1.0, steps=4), settings)
    src = np.asarray(_stripes(64, 64), np.float32)
    assert np.abs(np.asarray(low.images[0], np.float32) - src).mean() < np.abs(np.asarray(high.images[0], np.float32) - src).mean()


@pytest.mark.slow
def test_service_runner_saves_to_img2img_dir_with_batches(env):
    from app.jobs.service import JobService

    manager, settings, out = env
    svc = JobService(manager, settings)
    register_runners(svc)
    try:
        job = svc.submit(_params(steps=2, batch_size=2, n_iter=1, save_images=True), kind="img2img")
        res = job.wait(120)
    finally:
        svc.shutdown()
    assert len(res.images) == 3  # grid + 2 images
    assert res.seeds == [7, 8]
    saved = [p for p in res.saved_paths if "samples" in p]
    assert len(saved) == 2 and all(p.endswith(".png") for p in saved)
    from app.infotext.storage import read_info_from_image

    text, _ = read_info_from_image(Image.open(saved[0]))
    assert "Denoising strength: 0.75" in text and "Seed: 7" in text
    assert res.info["denoising_strength"] == 0.75


@pytest.mark.slow
def test_bad_inputs_give_clear_errors(env):
    manager, settings, _ = env
    with pytest.raises(ImageInputError, match=r"init_images\[0\]: expected an image"):
        run_img2img(manager, _params(image=b"not an image"), settings)
    with pytest.raises(ImageInputError, match="img_max_size_mp"):
        run_img2img(manager, _params(override_settings={}), _Limited(settings, 0.001))
    with pytest.raises(ImageInputError, match="2 images given"):
        p = _params()
        p.img2img.init_images.append(_stripes(8, 8))
        run_img2img(manager, p, settings)
    with pytest.raises(ValueError, match="denoising_strength"):
        run_img2img(manager, _params(denoising_strength=1.5), settings)
    with pytest.raises(ValueError, match="needs params.img2img"):
        run_img2img(manager, GenerationParams(), settings)
    with pytest.raises(ImageInputError, match="img2img.mask: expected an image"):
        run_img2img(manager, _params(mask="oops"), settings)


class _Limited:
    """Settings with a tiny img_max_size_mp (everything else from the real settings)."""

    def __init__(self, base, limit):
        self.base, self.limit = base, limit

    def get(self, key, default=None):
        return self.limit if key == "img_max_size_mp" else self.base.get(key, default)

    def __getitem__(self, key):
        return self.get(key)

    def __contains__(self, key):
        return key in self.base


# ------------------------------------------------------------------------------------ folder batch
@pytest.mark.slow
def test_folder_batch_with_masks_and_output_names(env, tmp_path):
    from app.engine.modes.img2img_batch import find_mask

    manager, settings, _ = env
    src, masks, out = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    src.mkdir()
    masks.mkdir()
    _stripes(64, 64).save(src / "one.png")
    _stripes(48, 64).save(src / "two.jpg")
    (src / "broken.png").write_bytes(b"no image")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    mask.save(masks / "one.png")
    mask.save(masks / "other.png")
    assert find_mask(src / "one.png", masks) == masks / "one.png" and find_mask(src / "two.jpg", masks) is None
    params = _params(steps=2, seed=-1)
    params.img2img.init_images = []
    params.extras["img2img_batch"] = {"input_dir": str(src), "output_dir": str(out), "inpaint_mask_dir": str(masks)}
    res = run_img2img(manager, params, settings)
    assert len(res.images) == 1 and sorted(p.name for p in out.iterdir()) == ["one.png"]
    assert any("broken.png" in w for w in res.warnings) and any("two.jpg" in w and "no mask" in w for w in res.warnings)
    assert "Mask blur: 4" in res.infotexts[0]
    # without masks: both readable files, same fixed seed for the folder
    params.extras["img2img_batch"] = {"input_dir": str(src), "output_dir": str(out)}
    res = run_img2img(manager, params, settings)
    assert len(res.images) == 2 and res.seeds[0] == res.seeds[1] != -1
    assert sorted(p.name for p in out.iterdir()) == ["one.png", "two.png"]
    with pytest.raises(ImageInputError, match="does not exist"):
        params.extras["img2img_batch"] = {"input_dir": str(tmp_path / "missing")}
        run_img2img(manager, params, settings)


@pytest.mark.slow
def test_folder_batch_png_info(env, tmp_path):
    from app.infotext.storage import image_with_infotext

    manager, settings, _ = env
    src = tmp_path / "in"
    src.mkdir()
    img = image_with_infotext(_stripes(64, 64), "a dog\nNegative prompt: ugly\nSteps: 3, Seed: 4242, CFG scale: 5")
    img.save(src / "x.png", pnginfo=_pnginfo(img))
    params = _params(steps=2)
    params.img2img.init_images = []
    params.extras["img2img_batch"] = {"input_dir": str(src), "use_png_info": True}
    res = run_img2img(manager, params, settings)
    assert res.seeds == [4242] and res.all_prompts == ["a cat a dog"]
    assert "Steps: 3," in res.infotexts[0] and "CFG scale: 5.0" in res.infotexts[0]


def _pnginfo(img):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", img.info["parameters"])
    return info


@pytest.mark.slow
def test_service_interrupts_img2img_and_configures_upscalers(env):
    from app.jobs.job import JobState
    from app.jobs.service import JobService

    manager, settings, _ = env
    svc = JobService(manager, settings)
    register_runners(svc)
    assert "tiny-esrgan-4x" in manager.upscalers.names()
    try:
        job = svc.submit(_params(steps=60, denoising_strength=1.0), kind="img2img")
        wait_for_step(job, 2, timeout=60)
        svc.interrupt()
        res = job.wait(60)
    finally:
        svc.shutdown()
    assert job.state == JobState.INTERRUPTED and len(res.images) == 1
    assert job.progress.sampling_steps == 60 and job.progress.sampling_step < 60


@pytest.mark.slow
def test_save_init_img_writes_hash_named_copy(env, tmp_path):
    manager, settings, _ = env
    init = _stripes(64, 64)
    params = _params(image=init, steps=1, save_images=True,
                     override_settings={"save_init_img": True, "outdir_init_images": str(tmp_path / "init"),
                                        "outdir_img2img_samples": str(tmp_path / "samples")})
    res = run_img2img(manager, params, settings)
    import hashlib

    digest = hashlib.md5(init.tobytes()).hexdigest()
    assert (tmp_path / "init" / f"{digest}.png").is_file()
    assert f"Init image hash: {digest}" in res.infotexts[0]


# ---------------------------------------------------------------------------------- colour correction
def test_lab_round_trip_and_histogram_matching():
    from app.engine.image import color_correction as cc

    rs = np.random.RandomState(0)
    rgb = (rs.rand(16, 16, 3) * 255).astype(np.uint8)
    assert np.abs(cc.lab_to_rgb(cc.rgb_to_lab(rgb)) - rgb).max() < 0.01
    white = cc.rgb_to_lab(np.full((1, 1, 3), 255, np.uint8))[0, 0]
    assert abs(white[0] - 100) < 1e-3 and abs(white[1]) < 1e-3 and abs(white[2]) < 1e-3
    src, tpl = rs.rand(1000), rs.rand(500) * 10 + 5
    matched = cc.match_histogram(src, tpl)
    assert abs(matched.mean() - tpl.mean()) < 0.2 and np.array_equal(np.argsort(matched), np.argsort(src))


def test_color_correction_moves_colours_towards_the_init_image():
    from app.engine.image import color_correction as cc

    init = Image.new("RGB", (32, 32), (200, 40, 40))
    init.paste((180, 60, 30), (0, 0, 16, 32))
    generated = Image.new("RGB", (32, 32), (40, 40, 200))
    generated.paste((60, 50, 180), (0, 0, 16, 32))
    out = np.asarray(cc.apply(cc.correction_target(init), generated), np.float32)
    assert out[..., 0].mean() > out[..., 2].mean()  # red like the init image now
    gen = np.asarray(generated, np.float32)
    lum = lambda a: a[..., 0] * 0.3 + a[..., 1] * 0.59 + a[..., 2] * 0.11  # noqa: E731
    assert np.abs(lum(out) - lum(gen)).mean() < 3  # the generated luminance is kept


@pytest.mark.slow
def test_color_correction_setting_end_to_end(env):
    manager, settings, _ = env
    plain = run_img2img(manager, _params(steps=2), settings)
    corrected = run_img2img(manager, _params(steps=2, override_settings={"img2img_color_correction": True}), settings)
    assert plain.images[0].size == corrected.images[0].size
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(corrected.images[0]))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["sd2v", "sdxl"])
def test_other_families_img2img_and_inpaint(env, family):
    manager, settings, _ = env
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (24, 24, 40, 40))
    res = run_img2img(manager, _params(image=_stripes(64, 64), checkpoint=f"tiny-{family}", steps=2, mask=mask,
                                       denoising_strength=1.0, mask_blur_x=0, mask_blur_y=0), settings)
    out = np.asarray(res.images[0], np.float32)
    src = np.asarray(_stripes(64, 64), np.float32)
    assert res.images[0].size == (64, 64) and f"Model: tiny-{family}," in res.infotexts[0]
    assert np.abs(out - src)[:16].mean() <= 3 and np.abs(out - src)[28:36, 28:36].mean() > 3


@pytest.mark.slow
def test_one_init_image_per_batch_position_over_batch_count(env):
    manager, settings, _ = env
    params = _params(steps=2, batch_size=2, n_iter=2, resize_mode=3)
    params.img2img.init_images = [_stripes(64, 64), _stripes(40, 72)]
    res = run_img2img(manager, params, settings)
    assert res.images[0].size == (128, 128)  # the grid
    assert [im.size for im in res.images[1:]] == [(64, 64)] * 4 and res.seeds == [7, 8, 9, 10]
