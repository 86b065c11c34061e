"""A1111 sampler options the engine applies: the Beta schedule's alpha/beta (``beta_dist_alpha``/``beta_dist_beta``)
and img2img's extra noise (``img2img_extra_noise``): the options table, ``override_settings`` on a tiny-model job, the
infotext keys A1111 writes and their paste, and the X/Y/Z axes that set them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from app.infotext.parse import parse_generation_parameters
from app.infotext.paste import infotext_to_params
from app.params import GenerationParams, HiresParams, Img2ImgParams, SeedParams
from app.settings import Settings
from app.settings.options import builtin_options
from app.xyz import axes


def _option(key: str):
    return next(o for o in builtin_options() if o.key == key)


# ------------------------------------------------------------------------------------------------ Beta schedule
def test_beta_schedule_settings_are_a1111_options():
    for key, label, infotext in (("beta_dist_alpha", "Beta scheduler - alpha", "Beta scheduler alpha"),
                                 ("beta_dist_beta", "Beta scheduler - beta", "Beta scheduler beta")):
        info = _option(key)
        assert (info.default, info.label, info.infotext, info.section.id) == (0.6, label, infotext, "sampler-params")
        assert (info.component, info.minimum, info.maximum, info.step) == ("slider", 0.01, 1.0, 0.01)
    settings = Settings(None)
    assert settings.validate("beta_dist_alpha", 0.3) == 0.3
    with pytest.raises(ValueError):
        settings.validate("beta_dist_beta", 0.0)  # scipy's beta distribution needs > 0


def test_beta_schedule_infotext_pastes_back_either_name():
    for text in ("p\nSteps: 4, Schedule type: Beta, Beta schedule alpha: 0.3, Beta schedule beta: 0.6",
                 "p\nSteps: 4, Schedule type: Beta, Beta scheduler alpha: 0.3, Beta scheduler beta: 0.6"):
        _, overrides = infotext_to_params(parse_generation_parameters(text))
        assert overrides == {"beta_dist_alpha": 0.3}


def test_beta_axes_set_their_overrides():
    p = GenerationParams()
    for label, value in (("Beta schedule alpha", 0.3), ("Beta schedule beta", 0.8)):
        axis = axes.find_axis("txt2img", label)
        assert axes.unavailable_reason(axis, "txt2img") == ""
        axes.apply(p, axis, value, [value])
    assert p.override_settings == {"beta_dist_alpha": 0.3, "beta_dist_beta": 0.8}


def test_extra_noise_axis_sets_its_override():
    for kind in ("img2img", "txt2img"):  # txt2img: the hires fix's second pass
        axis = axes.find_axis(kind, "Extra noise")
        assert axes.unavailable_reason(axis, kind) == ""
        p = GenerationParams(img2img=Img2ImgParams() if kind == "img2img" else None)
        axes.apply(p, axis, 0.2, [0.2])
        assert p.override_settings == {"img2img_extra_noise": 0.2}


class _RecordingNet:
    """A network that predicts zero noise and records its inputs (the UNet call signature)."""

    dtype = torch.float32

    def __init__(self):
        self.inputs: list[torch.Tensor] = []

    def __call__(self, x, t, encoder_hidden_states=None, added_cond_kwargs=None, return_dict=False):
        self.inputs.append(x.clone())
        return (torch.zeros_like(x),)


@pytest.mark.parametrize("sampler", ["Euler", "DDIM"])
def test_extra_noise_start_latents_match_a1111(sampler):
    """A1111's sample_img2img: k-diffusion x + σ·n + extra·n; the timestep samplers √ᾱ·x + √(1-ᾱ)·n + extra·√ᾱ·n."""
    from app.engine.denoise import StepConds, StepsInfo, sample
    from app.engine.sampling import schedulers as S
    from tests.engine.test_samplers import SD1

    steps, start, extra = 10, 4, 0.35
    gen = torch.Generator().manual_seed(3)
    init, noise = torch.randn(1, 4, 8, 8, generator=gen), torch.randn(1, 4, 8, 8, generator=gen)
    conds = StepConds.simple(torch.zeros(1, 3, 8), torch.zeros(1, 3, 8))
    firsts = []
    for amount in (0.0, extra):
        scheduler = S.build_scheduler(sampler, "Automatic", SD1, "epsilon")
        info = StepsInfo(steps, start_step=start,
                         prepare=lambda sc, d: S.make_timesteps(sc, steps, device=d, start_index=start))
        net = _RecordingNet()
        sample(net, scheduler, noise, conds, 1.0, info, init_latents=init, extra_noise=amount)
        firsts.append(net.inputs[0])
    if sampler == "Euler":
        sigma = float(scheduler.sigmas[start])
        expected = (init + (sigma + extra) * noise) / (sigma**2 + 1) ** 0.5
    else:
        t0 = int(scheduler.timesteps[start])
        abar = float(scheduler.alphas_cumprod[t0])
        expected = abar**0.5 * init + (1 - abar) ** 0.5 * noise + extra * abar**0.5 * noise
    torch.testing.assert_close(firsts[1], expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(firsts[0], firsts[1])


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def env(tiny_data_dir):
    from app.models.catalog.index import Catalog
    from app.models.manager import ModelManager
    from app.paths import Paths

    paths = Paths.from_data_dir(tiny_data_dir)
    settings = Settings(None)
    return ModelManager(Catalog(paths), settings, None, paths=paths), settings


def _txt2img(env, **kw):
    from app.engine.modes.txt2img import run_txt2img

    manager, settings = env
    base = dict(prompt="a cat", steps=3, width=64, height=64, sampler_name="Euler", checkpoint="tiny-sd1",
                save_images=False, save_grid=False, seed=SeedParams(seed=11))
    base.update(kw)
    return run_txt2img(manager, GenerationParams(**base), settings)


def _stripes(w: int, h: int) -> Image.Image:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, :, 0] = (np.arange(w) * 255 // max(w - 1, 1))[None, :]
    arr[:, :, 1] = (np.arange(h) * 255 // max(h - 1, 1))[:, None]
    return Image.fromarray(arr)


def _img2img(env, **kw):
    from app.engine.modes.runners import run_img2img

    manager, settings = env
    i2i = {k: kw.pop(k) for k in list(kw) if k in Img2ImgParams.__dataclass_fields__}
    base = dict(prompt="a cat", steps=4, width=64, height=64, sampler_name="Euler", checkpoint="tiny-sd1",
                save_images=False, save_grid=False, seed=SeedParams(seed=7))
    base.update(kw)
    return run_img2img(manager, GenerationParams(img2img=Img2ImgParams(init_images=[_stripes(64, 64)], **i2i), **base),
                       settings)


def _arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


@pytest.mark.slow
def test_beta_schedule_settings_reach_the_job_and_its_infotext(env):
    plain = _txt2img(env, scheduler="Beta")
    shaped = _txt2img(env, scheduler="Beta", override_settings={"beta_dist_alpha": 0.3, "beta_dist_beta": 0.9})
    assert not np.array_equal(_arr(plain.images[0]), _arr(shaped.images[0]))
    pairs = parse_generation_parameters(shaped.infotexts[0])
    assert (pairs["Beta schedule alpha"], pairs["Beta schedule beta"]) == ("0.3", "0.9")
    assert parse_generation_parameters(plain.infotexts[0])["Beta schedule alpha"] == "0.6"  # A1111: always with Beta
    karras = _txt2img(env, scheduler="Karras", override_settings={"beta_dist_alpha": 0.3})
    assert "Beta schedule" not in karras.infotexts[0]
    ddim = _txt2img(env, sampler_name="DDIM", scheduler="Beta")  # a timestep sampler ignores the schedule type
    assert "Beta schedule" not in ddim.infotexts[0]


@pytest.mark.slow
def test_extra_noise_in_img2img_and_the_hires_fix(env):
    plain = _img2img(env, denoising_strength=0.5)
    noisy = _img2img(env, denoising_strength=0.5, override_settings={"img2img_extra_noise": 0.5})
    assert not np.array_equal(_arr(plain.images[0]), _arr(noisy.images[0]))
    assert "Extra noise" not in plain.infotexts[0]
    parsed = parse_generation_parameters(noisy.infotexts[0])
    assert parsed["Extra noise"] == "0.5"
    _, overrides = infotext_to_params(parsed, kind="img2img")
    assert overrides["img2img_extra_noise"] == 0.5
    hires = HiresParams(enabled=True, steps=2, denoising_strength=0.6)
    base = _txt2img(env, steps=2, hires=hires)
    hr = _txt2img(env, steps=2, hires=hires, override_settings={"img2img_extra_noise": 0.5})
    assert not np.array_equal(_arr(base.images[0]), _arr(hr.images[0]))
    assert "Extra noise: 0.5" in hr.infotexts[0] and "Extra noise" not in base.infotexts[0]
    flat = _txt2img(env, steps=2, override_settings={"img2img_extra_noise": 0.5})  # no init latents: not used
    assert "Extra noise" not in flat.infotexts[0]


# ------------------------------------------------------------------------------------------------ UniPC order
def test_unipc_order_axis_is_clamped_below_the_steps_as_a1111():
    axis = axes.find_axis("txt2img", "UniPC Order")
    assert axes.unavailable_reason(axis, "txt2img") == ""
    p = GenerationParams(steps=4)
    axes.apply(p, axis, 2, [2, 7])
    assert p.override_settings == {"uni_pc_order": 2}
    axes.apply(p, axis, 7, [2, 7])
    assert p.override_settings == {"uni_pc_order": 3}


@pytest.mark.slow
def test_unipc_order_setting_reaches_the_solver(env):
    plain = _txt2img(env, sampler_name="UniPC", steps=6)
    first = _txt2img(env, sampler_name="UniPC", steps=6, override_settings={"uni_pc_order": 1})
    assert not np.array_equal(_arr(plain.images[0]), _arr(first.images[0]))
    assert "UniPC order: 1" in first.infotexts[0] and "UniPC order" not in plain.infotexts[0]
    _, overrides = infotext_to_params(parse_generation_parameters(first.infotexts[0]))
    assert overrides["uni_pc_order"] == 1
    euler = _txt2img(env, sampler_name="Euler", override_settings={"uni_pc_order": 1})  # other samplers: untouched
    assert "UniPC order" not in euler.infotexts[0]
