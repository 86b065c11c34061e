"""The sampling core on flow-matching models (app.engine.sampling.model_sampling), with synthetic networks.

The synthetic flow model is the exact optimal denoiser for data x0 ~ N(mu, tau²) per element: with
``x_s = (1 - s)·x0 + s·noise``, ``E[x0 | x_s] = mu + (1-s)·tau² / ((1-s)²·tau² + s²) · (x_s - (1-s)·mu)``,
and the network returns the velocity ``v = (x_s - x0_hat) / s`` (negated, with timestep ``1 - s``, in
Z-Image's convention). Its probability-flow ODE has the closed-form solution
``x(0) = mu + (x_ve - mu) · tau / sqrt(tau² + sigma_ve²)`` in VE terms, so the samplers can be checked
for correctness on flow models, not only for running.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from app.engine.denoise import StepConds, StepsInfo, sample
from app.engine.sampling import schedulers as S
from app.engine.sampling.kdiffusion.res_multistep import res_coefficients
from app.engine.sampling.model_sampling import (
    FLOW_TIMESTEP_KEY,
    DiscreteModelSampling,
    FlowModelSampling,
    model_sampling_for,
)

ZIMAGE = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": False,
    FLOW_TIMESTEP_KEY: "1-sigma",
}
MU, TAU = 0.5, 0.8


class GaussianFlowNet:
    """The exact flow-matching network for N(mu, tau²) data, with the UNet call signature."""

    dtype = torch.float32

    def __init__(self, mu: float = MU, tau: float = TAU, mode: str = "1-sigma", cond_shift: float = 0.0):
        self.mu, self.tau, self.mode, self.cond_shift = mu, tau, mode, cond_shift
        self.calls: list[tuple[torch.Tensor, float]] = []

    def __call__(self, x, t, encoder_hidden_states=None, added_cond_kwargs=None, return_dict=False):
        self.calls.append((x.clone(), float(t)))
        t = float(t)
        s = 1.0 - t if self.mode == "1-sigma" else t / 1000.0
        mu = self.mu
        if self.cond_shift and encoder_hidden_states is not None:  # a conditional mean: mu + shift · cond[0, 0]
            mu = mu + self.cond_shift * encoder_hidden_states[:, 0, 0].double().view(-1, 1, 1, 1)
        a = 1.0 - s
        x64 = x.double()
        x0 = mu + a * self.tau**2 / (a * a * self.tau**2 + s * s) * (x64 - a * mu)
        v = (x64 - x0) / s
        return ((-v if self.mode == "1-sigma" else v).float(),)


def _conds(batch: int) -> StepConds:
    return StepConds.simple(torch.zeros(batch, 3, 8), torch.zeros(batch, 3, 8))


def _run(sampler, schedule, steps, noise, *, ms=None, seeds=None, net=None, start=0, init=None, config=ZIMAGE):
    ms = ms or model_sampling_for("flow", config)
    scheduler = S.build_scheduler(sampler, schedule, config, "flow", noise_seeds=seeds, model_sampling=ms)
    info = StepsInfo(
        steps,
        start_step=start,
        prepare=lambda sc, d: S.make_timesteps(sc, steps, device=d, start_index=start),
        noise_scale=S.init_noise_scale,
    )
    gens = [torch.Generator().manual_seed(100 + i) for i in range(noise.shape[0])]
    net = net or GaussianFlowNet()
    result = sample(net, scheduler, noise, _conds(noise.shape[0]), 1.0, info, generators=gens, init_latents=init,
                    model_sampling=ms)  # fmt: skip
    return result.latents, scheduler, net


def _noise(batch=2, size=8, seed=1):
    return torch.randn(batch, 4, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- the model sampling itself
def test_flow_tables_and_conversions():
    ms = model_sampling_for("flow", ZIMAGE)
    assert isinstance(ms, FlowModelSampling) and ms.shift == 3.0 and ms.negate_output
    native = ms.native_sigmas()
    u = np.arange(1, 1001) / 1000
    np.testing.assert_allclose(native, 3 * u / (1 + 2 * u), rtol=1e-12)
    assert native[-1] == 1.0 and np.all(np.diff(native) > 0)
    ve = ms.to_ve(native)
    assert ve[-1] == pytest.approx(4096.0, rel=1e-6)  # s = 1 stands at the zero-terminal-SNR sigma
    np.testing.assert_allclose(ms.from_ve(ve[:-1]), native[:-1], rtol=1e-12)
    # the diffusers scheduler built from the model keys sees the same noise levels
    scheduler = S.build_scheduler("Euler", "Simple", ZIMAGE, "flow")
    np.testing.assert_allclose(scheduler.alphas_cumprod.double().numpy(), ms.alphas_cumprod(), rtol=2e-4)
    assert scheduler.config.prediction_type == "epsilon"
    # per-step conversion: input scale and timestep
    x_in = torch.ones(1, 4, 2, 2)
    x_net, t_net = ms.network_call_args(x_in, 3.0)  # s = 0.75
    assert float(t_net) == pytest.approx(0.25)
    torch.testing.assert_close(x_net, x_in * math.sqrt(10) / 4)
    flux = model_sampling_for("flow", {**ZIMAGE, FLOW_TIMESTEP_KEY: "sigma*1000"})
    assert float(flux.network_call_args(x_in, 3.0)[1]) == pytest.approx(750.0) and not flux.negate_output


def test_scheduler_output_is_the_epsilon_of_the_flow_prediction():
    ms = model_sampling_for("flow", ZIMAGE)
    x0, noise = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    sigma = 2.5
    s = sigma / (1 + sigma)
    x_in = (x0 + sigma * noise) / math.sqrt(sigma**2 + 1)  # the scaled VE input
    x_net, _ = ms.network_call_args(x_in, sigma)
    torch.testing.assert_close(x_net, (1 - s) * x0 + s * noise)
    eps = ms.to_scheduler_output(-(noise - x0), x_in, sigma)  # Z-Image predicts -v
    torch.testing.assert_close(eps, noise, atol=1e-5, rtol=1e-5)


def test_model_sampling_for_reads_the_config_and_the_job_shift():
    assert model_sampling_for("flow", ZIMAGE, 5.0).shift == 5.0
    assert model_sampling_for("flow", ZIMAGE, 0).shift == 3.0  # 0 = the model's default
    assert model_sampling_for("epsilon", {}).identity
    assert isinstance(model_sampling_for("v_prediction", {}), DiscreteModelSampling)
    with pytest.raises(ValueError, match=FLOW_TIMESTEP_KEY):
        model_sampling_for("flow", {"shift": 3.0})
    with pytest.raises(ValueError, match="dynamic"):
        model_sampling_for("flow", {**ZIMAGE, "use_dynamic_shifting": True})
    assert model_sampling_for("flow", {**ZIMAGE, "use_dynamic_shifting": True}, 2.0).shift == 2.0
    with pytest.raises(ValueError, match="positive"):
        model_sampling_for("flow", ZIMAGE, -1.0)
    with pytest.raises(ValueError, match="prediction_type"):
        model_sampling_for("x0", {})
    with pytest.raises(ValueError, match="flow"):  # a flow config without prediction_type "flow"
        S.build_scheduler("Euler", "Automatic", ZIMAGE)


# ---------------------------------------------------------------- schedules in flow space
@pytest.mark.parametrize("steps", [4, 8, 10, 20])
def test_simple_shift_3_is_zimage_default_schedule(steps):
    """Simple (every 1000/steps-th entry of the shifted table) = ZImagePipeline's linspace(1, 1/N, N)
    shifted by 3 (for step counts dividing 1000; ComfyUI's integer stride rounds otherwise)."""
    ms = model_sampling_for("flow", ZIMAGE)
    scheduler = S.build_scheduler("Euler", "Simple", ZIMAGE, "flow")
    S.make_timesteps(scheduler, steps)
    ours = ms.from_ve(scheduler.sigmas.double().numpy())
    ref = FlowMatchEulerDiscreteScheduler(shift=3.0)
    ref.set_timesteps(sigmas=np.linspace(1.0, 1.0 / steps, steps).tolist())
    expected = ref.sigmas.double().numpy()
    assert ours[0] == pytest.approx(4096 / 4097, rel=1e-6)  # s = 1, clamped (module docstring)
    np.testing.assert_allclose(ours[1:], expected[1:], rtol=1e-6, atol=1e-7)


def test_karras_beta_sgm_in_native_space():
    ms = model_sampling_for("flow", ZIMAGE)
    native = ms.native_sigmas()
    lo, hi = native[0], native[-1]

    def run(label, n=6):
        sch = S.build_scheduler("Euler", label, ZIMAGE, "flow")
        S.make_timesteps(sch, n)
        return ms.from_ve(sch.sigmas.double().numpy())

    ramp = np.linspace(0, 1, 6)
    karras = (hi ** (1 / 7) + ramp * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7
    np.testing.assert_allclose(run("Karras")[1:-1], karras[1:], rtol=1e-5)
    from scipy import stats

    beta = lo + stats.beta.ppf(1 - np.linspace(0, 1, 6), 0.6, 0.6) * (hi - lo)
    np.testing.assert_allclose(run("Beta")[1:-1], beta[1:], rtol=1e-5)
    sgm = run("SGM Uniform", 4)  # linear in t, then shifted: ≈ shift(linspace(1, 0, 5)[:-1])
    u = np.linspace(1.0, 0.001, 5)[:-1]
    np.testing.assert_allclose(sgm[1:-1], (3 * u / (1 + 2 * u))[1:], rtol=2e-3)
    assert sgm[-1] == 0 and np.all(np.diff(sgm) < 0)


def test_flag_schedules_of_deis_are_refused_on_flow():
    """DEIS only has diffusers' VE sigma switches, which collide on the flow table: a clear error, not a crash."""
    with pytest.raises(S.UnsupportedScheduleError, match="flow-matching"):
        S.build_scheduler("DEIS", "Beta", ZIMAGE, "flow")
    S.build_scheduler("DEIS", "Simple", ZIMAGE, "flow")  # spacing route: fine


# ---------------------------------------------------------------- the loop against diffusers' flow Euler
@pytest.mark.parametrize("steps", [4, 8, 10])
def test_euler_simple_matches_diffusers_flow_euler(steps):
    """Our loop (Euler, Simple, shift 3) on a flow network == a hand loop with diffusers'
    FlowMatchEulerDiscreteScheduler(shift=3.0) and ZImagePipeline's sigmas and timestep convention.

    Not bit-equal: our run starts at s = 4096/4097 (sigma_ve 4096 stands for s = 1; the reference starts
    at exactly 1), which moves the result by about (1/4097)·|x0| ≈ 2.4e-4·|x0|, and the first VE step
    subtracts numbers of size 4096·|noise| in float32 (≈ 4096 · 6e-8 ≈ 2.4e-4 absolute, divided by
    1 + sigma_next afterwards)."""
    noise = _noise()
    ours, _, net = _run("Euler", "Simple", steps, noise)
    ref = FlowMatchEulerDiscreteScheduler(shift=3.0)
    ref.set_timesteps(sigmas=np.linspace(1.0, 1.0 / steps, steps).tolist())
    x = noise.clone()
    for t in ref.timesteps:
        pred = -net(x, (1000 - t) / 1000)[0]
        x = ref.step(pred, t, x, return_dict=False)[0]
    assert (ours - x).abs().max().item() < 3e-4 * max(1.0, x.abs().max().item())
    assert len(net.calls) == 2 * steps


# ---------------------------------------------------------------- correctness on the Gaussian model
def _exact_end(noise: torch.Tensor, scheduler) -> torch.Tensor:
    """The ODE solution at sigma 0 from the run's start state (VE form)."""
    sigma0 = float(scheduler.sigmas[0])
    x_ve = noise.double() * S.init_noise_scale(scheduler)
    if isinstance(scheduler, S.DPMSolverMultistepScheduler):  # VP sample: x_ve = x_vp · sqrt(sigma² + 1)
        x_ve = x_ve * math.sqrt(sigma0**2 + 1)
    return MU + (x_ve - MU) * TAU / math.sqrt(TAU**2 + sigma0**2)


def _ode_error(sampler: str, schedule: str, steps: int) -> float:
    noise = _noise()
    out, scheduler, _ = _run(sampler, schedule, steps, noise)
    return (out.double() - _exact_end(noise, scheduler)).abs().max().item()


def test_euler_and_res_multistep_land_on_the_ode_solution():
    euler = [_ode_error("Euler", "Karras", n) for n in (20, 40, 80)]
    res = [_ode_error("res_multistep", "Karras", n) for n in (20, 40, 80)]
    assert euler[-1] < 0.1 and res[-1] < 0.01  # data scale: |x| up to about 3
    assert euler[0] / euler[1] > 1.8 and euler[1] / euler[2] > 1.8  # first order
    assert res[0] / res[1] > 3.0 and res[1] / res[2] > 3.0  # second order
    assert _ode_error("res_multistep", "Simple", 40) < 0.05


#: LCM and TCD need a consistency-distilled model: each step jumps to the model's x0 and re-noises, which
#: for a plain denoiser (this exact one, or an SD / Z-Image model) narrows the spread (also on SD).
CONSISTENCY_SAMPLERS = ("LCM", "TCD")


def _samplers():
    return [s.name for s in S.SAMPLERS]


@pytest.mark.parametrize("sampler", _samplers())
def test_every_sampler_samples_the_data_distribution_on_flow(sampler):
    """Generated samples have the data's mean and std (ancestral and SDE samplers included): every sampler
    is correct on flow models, not just running. Simple schedule (the flow default), 40 steps."""
    noise = _noise(batch=4, size=16, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchsde warns about float rounding of the Brownian interval
        out, _, _ = _run(sampler, "Simple", 40, noise, seeds=[1, 2, 3, 4])
    assert torch.isfinite(out).all()
    assert abs(out.mean().item() - MU) < 0.04
    ratio = out.std().item() / (TAU * noise.std().item())
    if sampler in CONSISTENCY_SAMPLERS:  # they return the model's x0 of the last step: a narrower spread
        assert 0.4 < ratio < 1.0
    else:
        assert abs(ratio - 1) < 0.15


def test_cfg_combines_network_outputs_on_flow():
    """CFG mixes the network outputs (linear): cond mean mu+1, uncond mu → cfg 2 moves the mean to about mu+2."""
    noise = _noise(batch=2, size=16, seed=4)
    ms = model_sampling_for("flow", ZIMAGE)
    net = GaussianFlowNet(cond_shift=1.0)
    conds = StepConds.simple(torch.ones(2, 3, 8), torch.zeros(2, 3, 8))
    sch = S.build_scheduler("Euler", "Simple", ZIMAGE, "flow", model_sampling=ms)
    info = StepsInfo(20, prepare=lambda sc, d: S.make_timesteps(sc, 20, device=d), noise_scale=S.init_noise_scale)
    out = sample(net, sch, noise, conds, 2.0, info, model_sampling=ms).latents
    assert abs(out.mean().item() - (MU + 2.0)) < 0.1
    assert len(net.calls) == 20  # one batched call (uncond + cond) per step


# ---------------------------------------------------------------- img2img / inpaint
@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M", "DDIM", "res_multistep"])
def test_img2img_start_is_the_flow_interpolation(sampler):
    """img2img at denoise d: the network's first input is (1-s)·x0 + s·noise at the start sigma."""
    noise, x0 = _noise(seed=5), _noise(seed=6) * 0.5 + 0.3
    steps, start = 10, 4
    _, scheduler, net = _run(sampler, "Simple", steps, noise, start=start, init=x0)
    first_in, first_t = net.calls[0]
    s = 1.0 - first_t
    torch.testing.assert_close(first_in, (1 - s) * x0 + s * noise, atol=2e-5, rtol=1e-5)
    ms = model_sampling_for("flow", ZIMAGE)
    if sampler != "DDIM":  # sigma schedulers: the start is the schedule's entry at start_step
        full = S.build_scheduler(sampler, "Simple", ZIMAGE, "flow")
        S.make_timesteps(full, steps)
        assert s == pytest.approx(float(ms.from_ve(full.sigmas[start].double().numpy())), rel=1e-5)


def test_inpaint_blend_keeps_the_original_outside_the_mask():
    from app.engine.denoise import Inpainting

    noise, x0 = _noise(seed=7), _noise(seed=8)
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., :4] = 1.0
    ms = model_sampling_for("flow", ZIMAGE)
    sch = S.build_scheduler("Euler", "Simple", ZIMAGE, "flow", model_sampling=ms)
    info = StepsInfo(8, start_step=3, prepare=lambda sc, d: S.make_timesteps(sc, 8, device=d, start_index=3),
                     noise_scale=S.init_noise_scale)  # fmt: skip
    out = sample(GaussianFlowNet(), sch, noise, _conds(2), 1.0, info, init_latents=x0,
                 inpainting=Inpainting(mask=mask), model_sampling=ms).latents  # fmt: skip
    torch.testing.assert_close(out[..., 4:], x0[..., 4:])
    assert not torch.allclose(out[..., :4], x0[..., :4])


# ---------------------------------------------------------------- res_multistep
def test_res_coefficients_are_exact_for_linear_denoised():
    """With D linear in lambda = -log(sigma), the RES step is the exact exponential-integrator solution."""
    s_prev, s, s_next = 2.0, 1.0, 0.4
    a, b = 0.3, -0.7  # D(lambda) = a + b·lambda

    def D(sig):
        return a + b * (-math.log(sig))

    decay, w_now, w_prev = res_coefficients(s_prev, s, s_next)
    x = 1.7
    ours = decay * x + w_now * D(s) + w_prev * D(s_prev)
    # exact: x_next = (s_next/s)·x + s_next ∫ e^lam D(lam) dlam, lam from -log s to -log s_next
    lam0, lam1 = -math.log(s), -math.log(s_next)
    grid = np.linspace(lam0, lam1, 20001)
    integrand = np.exp(grid) * (a + b * grid)
    integral = float(np.sum((integrand[1:] + integrand[:-1]) / 2 * np.diff(grid)))
    assert ours == pytest.approx(s_next / s * x + s_next * integral, rel=1e-7)


def test_res_multistep_runs_on_sd_and_is_listed():
    from app.engine.sampling.names import api_samplers

    assert any(s["name"] == "res_multistep" for s in api_samplers())
    sd1 = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
    sch = S.build_scheduler("res_multistep", "Karras", sd1)
    assert not S.takes_ancestral_eta("res_multistep")
    ts = S.make_timesteps(sch, 6)
    x = torch.randn(1, 4, 4, 4) * S.init_noise_scale(sch)
    for t in ts:
        x = sch.step(0.5 * torch.tanh(sch.scale_model_input(x, t)), t, x).prev_sample
    assert torch.isfinite(x).all()


# ---------------------------------------------------------------- the SD path is untouched
def test_identity_model_sampling_is_the_plain_path():
    sd1 = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}

    class Eps:
        dtype = torch.float32

        def __call__(self, x, t, **_):
            return (0.4 * torch.tanh(x) + 0.001 * torch.as_tensor(t, dtype=torch.float32),)

    outs = []
    for ms in (None, DiscreteModelSampling("epsilon")):
        sch = S.build_scheduler("DPM++ 2M", "Karras", sd1)
        info = StepsInfo(6, prepare=lambda sc, d: S.make_timesteps(sc, 6, device=d), noise_scale=S.init_noise_scale)
        outs.append(sample(Eps(), sch, _noise(seed=9), _conds(2), 7.0, info, model_sampling=ms).latents)
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("shift", [0.5, 1.0, 3.0, 6.0, 12.0, 50.0])
def test_flow_table_is_strictly_increasing_for_any_shift(shift):
    """A large shift puts s(999/1000) above the usual pure-noise sigma (4096); the table must still increase
    strictly, else diffusers' sigma → timestep interpolation divides by zero (found with shift 6 over the API)."""
    from app.engine.sampling.model_sampling import FlowModelSampling

    ms = FlowModelSampling(shift=shift, timestep_mode="1-sigma", negate_output=True)
    ve = ms.to_ve(ms.native_sigmas())
    assert np.all(np.diff(ve) > 0) and ve[-1] == ms.sigma_ve_max
    acp = ms.alphas_cumprod()
    assert np.all(np.diff(acp) < 0)
