"""Inpaint: mask reading, blur kernel, Only-masked crop maths (spec §7.3 vector), fill, overlay, and
end to end on the tiny SD1 (unmasked pixels kept, masked ones changed, blank-mask fallback) and the
tiny 9-channel inpainting checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.engine.image.resize import ImageInputError
from app.engine.modes import inpaint as ip
from app.engine.modes.runners import run_img2img
from app.params import GenerationParams, Img2ImgParams, SeedParams


# ------------------------------------------------------------------------------------------- maths
@pytest.mark.parametrize(
    ("box", "proc_wh", "image_wh", "expected"),
    [
        ((0, 0, 128, 32), (512, 512), (512, 512), (0, 0, 128, 128)),  # spec §7.3 vector
        ((100, 100, 140, 300), (512, 512), (512, 512), (20, 100, 220, 300)),  # tall box grows in x
        ((0, 480, 512, 512), (512, 256), (512, 512), (0, 256, 512, 512)),  # pushed back inside at the bottom
        ((10, 10, 74, 74), (64, 64), (512, 512), (10, 10, 74, 74)),  # already the right aspect
    ],
)
def test_expand_crop_region(box, proc_wh, image_wh, expected):
    assert ip.expand_crop_region(box, *proc_wh, *image_wh) == expected


def test_mask_crop_region_padding_and_blank():
    m = Image.new("L", (512, 512), 0)
    m.paste(255, (0, 0, 128, 32))
    assert ip.mask_crop_region(m, 0) == (0, 0, 128, 32)
    assert ip.mask_crop_region(m, 32) == (0, 0, 160, 64)
    assert ip.mask_crop_region(Image.new("L", (64, 64), 0), 32) is None


@pytest.mark.parametrize(("sigma", "size"), [(4, 21), (1, 7), (0.5, 3), (16, 81), (64, 321)])
def test_gaussian_kernel_size_follows_spec(sigma, size):
    k = ip.gaussian_kernel(sigma)
    assert k.shape == (size,) and abs(k.sum() - 1) < 1e-9 and k.argmax() == size // 2


def test_blur_is_separate_in_x_and_y():
    m = Image.new("L", (64, 64), 0)
    m.paste(255, (24, 24, 40, 40))
    only_x = np.asarray(ip.blur_mask(m, 4, 0))
    only_y = np.asarray(ip.blur_mask(m, 0, 4))
    assert only_x[10, 32] == 0 and only_x[32, 20] > 0  # spread sideways only
    assert only_y[32, 20] == 0 and only_y[20, 32] > 0  # spread vertically only
    assert np.array_equal(np.asarray(ip.blur_mask(m, 0, 0)), np.asarray(m))


def test_binary_mask_alpha_or_luminance():
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.putpixel((1, 1), (0, 0, 0, 200))
    rgba.putpixel((2, 2), (255, 255, 255, 100))
    out = np.asarray(ip.binary_mask(rgba))
    assert out[1, 1] == 255 and out[2, 2] == 0 and out.sum() == 255
    opaque = Image.new("RGBA", (8, 8), (255, 255, 255, 255))
    assert np.asarray(ip.binary_mask(opaque)).min() == 255  # constant alpha: luminance
    assert np.asarray(ip.binary_mask(Image.new("RGB", (8, 8), (0, 0, 0)))).max() == 0


def test_prepare_mask_only_masked_and_wrong_size_warning():
    m = Image.new("L", (256, 256), 0)
    m.paste(255, (0, 0, 64, 16))
    warnings = []
    prepared = ip.prepare_mask(m.resize((128, 128), Image.Resampling.NEAREST), (256, 256), 64, 64, blur_x=0, blur_y=0, only_masked=True,
                               padding=0, warn=warnings.append)
    assert warnings and "resized" in warnings[0]
    assert prepared.crop == (0, 0, 64, 64) and prepared.mask.size == (64, 64)
    assert prepared.paste_to == (0, 0, 64, 64) and prepared.overlay.size == (256, 256)
    with pytest.raises(ip.BlankMaskError, match="blank"):
        ip.prepare_mask(Image.new("L", (32, 32), 0), (32, 32), 32, 32)
    inverted = ip.prepare_mask(Image.new("L", (32, 32), 0), (32, 32), 32, 32, invert=True, blur_x=0, blur_y=0)
    assert np.asarray(inverted.mask).min() == 255
    assert issubclass(ip.BlankMaskError, ValueError) and issubclass(ip.BlankMaskError, ImageInputError)


def test_fill_uses_surrounding_colours_and_keeps_the_rest():
    img = Image.new("RGB", (64, 64), (200, 30, 30))
    img.paste((0, 0, 250), (0, 32, 64, 64))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (24, 8, 40, 24))  # inside the red half
    out = np.asarray(ip.fill_masked(img, mask)).astype(int)
    assert np.array_equal(out[mask.getbbox()[1] - 1], np.asarray(img)[mask.getbbox()[1] - 1])
    centre = out[16, 32]
    assert centre[0] > 120 and centre[2] < 130  # filled with (mostly) the surrounding red


def test_apply_overlay_keeps_original_outside_mask():
    original = Image.new("RGB", (32, 32), (10, 20, 30))
    result = Image.new("RGB", (32, 32), (250, 250, 250))
    prepared = ip.prepare_mask(_square_mask(32, 8, 24), (32, 32), 32, 32, blur_x=0, blur_y=0)
    out = np.asarray(ip.apply_overlay(result, ip.overlay_image(original, prepared), None))
    assert tuple(out[0, 0]) == (10, 20, 30) and tuple(out[16, 16]) == (250, 250, 250)


def _square_mask(size: int, lo: int, hi: int) -> Image.Image:
    m = Image.new("L", (size, size), 0)
    m.paste(255, (lo, lo, hi, hi))
    return m


# ------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def env(tiny_data_dir):
    from app.models.catalog.index import Catalog
    from app.models.manager import ModelManager
    from app.paths import Paths
    from app.settings import Settings

    paths = Paths.from_data_dir(tiny_data_dir)
    settings = Settings(None)
    return ModelManager(Catalog(paths), settings, None, paths=paths), settings


def _init(size=64) -> Image.Image:
    rs = np.random.RandomState(3)
    return Image.fromarray((rs.rand(size, size, 3) * 255).astype(np.uint8))


def _params(mask, checkpoint="tiny-sd1", **i2i) -> GenerationParams:
    return GenerationParams(prompt="a cat", steps=3, width=64, height=64, sampler_name="Euler", checkpoint=checkpoint,
                            save_images=False, seed=SeedParams(seed=11),
                            img2img=Img2ImgParams(init_images=[_init()], mask=mask, **i2i))


def _diff(a: Image.Image, b: Image.Image) -> np.ndarray:
    return np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean(-1) / 255.0


@pytest.mark.slow
@pytest.mark.parametrize("fill", [0, 1, 2, 3])
@pytest.mark.parametrize("only_masked", [False, True])
def test_inpaint_keeps_unmasked_and_changes_masked(env, fill, only_masked):
    manager, settings = env
    params = _params(_square_mask(64, 24, 40), inpainting_fill=fill, inpaint_full_res=only_masked,
                     inpaint_full_res_padding=4, denoising_strength=1.0)
    res = run_img2img(manager, params, settings)
    d = _diff(res.images[0], _init())
    outside = np.ones((64, 64), bool)
    outside[24 - 11 : 40 + 11, 24 - 11 : 40 + 11] = False  # the blurred border (kernel radius 10)
    assert d[outside].mean() <= 3 / 255
    assert d[28:36, 28:36].mean() > 10 / 255
    text = res.infotexts[0]
    assert "Mask blur: 4" in text and "Denoising strength: 1.0" in text
    assert ("Inpaint area: Only masked" in text) == only_masked
    assert ("Masked area padding: 4" in text) == only_masked
    assert ("Masked content" in text) == (fill != 1)


@pytest.mark.slow
def test_inpaint_not_masked_mode(env):
    manager, settings = env
    res = run_img2img(manager, _params(_square_mask(64, 16, 48), inpainting_mask_invert=1, mask_blur_x=0,
                                       mask_blur_y=0, denoising_strength=1.0), settings)
    d = _diff(res.images[0], _init())
    assert d[20:44, 20:44].mean() <= 3 / 255 and d[:8].mean() > 10 / 255
    assert "Mask mode: Inpaint not masked" in res.infotexts[0]


@pytest.mark.slow
def test_blank_mask_falls_back_to_img2img(env):
    manager, settings = env
    blank = run_img2img(manager, _params(Image.new("L", (64, 64), 0)), settings)
    plain = run_img2img(manager, _params(None), settings)
    assert np.array_equal(np.asarray(blank.images[0]), np.asarray(plain.images[0]))
    assert any("blank" in w for w in blank.warnings)
    assert "Mask blur" not in blank.infotexts[0]


@pytest.mark.slow
def test_mask_of_other_size_is_resized_with_warning(env):
    manager, settings = env
    res = run_img2img(manager, _params(_square_mask(32, 12, 20)), settings)
    assert res.images[0].size == (64, 64) and any("resized" in w for w in res.warnings)


@pytest.mark.slow
def test_nine_channel_inpainting_checkpoint(tmp_path_factory):
    from app.devtools.tiny_models import write_tiny_models
    from app.models.catalog.index import Catalog
    from app.models.manager import ModelManager
    from app.paths import Paths
    from app.settings import Settings

    root = tmp_path_factory.mktemp("inpaint-model")
    write_tiny_models(root, families=("sd1-inpaint",))
    paths = Paths.from_data_dir(root)
    settings = Settings(None)
    manager = ModelManager(Catalog(paths), settings, None, paths=paths)
    handle = manager.get("tiny-sd1-inpaint")
    seen = []
    hook = handle.loaded.pipe.unet.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[1]))
    try:
        res = run_img2img(manager, _params(_square_mask(64, 24, 40), checkpoint="tiny-sd1-inpaint",
                                           denoising_strength=1.0), settings)
        plain = run_img2img(manager, _params(None, checkpoint="tiny-sd1-inpaint"), settings)
        # txt2img on an inpainting model (A1111): the whole picture masked, a grey masked image
        from app.engine.modes.txt2img import run_txt2img

        text = _params(None, checkpoint="tiny-sd1-inpaint")
        text.img2img = None
        generated = run_txt2img(manager, text, settings)
    finally:
        hook.remove()
    assert set(seen) == {9}
    assert generated.images[0].size == (64, 64)
    assert res.info["is_using_inpainting_conditioning"] is True
    d = _diff(res.images[0], _init())
    assert d[:8].mean() <= 3 / 255 and d[28:36, 28:36].mean() > 10 / 255
    assert plain.images[0].size == (64, 64)
