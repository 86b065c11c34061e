"""The RES multistep solver (ComfyUI's ``res_multistep``) as a diffusers-style scheduler.

Zhang et al. 2023, "Improved order analysis and design of exponential integrator for diffusion
models" (RES): an exponential integrator of the probability-flow ODE in data prediction, in VE sigma
space with ``lambda = -log(sigma)`` and ``h = lambda_next - lambda``. The exact step is

    x_next = (sigma_next / sigma) * x + sigma_next * ∫ e^lambda' D(lambda') dlambda'

and RES approximates the denoised estimate ``D`` linearly in lambda through the current and the
previous step's estimate (slope ``(D_i - D_i-1) / (c * h)``, ``c = (lambda_i - lambda_i-1) / h``):

    x_next = e^-h x + h * ((phi1(-h) + phi2(-h) / c) * D_i - (phi2(-h) / c) * D_i-1)

with ``phi1(z) = (e^z - 1) / z`` and ``phi2(z) = (phi1(z) - 1) / z`` — second order, one model
evaluation per step. The first step (no history) and the last (to sigma 0) are Euler steps.
Deterministic (no ancestral noise); it runs on every family through the model-sampling seam.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from app.engine.sampling.kdiffusion.samplers import EtaAncestralScheduler, denoised_from
from app.engine.sampling.schedules import model_sigmas_from_alphas, sigma_to_t

__all__ = ["ResMultistepScheduler", "res_coefficients"]


def _phi1(z: float) -> float:
    return math.expm1(z) / z


def _phi2(z: float) -> float:
    return (_phi1(z) - 1.0) / z


def res_coefficients(sigma_prev: float, sigma: float, sigma_next: float) -> tuple[float, float, float]:
    """(decay e^-h, weight of D_i, weight of D_i-1) of a RES step from ``sigma`` to ``sigma_next``
    whose previous step started at ``sigma_prev`` (all positive)."""
    h = math.log(sigma) - math.log(sigma_next)
    c = (math.log(sigma_prev) - math.log(sigma)) / h
    p1, p2 = _phi1(-h), _phi2(-h)
    return math.exp(-h), h * (p1 + p2 / c), -h * p2 / c


class ResMultistepScheduler(EtaAncestralScheduler):
    """ComfyUI's "res_multistep": the RES 2nd-order multistep solver (module docstring).

    ``set_timesteps(sigmas=...)`` takes the sigma vector with its trailing 0; ``step`` keeps the
    previous denoised estimate (reset when a run starts, also at an img2img begin index)."""

    order = 1

    def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None):  # type: ignore[override]
        if sigmas is None:
            super().set_timesteps(num_inference_steps, device=device)
            sigmas = self.sigmas.numpy()
        base = np.asarray(sigmas, dtype=np.float64)
        self._base = base
        self.num_inference_steps = len(base) - 1
        self.sigmas = torch.from_numpy(base.astype(np.float32))
        ts = sigma_to_t(base[:-1], model_sigmas_from_alphas(self.alphas_cumprod))
        self.timesteps = torch.from_numpy(ts.astype(np.float32)).to(device=device)
        self._previous: tuple[torch.Tensor, float] | None = None  # (denoised, sigma) of the last step
        self._step_index = None
        self._begin_index = None

    def step(  # type: ignore[override]
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        return_dict: bool = True,
    ):
        if self.step_index is None:
            self._init_step_index(timestep)
            self._previous = None
        i = self.step_index
        s, s_next = float(self._base[i]), float(self._base[i + 1])
        x = sample.to(torch.float32)
        den = denoised_from(self.config.prediction_type, model_output.to(torch.float32), x, s)
        if s_next == 0 or self._previous is None:  # Euler
            prev = x + (x - den) / s * (s_next - s)
        else:
            den_1, s_prev = self._previous
            decay, w_now, w_prev = res_coefficients(s_prev, s, s_next)
            prev = decay * x + w_now * den + w_prev * den_1
        self._previous = (den, s)
        return self._finish_step(prev, den, model_output.dtype, return_dict)
