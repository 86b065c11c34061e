"""The sampler table: the A1111 samplers of :mod:`app.engine.sampling.names` (pure: names, aliases,
options, UI/API order) bound by stable id to the diffusers scheduler classes that run them.

- diffusers classes (with small subclasses that accept A1111's explicit sigma vectors or timestep
  grid): DPM++ 2M, Euler a, Euler, LMS, DDIM, PLMS, UniPC.
- our own small schedulers (:mod:`app.engine.sampling.kdiffusion`) where no diffusers class does what k-diffusion does (or none takes explicit sigmas, eta, Brownian
  noise): DPM++ SDE, DPM++ 2M SDE (+ Heun), DPM++ 2S a, DPM++ 3M SDE, Heun, DPM2, DPM2 a, LCM,
  Restart, DPM fast, and ComfyUI's res_multistep (an extra).
- left out, not expressible as a fixed list of model evaluations: **DPM adaptive** (adaptive step
  size with rejected steps) and **DDIM CFG++** (needs the unconditional prediction in the step).

``exact`` marks samplers whose step math and sigmas match A1111's (tests/engine/test_samplers.py checks
them against k-diffusion / A1111 reference loops); ``note`` says what differs for the others.
Extras diffusers offers (DEIS, TCD) come after A1111's list.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    TCDScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_euler_ancestral_discrete import EulerAncestralDiscreteSchedulerOutput
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from app.engine.sampling.kdiffusion.dpm_fast import DPMFastKScheduler
from app.engine.sampling.kdiffusion.multistep import (
    DPMPP2MSDEHeunScheduler,
    DPMPP2MSDEScheduler,
    DPMPP3MSDEScheduler,
    LCMKScheduler,
)
from app.engine.sampling.kdiffusion.res_multistep import ResMultistepScheduler
from app.engine.sampling.kdiffusion.restart import RestartKScheduler
from app.engine.sampling.kdiffusion.samplers import (
    DPM2KScheduler,
    DPMPP2SAncestralScheduler,
    DPMPPSDEScheduler,
    EtaAncestralScheduler,
    HeunKScheduler,
    denoised_from,
    euler_ancestral_step,
)
from app.engine.sampling.names import SAMPLER_NAMES, SamplerName
from app.engine.sampling.schedules import model_sigmas_from_alphas, sigma_to_t

__all__ = [
    "SAMPLERS",
    "DPMSolverMultistepSigmasScheduler",
    "EulerAncestralSigmasScheduler",
    "LMSSigmasScheduler",
    "SamplerInfo",
    "scheduler_factory",
]


# ---------------------------------------------------------------- explicit-sigma subclasses
class _ExplicitSigmas:
    """Adds ``set_timesteps(sigmas=[...])`` to a sigma-driven scheduler: the schedule state is its
    ``sigmas``/``timesteps`` pair, so it is set up for ``len(sigmas) - 1`` steps and then given
    the exact vector (timesteps = the fractional training step of each sigma)."""

    def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None, **kwargs):  # type: ignore[no-untyped-def]
        if sigmas is None:
            return super().set_timesteps(num_inference_steps, device=device, **kwargs)  # type: ignore[misc]
        sig = np.asarray(sigmas, dtype=np.float64)
        super().set_timesteps(len(sig) - 1, device=device)  # type: ignore[misc]
        ts = sigma_to_t(sig[:-1], model_sigmas_from_alphas(self.alphas_cumprod))  # type: ignore[attr-defined]
        self.sigmas = torch.from_numpy(sig.astype(np.float32))
        self.timesteps = torch.from_numpy(ts.astype(np.float32)).to(device=device)
        self.num_inference_steps = len(ts)
        return None


class EulerAncestralSigmasScheduler(_ExplicitSigmas, EtaAncestralScheduler):
    """Euler a with A1111's sigma vectors and ancestral eta (config ``eta``, or ``step(..., eta=)``;
    1 = diffusers' own step)."""

    def step(self, model_output, timestep, sample, generator=None, return_dict=True, eta=None, s_noise=1.0):  # type: ignore[no-untyped-def]
        eta = float(self.config.eta) if eta is None else float(eta)
        if eta == 1.0 and float(s_noise) == 1.0:
            return super().step(model_output, timestep, sample, generator=generator, return_dict=return_dict)
        if self.step_index is None:
            self._init_step_index(timestep)
        sigma, sigma_next = float(self.sigmas[self.step_index]), float(self.sigmas[self.step_index + 1])
        x = sample.to(torch.float32)
        x0 = denoised_from(self.config.prediction_type, model_output.to(torch.float32), x, sigma)
        prev = euler_ancestral_step(x, x0, sigma, sigma_next, eta, generator, float(s_noise)).to(model_output.dtype)
        self._step_index += 1
        if not return_dict:
            return (prev, x0)
        return EulerAncestralDiscreteSchedulerOutput(prev_sample=prev, pred_original_sample=x0)


class LMSSigmasScheduler(_ExplicitSigmas, LMSDiscreteScheduler):
    """LMS with A1111's sigma vectors."""


class DPMSolverMultistepSigmasScheduler(_ExplicitSigmas, DPMSolverMultistepScheduler):
    """DPM++ 2M with A1111's sigma vectors."""


def a1111_timesteps(steps: int, num_train_timesteps: int = 1000) -> np.ndarray:
    """A1111's timestep-sampler grid, ascending: ``clip(range(0, 1000, 1000 // steps) + 1, 0, 999)``.
    When ``steps`` does not divide 1000 the grid has extra entries (30 steps → 31 timesteps)."""
    grid = np.arange(0, num_train_timesteps, max(num_train_timesteps // int(steps), 1)) + 1
    return np.clip(grid, 0, num_train_timesteps - 1).astype(np.int64)


class A1111DDIMScheduler(DDIMScheduler):
    """DDIM on A1111's timestep grid (the step size stays ``1000 // steps``)."""

    def set_timesteps(self, num_inference_steps: int, device=None):  # type: ignore[no-untyped-def, override]
        super().set_timesteps(num_inference_steps, device=device)
        grid = a1111_timesteps(num_inference_steps, self.config.num_train_timesteps)[::-1].copy()
        self.timesteps = torch.from_numpy(grid).to(device)


class A1111PLMSScheduler(PNDMScheduler):
    """PLMS (PNDM without Runge-Kutta warm-up) on A1111's timestep grid; the first step is the
    pseudo improved Euler step (two evaluations), like A1111's."""

    def set_timesteps(self, num_inference_steps: int, device=None):  # type: ignore[no-untyped-def, override]
        super().set_timesteps(num_inference_steps, device=device)
        grid = a1111_timesteps(num_inference_steps, self.config.num_train_timesteps)
        self._timesteps = grid
        self.plms_timesteps = np.concatenate([grid[:-1], grid[-2:-1], grid[-1:]])[::-1].copy()
        self.timesteps = torch.from_numpy(self.plms_timesteps).to(device)


class A1111UniPCScheduler(UniPCMultistepScheduler):
    """UniPC on A1111's time-uniform grid: continuous time from 1 to 1/N in ``steps`` equal steps,
    i.e. training timesteps ``linspace(N-1, 0, steps+1)`` (fractional), with sigma from log-alpha
    interpolated linearly in t (the 'discrete' VP noise schedule); the run ends at t = 0, not at
    sigma 0, like A1111's."""

    def set_timesteps(self, num_inference_steps: int, device=None, **kwargs):  # type: ignore[no-untyped-def, override]
        super().set_timesteps(num_inference_steps, device=device)
        n_train = len(self.alphas_cumprod)
        t = np.linspace(n_train - 1, 0, int(num_inference_steps) + 1)
        log_alpha = np.interp(t, np.arange(n_train), 0.5 * np.log(self.alphas_cumprod.double().numpy()))
        alpha = np.exp(log_alpha)
        self.sigmas = torch.from_numpy((np.sqrt(1.0 - alpha**2) / alpha).astype(np.float32))
        self.timesteps = torch.from_numpy(t[:-1].astype(np.float32)).to(device=device)
        self.num_inference_steps = int(num_inference_steps)


# ---------------------------------------------------------------- table
@dataclass(frozen=True)
class SamplerInfo:
    """One sampler: A1111 name/aliases/options plus how to build it with diffusers."""

    id: str
    name: str
    aliases: tuple[str, ...]
    default_schedule: str | None  # schedule id "Automatic" resolves to; None = the model's own (uniform)
    options: Mapping[str, Any]
    factory: Callable[..., SchedulerMixin]  # factory(model_config, **schedule_overrides)
    kind: str  # "sigmas" | "flags" | "timesteps"
    discard_penultimate: bool = False
    exact: bool = True  # matches A1111's sampler math and sigma schedule
    note: str = ""
    extra: bool = False  # not an A1111 sampler (appended after A1111's list)

    def names(self) -> tuple[str, ...]:
        return (self.name, self.id, *self.aliases)


def _factory(cls: type[SchedulerMixin], **overrides: Any) -> Callable[..., SchedulerMixin]:
    params = set(inspect.signature(cls.__init__).parameters)

    def make(config: dict, **schedule_overrides: Any) -> SchedulerMixin:
        merged = {**config, **overrides, **schedule_overrides}
        return cls(**{k: v for k, v in merged.items() if k in params})

    make.__qualname__ = f"factory[{cls.__name__}]"
    make.scheduler_class = cls  # type: ignore[attr-defined]
    make.overrides = dict(overrides)  # type: ignore[attr-defined]
    return make


scheduler_factory = _factory  # public: plugins build SamplerInfo.factory with it

_K = {"timestep_spacing": "linspace"}
_DPM = {**_K, "final_sigmas_type": "zero", "lower_order_final": False, "euler_at_final": False}
_TS = {"timestep_spacing": "leading", "steps_offset": 1, "set_alpha_to_one": False}


#: How each sampler of :data:`app.engine.sampling.names.SAMPLER_NAMES` is built, by stable id.
_FACTORIES: dict[str, Callable[..., SchedulerMixin]] = {
    "dpmpp_2m": _factory(DPMSolverMultistepSigmasScheduler, algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint", **_DPM),
    "dpmpp_sde": _factory(DPMPPSDEScheduler, **_K),
    "dpmpp_2m_sde": _factory(DPMPP2MSDEScheduler, **_K),
    "dpmpp_2m_sde_heun": _factory(DPMPP2MSDEHeunScheduler, **_K),
    "dpmpp_2s_a": _factory(DPMPP2SAncestralScheduler, **_K),
    "dpmpp_3m_sde": _factory(DPMPP3MSDEScheduler, **_K),
    "euler_a": _factory(EulerAncestralSigmasScheduler, **_K),
    "euler": _factory(EulerDiscreteScheduler, final_sigmas_type="zero", interpolation_type="linear", **_K),
    "lms": _factory(LMSSigmasScheduler, **_K),
    "heun": _factory(HeunKScheduler, eta=0.0, **_K),
    "dpm2": _factory(DPM2KScheduler, eta=0.0, **_K),
    "dpm2_a": _factory(DPM2KScheduler, **_K),
    "dpm_fast": _factory(DPMFastKScheduler, **_K),
    "restart": _factory(RestartKScheduler, eta=0.0, **_K),
    "ddim": _factory(A1111DDIMScheduler, clip_sample=False, **_TS),
    "plms": _factory(A1111PLMSScheduler, skip_prk_steps=True, **_TS),
    "unipc": _factory(A1111UniPCScheduler, solver_type="bh1", solver_order=3, lower_order_final=True, timestep_spacing="linspace", final_sigmas_type="sigma_min"),
    "lcm": _factory(LCMKScheduler, eta=0.0, **_K),  # A1111's LCM has no eta
    "res_multistep": _factory(ResMultistepScheduler, eta=0.0, **_K),  # deterministic: no ancestral eta
    "deis": _factory(DEISMultistepScheduler, **_K),
    "tcd": _factory(TCDScheduler, clip_sample=False),
}


def _info(entry: SamplerName) -> SamplerInfo:
    return SamplerInfo(
        entry.id,
        entry.name,
        entry.aliases,
        entry.default_schedule,
        dict(entry.options),
        _FACTORIES[entry.id],
        entry.kind,
        discard_penultimate=entry.discard_penultimate,
        exact=entry.exact,
        note=entry.note,
        extra=entry.extra,
    )


#: The sampler table in UI/API order: the names' table bound to diffusers scheduler classes.
SAMPLERS: tuple[SamplerInfo, ...] = tuple(_info(entry) for entry in SAMPLER_NAMES)
