"""Sampler table, schedule types and scheduler building (spec §6.1, §6.2; feasibility pitfall 4)."""

from __future__ import annotations

import copy
import inspect
import math
import warnings

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

from app.engine.rng import ImageRNG
from app.engine.sampling import names
from app.engine.sampling.kdiffusion.samplers import ancestral_step
from app.engine.sampling.names import api_samplers, api_schedulers
from app.engine.sampling.schedulers import (
    SAMPLERS,
    SCHEDULE_TYPES,
    SamplerInfo,
    UnknownSamplerError,
    UnknownScheduleError,
    UnsupportedScheduleError,
    build_scheduler,
    effective_schedule,
    init_noise_scale,
    is_second_order,
    make_timesteps,
    needs_generator,
    resolve_sampler,
    step_kwargs,
    supported_schedules,
    takes_ancestral_eta,
)
from app.engine.sampling.schedules import compute_sigmas, model_sigmas_from_config
from app.engine.sampling.table import scheduler_factory

# The SD1 checkpoint's original scheduler config (v1-5 scheduler_config.json).
SD1 = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "skip_prk_steps": True,
    "set_alpha_to_one": False,
    "trained_betas": None,
    "clip_sample": False,
}
MS = model_sigmas_from_config(SD1)
SHAPE = (4, 8, 8)
SCHEDULES = {s.label: s for s in SCHEDULE_TYPES}

A1111_ORDER = [
    "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "Euler a",
    "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "Restart", "DDIM", "PLMS", "UniPC", "LCM",
]  # fmt: skip


def dummy_model(x: torch.Tensor, t) -> torch.Tensor:
    """A deterministic stand-in for the UNet's eps prediction."""
    tt = torch.as_tensor(t, dtype=torch.float32)
    return 0.5 * torch.tanh(x) + 0.001 * tt


# ---------------------------------------------------------------- sigma vectors (spec §6.2)
@pytest.mark.parametrize(
    ("label", "n", "expected"),
    [
        ("Karras", 5, [14.6146, 4.7965, 1.2741, 0.248, 0.0292, 0]),
        ("Exponential", 5, [14.6146, 3.089, 0.6529, 0.138, 0.0292, 0]),
        ("Polyexponential", 5, [14.6146, 3.089, 0.6529, 0.138, 0.0292, 0]),
        ("KL Optimal", 5, [14.6146, 2.6329, 1.2948, 0.7116, 0.3356, 0.0292]),
        ("Align Your Steps", 11, [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029, 0]),
        ("Align Your Steps", 10, [14.615, 6.1135, 3.5651, 2.3939, 1.65, 1.1358, 0.7425, 0.445, 0.1692, 0.029, 0]),
    ],
)
def test_spec_sigma_vectors(label, n, expected):
    sig = compute_sigmas(SCHEDULES[label], n, MS)
    np.testing.assert_allclose(sig, expected, atol=1e-4)
    # the same vector reaches a built scheduler (Euler takes explicit sigmas)
    sch = build_scheduler("Euler", label, SD1)
    make_timesteps(sch, n, "Euler", label)
    np.testing.assert_allclose(sch.sigmas.numpy(), expected, atol=1e-4)


def test_ays_sdxl_anchor_list():
    sig = compute_sigmas(SCHEDULES["Align Your Steps"], 11, MS, is_sdxl=True)
    assert sig[:3].round(3).tolist() == [14.615, 6.315, 3.771]


def test_model_sigma_range_sd1():
    assert MS[0] == pytest.approx(0.0292, abs=1e-4) and MS[-1] == pytest.approx(14.6146, abs=1e-4)


def test_schedule_overrides_and_discard():
    karras = SCHEDULES["Karras"]
    sig = compute_sigmas(karras, 5, MS, sigma_min=0.1, sigma_max=10, rho=3)
    assert sig[0] == pytest.approx(10) and sig[-2] == pytest.approx(0.1) and sig[-1] == 0
    full = compute_sigmas(karras, 6, MS)
    dropped = compute_sigmas(karras, 5, MS, discard_penultimate=True)
    assert dropped.tolist() == [*full[:-2], full[-1]]


def test_uniform_is_the_model_schedule():
    sig = compute_sigmas(SCHEDULES["Uniform"], 20, MS)
    assert sig[0] == pytest.approx(MS[-1]) and sig[-2] == pytest.approx(MS[0]) and len(sig) == 21
    np.testing.assert_allclose(compute_sigmas(SCHEDULES["Normal"], 20, MS), sig, atol=1e-6)


# ---------------------------------------------------------------- every sampler runs
@pytest.mark.parametrize("info", SAMPLERS, ids=lambda s: s.id)
def test_every_sampler_builds_and_steps(info):
    seeds = [11, 12]
    sch = build_scheduler(info, "Automatic", SD1, noise_seeds=seeds)
    ts = make_timesteps(sch, 4, info, "Automatic")
    assert len(ts) >= 4
    rng = ImageRNG(SHAPE, seeds)
    x = rng.first() * init_noise_scale(sch)
    kwargs = step_kwargs(sch, generator=rng.torch_generators(), eta=0.0)
    for t in ts:
        eps = dummy_model(sch.scale_model_input(x, t), t)
        x = sch.step(eps, t, x, return_dict=False, **kwargs)[0]
    assert x.shape == (2, *SHAPE)
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("info", SAMPLERS, ids=lambda s: s.id)
def test_every_supported_schedule_applies(info):
    for sid in supported_schedules(info):
        sch = build_scheduler(info, sid, SD1)
        ts = make_timesteps(sch, 6, info, sid)
        assert len(ts) >= 6 and torch.isfinite(torch.as_tensor(ts, dtype=torch.float32)).all(), (info.id, sid)


@pytest.mark.parametrize("label", [s.label for s in SCHEDULE_TYPES if s.id not in ("automatic", "uniform", "normal")])
def test_schedules_differ_from_automatic(label):
    auto = build_scheduler("Euler a", "Automatic", SD1)
    make_timesteps(auto, 8, "Euler a", "Automatic")
    other = build_scheduler("Euler a", label, SD1)
    make_timesteps(other, 8, "Euler a", label)
    assert auto.sigmas.shape != other.sigmas.shape or not torch.allclose(auto.sigmas, other.sigmas, atol=1e-3)
    np.testing.assert_allclose(other.sigmas.numpy(), compute_sigmas(SCHEDULES[label], 8, MS), rtol=1e-5, atol=1e-5)


def test_automatic_uses_sampler_default():
    a = build_scheduler("DPM++ 2M", "Automatic", SD1)
    make_timesteps(a, 6, "DPM++ 2M", "Automatic")
    np.testing.assert_allclose(a.sigmas.numpy(), compute_sigmas(SCHEDULES["Karras"], 6, MS), atol=1e-5)
    b = build_scheduler("DPM++ 2M SDE", "Automatic", SD1)
    make_timesteps(b, 6, "DPM++ 2M SDE", "Automatic")
    np.testing.assert_allclose(b.sigmas.numpy(), compute_sigmas(SCHEDULES["Exponential"], 6, MS), atol=1e-5)


def test_3m_sde_discards_penultimate_sigma():
    sch = build_scheduler("DPM++ 3M SDE", "Karras", SD1)
    make_timesteps(sch, 5, "DPM++ 3M SDE", "Karras")
    full = compute_sigmas(SCHEDULES["Karras"], 6, MS)
    np.testing.assert_allclose(sch.sigmas.numpy(), [*full[:-2], 0.0], atol=1e-5)


def test_make_timesteps_overrides_reach_explicit_sigmas():
    sch = build_scheduler("Euler", "Karras", SD1)
    make_timesteps(sch, 5, sigma_min=0.1, sigma_max=10.0, rho=3.0)
    np.testing.assert_allclose(
        sch.sigmas.numpy(), compute_sigmas(SCHEDULES["Karras"], 5, MS, sigma_min=0.1, sigma_max=10, rho=3), atol=1e-5
    )
    make_timesteps(sch, 5, discard_penultimate=True)
    np.testing.assert_allclose(
        sch.sigmas.numpy(), compute_sigmas(SCHEDULES["Karras"], 5, MS, discard_penultimate=True), atol=1e-5
    )
    beta = build_scheduler("Euler", "Beta", SD1)
    make_timesteps(beta, 5, beta_alpha=0.3, beta_beta=0.8)
    np.testing.assert_allclose(
        beta.sigmas.numpy(), compute_sigmas(SCHEDULES["Beta"], 5, MS, beta_alpha=0.3, beta_beta=0.8), atol=1e-4
    )


def test_overrides_on_flag_samplers_are_logged(caplog):
    sch = build_scheduler("DEIS", "Karras", SD1)
    with caplog.at_level("WARNING", logger="app.engine.sampling.schedulers"):
        make_timesteps(sch, 5, sigma_min=0.1)
    assert "DEIS" in caplog.text and "ignored" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="app.engine.sampling.schedulers"):
        make_timesteps(sch, 5, rho=0, beta_alpha=0.3)  # not relevant to Karras: no warning
    assert caplog.text == ""


def test_flag_schedulers_get_config_switches():
    assert build_scheduler("DEIS", "Karras", SD1).config.use_karras_sigmas is True
    deis_exp = build_scheduler("DEIS", "Exponential", SD1)
    assert deis_exp.config.use_exponential_sigmas and not deis_exp.config.use_karras_sigmas
    assert build_scheduler("DEIS", "SGM Uniform", SD1).config.timestep_spacing == "trailing"
    assert build_scheduler("DEIS", "DDIM", SD1).config.timestep_spacing == "leading"
    assert build_scheduler("DEIS", "Automatic", SD1).config.timestep_spacing == "linspace"


def test_flag_sampler_custom_timesteps_route():
    """A plugin-style sampler on diffusers' Heun: schedules without a config switch go through
    fractional custom timesteps."""
    from diffusers import HeunDiscreteScheduler

    info = SamplerInfo("x_heun", "Diffusers Heun", (), None, {}, scheduler_factory(HeunDiscreteScheduler), "flags")
    assert "kl_optimal" in supported_schedules(info)
    sch = build_scheduler(info, "KL Optimal", SD1)
    make_timesteps(sch, 5)
    expected = compute_sigmas(SCHEDULES["KL Optimal"], 5, MS)[:-1]
    np.testing.assert_allclose(sch.sigmas.numpy()[[0, 1, 3, 5, 7]], expected, rtol=2e-3)


def test_unsupported_schedule_is_a_clear_error():
    with pytest.raises(UnsupportedScheduleError, match="DEIS.*Align Your Steps"):
        resolve_sampler("DEIS", "Align Your Steps")
    with pytest.warns(UserWarning):
        assert resolve_sampler("DEIS", "Align Your Steps", fallback=True)[1].label == "Automatic"


def test_k_samplers_start_at_sigma_max():
    for name in ("Euler", "Euler a", "LMS", "Heun", "DPM2", "DPM++ SDE"):
        sch = build_scheduler(name, "Automatic", SD1)
        make_timesteps(sch, 10, name, "Automatic")
        assert float(sch.init_noise_sigma) == pytest.approx(MS[-1], rel=1e-5), name


# ---------------------------------------------------------------- exactness against k-diffusion reference loops
def _denoised(x, sigma):
    """A1111/k-diffusion eps denoiser around the dummy model: x - eps(x·c_in, t)·sigma."""
    t = float(np.interp(np.log(sigma), np.log(MS), np.arange(len(MS))))
    return x - dummy_model(x / math.sqrt(sigma**2 + 1), t) * sigma


def _run(name, label, steps, noise, generator=None):
    sch = build_scheduler(name, label, SD1)
    ts = make_timesteps(sch, steps, name, label)
    x = noise * init_noise_scale(sch)
    kwargs = step_kwargs(sch, generator=generator)
    for t in ts:
        x = sch.step(dummy_model(sch.scale_model_input(x, t), t), t, x, return_dict=False, **kwargs)[0]
    return x


def test_euler_matches_k_diffusion():
    noise = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(0))
    sigmas = compute_sigmas(SCHEDULES["Karras"], 6, MS)
    x = noise.double() * sigmas[0]
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        d = (x - _denoised(x, s)) / s
        x = x + d * (s_next - s)
    assert torch.allclose(_run("Euler", "Karras", 6, noise).double(), x, atol=1e-4)


def test_euler_a_matches_k_diffusion():
    noise = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(1))
    sigmas = compute_sigmas(SCHEDULES["Uniform"], 5, MS)
    g = torch.Generator().manual_seed(99)
    x = noise.double() * sigmas[0]
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        den = _denoised(x, s)
        up = min(s_next, (s_next**2 * (s**2 - s_next**2) / s**2) ** 0.5)
        down = (s_next**2 - up**2) ** 0.5
        x = x + (x - den) / s * (down - s)
        x = x + torch.randn((1, *SHAPE), generator=g).double() * up
    out = _run("Euler a", "Automatic", 5, noise, generator=torch.Generator().manual_seed(99))
    assert torch.allclose(out.double(), x, atol=1e-4)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_euler_a_eta_matches_k_diffusion(eta):
    noise = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(6))
    sigmas = compute_sigmas(SCHEDULES["Karras"], 5, MS)
    g = torch.Generator().manual_seed(42)
    x = noise.double() * sigmas[0]
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        den = _denoised(x, s)
        up = min(s_next, eta * (s_next**2 * (s**2 - s_next**2) / s**2) ** 0.5)
        down = (s_next**2 - up**2) ** 0.5
        x = x + (x - den) / s * (down - s)
        if s_next > 0:
            x = x + torch.randn((1, *SHAPE), generator=g).double() * up
    for how in ("config", "step"):
        sch = build_scheduler("Euler a", "Karras", SD1, eta=eta if how == "config" else None)
        ts = make_timesteps(sch, 5)
        y = noise * init_noise_scale(sch)
        gen = torch.Generator().manual_seed(42)
        kwargs = step_kwargs(sch, generator=gen, eta=eta if how == "step" else None)
        for t in ts:
            y = sch.step(dummy_model(sch.scale_model_input(y, t), t), t, y, **kwargs)[0]
        assert torch.allclose(y.double(), x, atol=1e-4), how


def test_dpmpp_2m_matches_k_diffusion():
    noise = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(2))
    sigmas = compute_sigmas(SCHEDULES["Karras"], 6, MS)
    x = noise.double() * sigmas[0]
    old = None
    for i in range(len(sigmas) - 1):
        den = _denoised(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = den
            break
        t, t_next = -math.log(sigmas[i]), -math.log(sigmas[i + 1])
        h = t_next - t
        if old is None:
            x = (sigmas[i + 1] / sigmas[i]) * x - math.expm1(-h) * den
        else:
            r = (t - (-math.log(sigmas[i - 1]))) / h
            x = (sigmas[i + 1] / sigmas[i]) * x - math.expm1(-h) * ((1 + 1 / (2 * r)) * den - (1 / (2 * r)) * old)
        old = den
    assert torch.allclose(_run("DPM++ 2M", "Karras", 6, noise).double(), x, atol=1e-4)


def test_dpmpp_2s_a_matches_k_diffusion():
    noise = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(3))
    sigmas = compute_sigmas(SCHEDULES["Karras"], 5, MS)
    g = torch.Generator().manual_seed(77)
    x = noise.double() * sigmas[0]
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        den = _denoised(x, s)
        up = min(s_next, (s_next**2 * (s**2 - s_next**2) / s**2) ** 0.5)
        down = (s_next**2 - up**2) ** 0.5
        if down == 0:
            x = x + (x - den) / s * (down - s)
        else:
            t, t_next = -math.log(s), -math.log(down)
            h = t_next - t
            s_mid = t + h / 2
            x2 = (math.exp(-s_mid) / math.exp(-t)) * x - math.expm1(-h * 0.5) * den
            den2 = _denoised(x2, math.exp(-s_mid))
            x = (math.exp(-t_next) / math.exp(-t)) * x - math.expm1(-h) * den2
        if s_next > 0:
            x = x + torch.randn((1, *SHAPE), generator=g).double() * up
    out = _run("DPM++ 2S a", "Automatic", 5, noise, generator=torch.Generator().manual_seed(77))
    assert torch.allclose(out.double(), x, atol=1e-4)


@pytest.mark.parametrize(("name", "eta"), [("DPM2", 0.0), ("DPM2 a", 1.0), ("DPM2 a", 0.5)])
def test_dpm2_matches_k_diffusion(name, eta):
    """k-diffusion sample_dpm_2 / sample_dpm_2_ancestral on the discarded-penultimate Karras sigmas."""
    noise = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(8))
    sigmas = compute_sigmas(SCHEDULES["Karras"], 5, MS, discard_penultimate=True)
    g = torch.Generator().manual_seed(21)
    x = noise.double() * sigmas[0]
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        den = _denoised(x, s)
        up = min(s_next, eta * (s_next**2 * (s**2 - s_next**2) / s**2) ** 0.5) if eta else 0.0
        down = (s_next**2 - up**2) ** 0.5
        d = (x - den) / s
        if down == 0:
            x = x + d * (down - s)
        else:
            mid = math.exp((math.log(s) + math.log(down)) / 2)
            x2 = x + d * (mid - s)
            d2 = (x2 - _denoised(x2, mid)) / mid
            x = x + d2 * (down - s)
        if eta and s_next > 0:
            x = x + torch.randn((1, *SHAPE), generator=g).double() * up
    sch = build_scheduler(name, "Automatic", SD1, eta=eta if name == "DPM2 a" else None)
    ts = make_timesteps(sch, 5)
    assert len(ts) == 9
    y = noise * init_noise_scale(sch)
    gen = torch.Generator().manual_seed(21)
    for t in ts:
        y = sch.step(dummy_model(sch.scale_model_input(y, t), t), t, y, **step_kwargs(sch, generator=gen))[0]
    assert torch.allclose(y.double(), x, atol=1e-4)


@pytest.mark.parametrize("label", ["Karras", "Align Your Steps"])
def test_heun_matches_k_diffusion(label):
    noise = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(15))
    sigmas = compute_sigmas(SCHEDULES[label], 6, MS)
    x = noise.double() * sigmas[0]
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        d = (x - _denoised(x, s)) / s
        if s_next == 0:
            x = x + d * (s_next - s)
        else:
            x2 = x + d * (s_next - s)
            d2 = (x2 - _denoised(x2, s_next)) / s_next
            x = x + (d + d2) / 2 * (s_next - s)
    sch = build_scheduler("Heun", label, SD1, eta=1.0)  # eta does not apply to Heun
    assert sch.config.eta == 0.0
    ts = make_timesteps(sch, 6)
    assert len(ts) == 11
    y = noise * init_noise_scale(sch)
    for t in ts:
        y = sch.step(dummy_model(sch.scale_model_input(y, t), t), t, y)[0]
    assert torch.allclose(y.double(), x, atol=1e-4)


def test_lms_matches_k_diffusion():
    from scipy import integrate

    noise = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(16))
    sigmas = compute_sigmas(SCHEDULES["Exponential"], 6, MS)

    def coeff(order, i, j):
        def fn(tau):
            prod = 1.0
            for k in range(order):
                if k != j:
                    prod *= (tau - sigmas[i - k]) / (sigmas[i - j] - sigmas[i - k])
            return prod

        return integrate.quad(fn, sigmas[i], sigmas[i + 1], epsrel=1e-4)[0]

    x = noise.double() * sigmas[0]
    ds: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        ds = [*ds, (x - _denoised(x, sigmas[i])) / sigmas[i]][-4:]
        order = min(i + 1, 4)
        x = x + sum(coeff(order, i, j) * d for j, d in zip(range(order), reversed(ds), strict=False))
    assert torch.allclose(_run("LMS", "Exponential", 6, noise).double(), x, atol=1e-4)


@pytest.mark.parametrize("label", ["Automatic", "Karras"])
def test_lcm_matches_a1111(label):
    """A1111's LCM: 50-step origin grid (training steps 19, 39, …, 999), nearest-grid model timestep,
    LCM boundary conditions, then x = denoised + sigma_next·noise."""
    table = MS[19::20]
    noise = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(17))
    if label == "Automatic":
        k = np.linspace(49, 0, 4)
        sigmas = np.concatenate([np.exp(np.interp(k, np.arange(50), np.log(table))), [0.0]])
    else:
        sigmas = compute_sigmas(SCHEDULES["Karras"], 4, table)
        assert sigmas[-2] == pytest.approx(table[0])  # sigma_min of the LCM grid, not of the model
    g = torch.Generator().manual_seed(5)
    x = noise.double() * sigmas[0]
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        t = int(np.abs(np.log(s) - np.log(table)).argmin()) * 20 + 19
        den = x - dummy_model(x / math.sqrt(s**2 + 1), t) * s
        c_skip, c_out = 0.25 / ((t * 10) ** 2 + 0.25), (t * 10) / ((t * 10) ** 2 + 0.25) ** 0.5
        x = c_out * den + c_skip * x
        if s_next > 0:
            x = x + torch.randn((1, *SHAPE), generator=g).double() * s_next
    sch = build_scheduler("LCM", label, SD1)
    ts = make_timesteps(sch, 4)
    assert ts[0] == 999 and all(int(t) % 20 == 19 for t in ts)
    y = noise * init_noise_scale(sch)
    gen = torch.Generator().manual_seed(5)
    for t in ts:
        y = sch.step(dummy_model(sch.scale_model_input(y, t), t), t, y, **step_kwargs(sch, generator=gen))[0]
    assert torch.allclose(y.double(), x, atol=1e-4)


@pytest.mark.parametrize(
    "name", ["Euler a", "DPM++ 2S a", "DPM2 a", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE"]
)
def test_s_noise_scales_the_ancestral_noise(name):
    """s_noise = 0 removes the per-step noise: the result no longer depends on the generator."""
    noise = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(18))

    def run(seed, s_noise):
        sch = build_scheduler(name, "Karras", SD1)
        assert "s_noise" in inspect.signature(sch.step).parameters
        ts = make_timesteps(sch, 4)
        y = noise * init_noise_scale(sch)
        gen = torch.Generator().manual_seed(seed)
        for t in ts:
            y = sch.step(dummy_model(sch.scale_model_input(y, t), t), t, y, generator=gen, s_noise=s_noise)[0]
        return y

    assert torch.equal(run(1, 0.0), run(2, 0.0))
    assert not torch.allclose(run(1, 1.0), run(2, 1.0))
    assert torch.equal(run(1, 1.0), run(1, 1.0))


def test_dpmpp_2m_sde_with_eta_0_is_dpmpp_2m():
    """k-diffusion's 2M SDE at eta 0 is the 2M ODE solver (cross-check of ours against diffusers')."""
    noise = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(19))
    sde = build_scheduler("DPM++ 2M SDE", "Karras", SD1, eta=0.0)
    assert sde.config.eta == 0.0
    ts = make_timesteps(sde, 6)
    y = noise * init_noise_scale(sde)
    for t in ts:
        y = sde.step(dummy_model(sde.scale_model_input(y, t), t), t, y, generator=torch.Generator().manual_seed(1))[0]
    assert torch.allclose(y, _run("DPM++ 2M", "Karras", 6, noise), atol=1e-4)


def test_takes_ancestral_eta():
    with_eta = {s.name for s in SAMPLERS if takes_ancestral_eta(s)}
    assert with_eta == {
        "Euler a",
        "DPM2 a",
        "DPM++ 2S a",
        "DPM++ SDE",
        "DPM++ 2M SDE",
        "DPM++ 2M SDE Heun",
        "DPM++ 3M SDE",
        "DPM fast",
    }


def _a1111_restart(sigmas: np.ndarray, noise: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A1111's restart_sampler (default restart list) on a dummy model."""
    steps = len(sigmas) - 1
    restart = {}
    if steps >= 20:
        r_steps, r_times = (steps // 4, 2) if steps >= 36 else (9, 1)
        sigmas = compute_sigmas(
            SCHEDULES["Karras"], steps - r_steps * r_times, MS, sigma_min=sigmas[-2], sigma_max=sigmas[0]
        )
        restart = {int(np.argmin(np.abs(sigmas - 0.1))): (r_steps + 1, r_times, 2.0)}
    pairs = []
    for i in range(len(sigmas) - 1):
        pairs.append((sigmas[i], sigmas[i + 1]))
        if i + 1 in restart:
            n, times, high = restart[i + 1]
            hi = int(np.argmin(np.abs(sigmas - high)))
            if hi < i + 1:
                seg = compute_sigmas(SCHEDULES["Karras"], n, MS, sigma_min=sigmas[i + 1], sigma_max=sigmas[hi])[:-1]
                for _ in range(times):
                    pairs.extend(zip(seg[:-1], seg[1:], strict=True))
    x, last = noise.double() * pairs[0][0], None
    for old, new in pairs:
        if last is not None and last < old:
            x = x + torch.randn((1, *SHAPE), generator=g).double() * (old**2 - last**2) ** 0.5
        d = (x - _denoised(x, old)) / old
        if new == 0:
            x = x + d * (new - old)
        else:
            x2 = x + d * (new - old)
            d2 = (x2 - _denoised(x2, new)) / new
            x = x + (d + d2) / 2 * (new - old)
        last = new
    return x


@pytest.mark.parametrize("steps", [6, 20, 36])
def test_restart_matches_a1111(steps):
    noise = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(20))
    sch = build_scheduler("Restart", "Automatic", SD1)
    ts = make_timesteps(sch, steps)
    expected = _a1111_restart(compute_sigmas(SCHEDULES["Karras"], steps, MS), noise, torch.Generator().manual_seed(4))
    assert sch.num_inference_steps == steps  # restart segments replace main steps one for one
    revisits = sum(1 for (_, low), (high, _) in zip(sch._pairs, sch._pairs[1:], strict=False) if high > low)
    assert revisits == {6: 0, 20: 1, 36: 2}[steps]
    y = noise * init_noise_scale(sch)
    gen = torch.Generator().manual_seed(4)
    for t in ts:
        y = sch.step(dummy_model(sch.scale_model_input(y, t), t), t, y, generator=gen)[0]
    assert torch.allclose(y.double(), expected, atol=1e-4)


def test_restart_img2img_plans_from_truncated_sigmas():
    sch = build_scheduler("Restart", "Karras", SD1)
    ts = make_timesteps(sch, 30, start_index=5)
    full = compute_sigmas(SCHEDULES["Karras"], 30, MS)
    assert float(sch.sigmas[0]) == pytest.approx(full[5], rel=1e-5)
    assert sch.num_inference_steps == 25 and len(ts) == 2 * 25 - 1  # 25 sigmas left: no restart segment


def _k_dpm_fast(n: int, eta: float, noise: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """k-diffusion's DPMSolver.dpm_solver_fast from sigma_max to sigma_min with n evaluations."""

    def sig(t):
        return math.exp(-t)

    def eps(x, t):
        return (x - _denoised(x, sig(t))) / sig(t)

    t_start, t_end = -math.log(MS[-1]), -math.log(MS[0])
    m = n // 3 + 1
    ts = np.linspace(t_start, t_end, m + 1)
    orders = [3] * (m - 2) + [2, 1] if n % 3 == 0 else [3] * (m - 1) + [n % 3]
    x = noise.double() * MS[-1]
    for i, order in enumerate(orders):
        t, t_next = ts[i], ts[i + 1]
        if eta:
            sd, _ = ancestral_step(sig(t), sig(t_next), eta)
            t_tgt = min(t_end, -math.log(sd))
            su = (sig(t_next) ** 2 - sig(t_tgt) ** 2) ** 0.5
        else:
            t_tgt, su = t_next, 0.0
        h = t_tgt - t
        e = eps(x, t)
        if order == 1:
            x_new = x - sig(t_tgt) * math.expm1(h) * e
        elif order == 2:
            s1 = t + h / 2
            e1 = eps(x - sig(s1) * math.expm1(h / 2) * e, s1)
            x_new = x - sig(t_tgt) * math.expm1(h) * e - sig(t_tgt) / (2 * 0.5) * math.expm1(h) * (e1 - e)
        else:
            r1, r2 = 1 / 3, 2 / 3
            s1, s2 = t + r1 * h, t + r2 * h
            e1 = eps(x - sig(s1) * math.expm1(r1 * h) * e, s1)
            u2 = (
                x
                - sig(s2) * math.expm1(r2 * h) * e
                - sig(s2) * (r2 / r1) * (math.expm1(r2 * h) / (r2 * h) - 1) * (e1 - e)
            )
            e2 = eps(u2, s2)
            x_new = x - sig(t_tgt) * math.expm1(h) * e - sig(t_tgt) / r2 * (math.expm1(h) / h - 1) * (e2 - e)
        x = x_new + (torch.randn((1, *SHAPE), generator=g).double() * su if su > 0 else 0)
    return x


@pytest.mark.parametrize(("n", "eta"), [(5, 0.0), (6, 0.0), (7, 1.0), (9, 1.0)])
def test_dpm_fast_matches_k_diffusion(n, eta):
    noise = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(21))
    expected = _k_dpm_fast(n, eta, noise, torch.Generator().manual_seed(6))
    sch = build_scheduler("DPM fast", "Automatic", SD1, eta=eta)
    ts = make_timesteps(sch, n)
    assert len(ts) == n  # n model evaluations
    y = noise * init_noise_scale(sch)
    gen = torch.Generator().manual_seed(6)
    for t in ts:
        y = sch.step(dummy_model(sch.scale_model_input(y, t), t), t, y, generator=gen)[0]
    assert torch.allclose(y.double(), expected, atol=1e-4)


def test_dpm_fast_img2img_uses_the_truncated_range():
    sch = build_scheduler("DPM fast", "Karras", SD1, eta=0.0)
    ts = make_timesteps(sch, 20, start_index=5)
    full = compute_sigmas(SCHEDULES["Karras"], 20, MS)
    assert len(ts) == 15 and sch.num_inference_steps == 15
    assert float(sch.sigmas[0]) == pytest.approx(full[5], rel=1e-5)
    assert float(sch.sigmas[-1]) == pytest.approx(full[-2], rel=1e-5)  # ends at the schedule's sigma_min


def test_dpm2_ignores_eta():
    assert build_scheduler("DPM2", "Automatic", SD1, eta=1.0).config.eta == 0.0
    assert build_scheduler("DPM2 a", "Automatic", SD1).config.eta == 1.0


def test_dpmpp_2s_a_interleaves_midpoints():
    sch = build_scheduler("DPM++ 2S a", "Karras", SD1)
    ts = make_timesteps(sch, 5)
    assert len(ts) == 9 and sch.order == 2 and is_second_order(sch)  # 2 evals per step, 1 for the last
    base = compute_sigmas(SCHEDULES["Karras"], 5, MS)
    np.testing.assert_allclose(sch.sigmas.numpy()[[0, 2, 4, 6, 8]], base[:-1], rtol=1e-6)
    for i in range(4):
        down, _ = ancestral_step(base[i], base[i + 1])
        assert float(sch.sigmas[2 * i + 1]) == pytest.approx(math.sqrt(base[i] * down), rel=1e-6)
    tail = make_timesteps(build_scheduler("DPM++ 2S a", "Karras", SD1), 5, start_index=2)
    assert torch.equal(tail, ts[4:])
    assert sch.config.eta == 1.0


def test_ancestral_eta_from_build():
    """eta is a build-time setting for DPM++ 2S a (its midpoints depend on it); eta 0 is deterministic."""
    sch = build_scheduler("DPM++ 2S a", "Karras", SD1, eta=0.0)
    assert sch.config.eta == 0.0
    ts = make_timesteps(sch, 4)
    assert len(ts) == 7
    noise = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(4))
    outs = []
    for seed in (1, 2):
        s2 = build_scheduler("DPM++ 2S a", "Karras", SD1, eta=0.0)
        ts2 = make_timesteps(s2, 4)
        x = noise * init_noise_scale(s2)
        for t in ts2:
            x = s2.step(
                dummy_model(s2.scale_model_input(x, t), t), t, x, generator=torch.Generator().manual_seed(seed)
            )[0]
        outs.append(x)
    assert torch.equal(outs[0], outs[1])
    assert build_scheduler("Euler a", None, SD1, eta=0.3).config.eta == 0.3
    assert "eta" not in build_scheduler("Euler", None, SD1, eta=0.3).config  # ignored where not a config value


@pytest.mark.parametrize("name", ["DPM++ 2M SDE", "DPM++ 2M SDE Heun"])
def test_dpmpp_2m_sde_brownian_matches_k_diffusion(name):
    from diffusers.schedulers.scheduling_dpmsolver_sde import BrownianTreeNoiseSampler

    noise = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(5))
    sch = build_scheduler(name, "Automatic", SD1, noise_seeds=[1234])
    with pytest.raises(ValueError, match="make_timesteps"):
        init_noise_scale(sch)
    ts = make_timesteps(sch, 6)
    sig32 = sch.sigmas.clone()  # the tree is queried at exactly these float32 sigmas
    np.testing.assert_allclose(sig32.numpy(), compute_sigmas(SCHEDULES["Exponential"], 6, MS), rtol=1e-5)
    tree = BrownianTreeNoiseSampler(noise, sig32[sig32 > 0].min(), sig32.max(), seed=[1234])
    sigmas = sig32.double().numpy()
    x = noise.double() * sigmas[0]
    old, h_last = None, None
    for i in range(len(sigmas) - 1):
        den = _denoised(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = den
            break
        h = math.log(sigmas[i]) - math.log(sigmas[i + 1])
        x = sigmas[i + 1] / sigmas[i] * math.exp(-h) * x - math.expm1(-2 * h) * den
        if old is not None and name.endswith("Heun"):
            x = x + (-math.expm1(-2 * h) / (-2 * h) + 1) * (h / h_last) * (den - old)
        elif old is not None:
            x = x - 0.5 * math.expm1(-2 * h) * (h / h_last) * (den - old)
        x = x + tree(sig32[i], sig32[i + 1]).double() * sigmas[i + 1] * math.sqrt(-math.expm1(-2 * h))
        old, h_last = den, h

    y = noise * init_noise_scale(sch)
    for t in ts:
        y = sch.step(dummy_model(sch.scale_model_input(y, t), t), t, y, generator=torch.Generator().manual_seed(9))[0]
    assert torch.allclose(y.double(), x, atol=1e-4)


@pytest.mark.parametrize("brownian", [True, False])
def test_dpmpp_3m_sde_matches_k_diffusion(brownian):
    from diffusers.schedulers.scheduling_dpmsolver_sde import BrownianTreeNoiseSampler

    noise = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(10))
    sch = build_scheduler("DPM++ 3M SDE", "Automatic", SD1, noise_seeds=[77] if brownian else None)
    ts = make_timesteps(sch, 7)
    sig32 = sch.sigmas.clone()
    np.testing.assert_allclose(
        sig32.numpy(), compute_sigmas(SCHEDULES["Exponential"], 7, MS, discard_penultimate=True), rtol=1e-5
    )
    tree = BrownianTreeNoiseSampler(noise, float(sig32[sig32 > 0].min()), float(sig32.max()), seed=[77])
    g = torch.Generator().manual_seed(13)
    sigmas = sig32.double().numpy()
    x = noise.double() * sigmas[0]
    d_1 = d_2 = h_1 = h_2 = None
    for i in range(len(sigmas) - 1):
        den = _denoised(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = den
        else:
            h = math.log(sigmas[i]) - math.log(sigmas[i + 1])
            h_eta = 2 * h
            x = math.exp(-h_eta) * x - math.expm1(-h_eta) * den
            phi_2 = math.expm1(-h_eta) / h_eta + 1
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0, d1_1 = (den - d_1) / r0, (d_1 - d_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                x = x + phi_2 * d1 - (phi_2 / h_eta - 0.5) * d2
            elif h_1 is not None:
                x = x + phi_2 * (den - d_1) / (h_1 / h)
            n = tree(float(sig32[i]), float(sig32[i + 1])) if brownian else torch.randn((1, *SHAPE), generator=g)
            x = x + n.double() * sigmas[i + 1] * math.sqrt(-math.expm1(-2 * h))
            d_1, d_2, h_1, h_2 = den, d_1, h, h_1
    y = noise * init_noise_scale(sch)
    gen = torch.Generator().manual_seed(13)
    for t in ts:
        y = sch.step(dummy_model(sch.scale_model_input(y, t), t), t, y, **step_kwargs(sch, generator=gen))[0]
    assert torch.allclose(y.double(), x, atol=1e-4)


def test_brownian_noise_batch_equals_single():
    def run(seeds):
        sch = build_scheduler("DPM++ 3M SDE", "Automatic", SD1, noise_seeds=seeds)
        ts = make_timesteps(sch, 4)
        x = ImageRNG(SHAPE, seeds).first() * init_noise_scale(sch)
        for t in ts:
            x = sch.step(dummy_model(sch.scale_model_input(x, t), t), t, x, return_dict=False)[0]
        return x

    assert torch.allclose(run([3, 4])[1], run([4])[0], atol=1e-5)
    assert not torch.allclose(run([3, 4])[0], run([4])[0], atol=1e-3)


def _a1111_timestep_sampler(kind: str, steps: int, noise: torch.Tensor) -> torch.Tensor:
    """A1111's DDIM (eta 0) / PLMS on timesteps 1, 1+1000//n, … (sd_samplers_timesteps_impl)."""
    acp = torch.from_numpy(1.0 / (1.0 + MS.astype(np.float64) ** 2))
    ts = torch.arange(0, 1000, 1000 // steps) + 1
    alphas, alphas_prev = acp[ts], acp[torch.nn.functional.pad(ts[:-1], (1, 0))]
    x = noise.double()

    def update(e, i):
        a_t, a_prev = alphas[i], alphas_prev[i]
        x0 = (x - (1 - a_t).sqrt() * e) / a_t.sqrt()
        return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * e

    old: list[torch.Tensor] = []
    for i in range(len(ts) - 1, -1, -1):
        e = dummy_model(x, float(ts[i])).double()
        if kind == "ddim":
            x = update(e, i)
            continue
        if not old:
            e_next = dummy_model(update(e, i), float(ts[max(i - 1, 0)])).double()
            e_prime = (e + e_next) / 2
        elif len(old) == 1:
            e_prime = (3 * e - old[-1]) / 2
        elif len(old) == 2:
            e_prime = (23 * e - 16 * old[-1] + 5 * old[-2]) / 12
        else:
            e_prime = (55 * e - 59 * old[-1] + 37 * old[-2] - 9 * old[-3]) / 24
        x = update(e_prime, i)
        old = [*old[-2:], e]
    return x


@pytest.mark.parametrize(("name", "kind", "steps"), [("DDIM", "ddim", 5), ("DDIM", "ddim", 6), ("PLMS", "plms", 6)])
def test_timestep_samplers_match_a1111(name, kind, steps):
    noise = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(12))
    expected = _a1111_timestep_sampler(kind, steps, noise)
    sch = build_scheduler(name, "Automatic", SD1)
    ts = make_timesteps(sch, steps)
    y = noise * init_noise_scale(sch)
    for t in ts:
        y = sch.step(dummy_model(sch.scale_model_input(y, t), float(t)), t, y, **step_kwargs(sch, eta=0.0))[0]
    assert torch.allclose(y.double(), expected, atol=1e-4)


# ---------------------------------------------------------------- building from the ORIGINAL config
def test_no_settings_leak_between_schedulers():
    """Pitfall 4: a config carrying karras (from a DPM++ scheduler) must not make Euler karras."""
    dpm_karras = DPMSolverMultistepScheduler.from_config(SD1, use_karras_sigmas=True)
    leaky = dict(dpm_karras.config)
    assert EulerDiscreteScheduler.from_config(leaky).config.use_karras_sigmas is True  # the pitfall itself
    euler = build_scheduler("Euler", "Automatic", leaky)
    assert euler.config.use_karras_sigmas is False and euler.config.timestep_spacing == "linspace"


def test_base_config_is_not_mutated():
    base = copy.deepcopy(SD1)
    build_scheduler("DPM++ 2M", "Karras", base)
    build_scheduler("DPM2", "Exponential", base)
    euler = build_scheduler("Euler", "Automatic", base)
    assert base == SD1
    assert not euler.config.use_karras_sigmas and not euler.config.use_exponential_sigmas


def test_flow_matching_config_is_rejected():
    flow = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}
    with pytest.raises(ValueError, match="FlowMatchEulerDiscreteScheduler"):
        build_scheduler("Euler", "Automatic", flow)


def test_fresh_instance_each_time():
    assert build_scheduler("Euler", "Automatic", SD1) is not build_scheduler("Euler", "Automatic", SD1)


@pytest.mark.parametrize("info", SAMPLERS, ids=lambda s: s.id)
def test_v_prediction_kept(info):
    sch = build_scheduler(info, "Automatic", {**SD1, "prediction_type": "v_prediction"})
    assert sch.config.prediction_type == "v_prediction"
    assert (
        build_scheduler(info, "Automatic", SD1, prediction_type="v_prediction").config.prediction_type == "v_prediction"
    )
    assert build_scheduler(info, "Automatic", SD1).config.prediction_type == "epsilon"


def test_timestep_samplers_use_a1111_timesteps():
    sch = build_scheduler("DDIM", "Automatic", {**SD1, "steps_offset": 0})
    ts = make_timesteps(sch, 20, sampler="DDIM")
    assert ts.tolist() == list(range(951, 0, -50))  # 1, 51, …, 951 reversed
    assert sch.config.set_alpha_to_one is False and sch.config.clip_sample is False
    ddim30 = make_timesteps(build_scheduler("DDIM", None, SD1), 30)
    assert len(ddim30) == 31 and ddim30[0] == 991 and ddim30[-1] == 1  # A1111 quirk: range(0, 1000, 33)
    plms = build_scheduler("PLMS", "Karras", SD1)  # the schedule choice does not apply
    assert make_timesteps(plms, 10, "PLMS", "Karras")[-1] == 1


def test_unipc_uses_a1111_time_uniform_grid():
    sch = build_scheduler("UniPC", "Automatic", SD1)
    ts = make_timesteps(sch, 6)
    np.testing.assert_allclose(ts.numpy(), np.linspace(999, 0, 7)[:-1], rtol=1e-6)
    assert len(sch.sigmas) == 7
    assert float(sch.sigmas[0]) == pytest.approx(MS[-1], rel=1e-5)
    assert float(sch.sigmas[-1]) == pytest.approx(MS[0], rel=1e-5)  # ends at t = 0, not sigma 0
    cfg = (sch.config.solver_type, sch.config.solver_order, sch.config.lower_order_final, sch.config.predict_x0)
    assert cfg == ("bh1", 3, True, True)


def test_make_timesteps_needs_a_sampler_for_foreign_schedulers():
    with pytest.raises(ValueError, match="sampler="):
        make_timesteps(EulerDiscreteScheduler.from_config(SD1), 4)
    foreign = EulerDiscreteScheduler.from_config(SD1, timestep_spacing="linspace")
    make_timesteps(foreign, 4, "Euler", "Karras")
    np.testing.assert_allclose(foreign.sigmas.numpy(), compute_sigmas(SCHEDULES["Karras"], 4, MS), atol=1e-5)


def test_dpmpp_sde_brownian_seeds():
    sch = build_scheduler("DPM++ SDE", "Automatic", SD1, noise_seeds=[5, 6])
    assert sch.uses_brownian_noise and sch._noise_seeds == [5, 6]
    assert not build_scheduler("DPM++ SDE", "Automatic", SD1).uses_brownian_noise


@pytest.mark.parametrize("brownian", [True, False])
def test_dpmpp_sde_matches_k_diffusion(brownian):
    from diffusers.schedulers.scheduling_dpmsolver_sde import BrownianTreeNoiseSampler

    noise = torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(14))
    sch = build_scheduler("DPM++ SDE", "Karras", SD1, noise_seeds=[55] if brownian else None)
    ts = make_timesteps(sch, 5)
    assert len(ts) == 9
    base = sch._base  # the tree is queried at exactly these sigmas
    np.testing.assert_allclose(base, compute_sigmas(SCHEDULES["Karras"], 5, MS), rtol=1e-5)
    tree = BrownianTreeNoiseSampler(noise, float(sch.sigmas[sch.sigmas > 0].min()), float(sch.sigmas.max()), seed=[55])
    g = torch.Generator().manual_seed(3)

    def noise_between(a, b):
        return tree(a, b).double() if brownian else torch.randn((1, *SHAPE), generator=g).double()

    x = noise.double() * base[0]
    for s, s_next in zip(base[:-1], base[1:], strict=True):
        den = _denoised(x, s)
        if s_next == 0:
            x = den
            continue
        s_mid = math.sqrt(s * s_next)
        sd, su = ancestral_step(s, s_mid)
        x2 = (sd / s) * x - math.expm1(math.log(sd / s)) * den + noise_between(s, s_mid) * su
        den2 = _denoised(x2, s_mid)
        sd, su = ancestral_step(s, s_next)
        x = (sd / s) * x - math.expm1(math.log(sd / s)) * den2 + noise_between(s, s_next) * su
    y = noise * init_noise_scale(sch)
    gen = torch.Generator().manual_seed(3)
    for t in ts:
        y = sch.step(dummy_model(sch.scale_model_input(y, t), t), t, y, **step_kwargs(sch, generator=gen))[0]
    assert torch.allclose(y.double(), x, atol=1e-4)


def test_img2img_start_index():
    sch = build_scheduler("Euler", "Karras", SD1)
    full = make_timesteps(build_scheduler("Euler", "Karras", SD1), 20)  # defaults from the build
    tail = make_timesteps(sch, 20, "Euler", "Karras", start_index=4)
    assert len(tail) == 16 and torch.equal(tail, full[4:])
    assert sch.begin_index == 4
    heun = build_scheduler("Heun", "Automatic", SD1)
    assert len(make_timesteps(heun, 10, sampler="Heun", start_index=5)) == len(heun.timesteps) - 10


# ---------------------------------------------------------------- names
@pytest.mark.parametrize(
    ("name", "scheduler", "sampler", "schedule"),
    [
        ("DPM++ 2M", "Automatic", "DPM++ 2M", "Automatic"),
        ("DPM++ 2M Karras", "Automatic", "DPM++ 2M", "Automatic"),  # karras is its default
        ("DPM++ 2M", "Karras", "DPM++ 2M", "Automatic"),
        ("DPM++ 2M", "Exponential", "DPM++ 2M", "Exponential"),
        ("Euler a Karras", "Automatic", "Euler a", "Karras"),
        ("Euler a", "karras", "Euler a", "Karras"),
        ("k_euler_a", None, "Euler a", "Automatic"),
        ("k_euler_ancestral", "", "Euler a", "Automatic"),
        ("euler_a", "SGMUniform", "Euler a", "SGM Uniform"),
        ("dpm++ 2m sde karras", "Automatic", "DPM++ 2M SDE", "Karras"),
        ("DPM++ 2M SDE Exponential", "Automatic", "DPM++ 2M SDE", "Automatic"),
        ("DPM++ 2M SDE Heun", "Automatic", "DPM++ 2M SDE Heun", "Automatic"),
        ("DDIM", "Automatic", "DDIM", "Automatic"),
        ("Euler sgm_uniform", "Automatic", "Euler", "SGM Uniform"),
        ("LMS Karras", "Automatic", "LMS", "Karras"),
        ("k_dpm_2_a", "Karras", "DPM2 a", "Automatic"),
        ("", "Automatic", "DPM++ 2M", "Automatic"),
        (None, None, "DPM++ 2M", "Automatic"),
    ],
)
def test_resolve_sampler(name, scheduler, sampler, schedule):
    info, sch = resolve_sampler(name, scheduler)
    assert (info.name, sch.label) == (sampler, schedule)


def test_unknown_sampler_lists_valid_names():
    with pytest.raises(UnknownSamplerError, match=r"'Foo'.*DPM\+\+ 2M.*Euler a") as err:
        resolve_sampler("Foo")
    assert isinstance(err.value, ValueError)
    with pytest.raises(UnknownScheduleError, match="Karras"):
        resolve_sampler("Euler", "Fancy")


def test_fallback_mode_uses_first_sampler():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info, sch = resolve_sampler("Foo Bar", "Nope", fallback=True)
    assert (info.name, sch.label) == ("DPM++ 2M", "Automatic")
    assert len(caught) == 2


@pytest.mark.parametrize(
    ("sampler", "schedule", "label"),
    [
        ("DPM++ 2M", "Automatic", "Karras"),
        ("DPM++ 2M SDE", "Automatic", "Exponential"),
        ("DPM++ 2M", "Exponential", "Exponential"),
        ("Euler a", "Automatic", "Automatic"),
        ("Euler a", "Karras", "Karras"),
        ("DDIM", "Automatic", "Automatic"),
        ("DPM2 a", None, "Karras"),
    ],
)
def test_effective_schedule(sampler, schedule, label):
    assert effective_schedule(sampler, schedule) == label


# ---------------------------------------------------------------- tables and helpers
def test_order_and_ids():
    names = [s.name for s in SAMPLERS if not s.extra]
    assert names == A1111_ORDER
    assert SAMPLERS[0].name == "DPM++ 2M"
    assert all(s.extra for s in SAMPLERS[len(A1111_ORDER) :])
    ids = [s.id for s in SAMPLERS]
    assert len(ids) == len(set(ids))


def test_api_tables():
    samplers = api_samplers()
    assert samplers[0] == {"name": "DPM++ 2M", "aliases": ["k_dpmpp_2m"], "options": {"scheduler": "karras"}}
    sde = next(s for s in samplers if s["name"] == "DPM++ SDE")
    assert sde["options"] == {"scheduler": "karras", "second_order": "True", "brownian_noise": "True"}
    scheds = api_schedulers()
    assert [s["label"] for s in scheds] == [
        "Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform", "KL Optimal",
        "Align Your Steps", "Simple", "Normal", "DDIM", "Beta",
    ]  # fmt: skip
    karras = next(s for s in scheds if s["name"] == "karras")
    assert karras["default_rho"] == 7.0 and karras["need_inner_model"] is False
    sgm = next(s for s in scheds if s["name"] == "sgm_uniform")
    assert sgm["aliases"] == ["SGMUniform"] and sgm["need_inner_model"] is True


def test_generator_and_order_helpers():
    assert needs_generator(build_scheduler("Euler a", None, SD1))
    assert needs_generator(build_scheduler("DPM++ 2M SDE", None, SD1))
    assert not needs_generator(build_scheduler("LMS", None, SD1))
    assert not needs_generator(build_scheduler("PLMS", None, SD1))
    assert is_second_order("Heun") and is_second_order("DPM++ SDE") and not is_second_order("Euler a")
    assert is_second_order(build_scheduler("Heun", None, SD1))
    assert not is_second_order(build_scheduler("Euler", None, SD1))
    ddim = build_scheduler("DDIM", None, SD1)
    assert step_kwargs(ddim, eta=0.5) == {"eta": 0.5}
    assert step_kwargs(build_scheduler("LMS", None, SD1), generator=torch.Generator(), eta=1.0) == {}


def test_sde_batch_equals_single_with_per_image_generators():
    def run(seeds):
        sch = build_scheduler("DPM++ 2M SDE", "Automatic", SD1)
        ts = make_timesteps(sch, 4, sampler="DPM++ 2M SDE")
        rng = ImageRNG(SHAPE, seeds, ensd=31337)
        x = rng.first() * init_noise_scale(sch)
        gens = rng.torch_generators()
        for t in ts:
            x = sch.step(dummy_model(sch.scale_model_input(x, t), t), t, x, generator=gens, return_dict=False)[0]
        return x

    assert torch.allclose(run([7, 8, 9])[2], run([9])[0], atol=1e-6)


# ---------------------------------------------------------------- the pure names table agrees with the engine
def test_names_table_matches_the_scheduler_classes():
    """The torch-free table (UI/API validation) lists the schedule types each scheduler class can run."""
    assert [n.id for n in names.SAMPLER_NAMES] == [s.id for s in SAMPLERS]
    for entry, info in zip(names.SAMPLER_NAMES, SAMPLERS, strict=True):
        assert names.supported_schedule_ids(entry) == supported_schedules(info), entry.id
        assert (entry.name, entry.aliases, entry.default_schedule, dict(entry.options), entry.kind) == (
            info.name, info.aliases, info.default_schedule, dict(info.options), info.kind)
    assert names.sampler_labels() == [s.name for s in SAMPLERS]
    assert names.schedule_labels() == [s.label for s in SCHEDULE_TYPES]


@pytest.mark.parametrize("fallback", [False, True])
@pytest.mark.parametrize(
    ("name", "schedule"),
    [("DPM++ 2M Karras", None), ("euler a", "karras"), ("k_dpmpp_2m", "Automatic"), ("DEIS", "KL Optimal"),
     ("DEIS", "Align Your Steps"), ("Euler", "nope"), ("nope", "Karras"), ("", ""), ("DDIM", "Exponential")],
)
def test_names_resolve_like_the_engine(name, schedule, fallback):
    def outcome(resolve):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                sampler, sch = resolve(name, schedule, fallback)
            except ValueError as exc:
                return type(exc).__name__, str(exc)
        return sampler.name, sch.id, [str(w.message) for w in caught]

    assert outcome(names.resolve_names) == outcome(resolve_sampler)

