"""k-diffusion's single-evaluation samplers as diffusers-style schedulers.

- **DPM++ 2M SDE** (midpoint / heun) and **DPM++ 3M SDE** (k-diffusion ``sample_dpmpp_2m_sde`` /
  ``sample_dpmpp_3m_sde``): multistep DPM-Solver++ SDE steps in sigma space with A1111's eta and
  s_noise, and per-image Brownian-tree noise.
- **LCM** (A1111's ``sd_samplers_lcm``): the LCM boundary-condition denoiser on the 50-step origin
  grid, then ``x = denoised + sigma_next * noise``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from app.engine.sampling.kdiffusion.samplers import BrownianNoiseMixin, EtaAncestralScheduler, denoised_from
from app.engine.sampling.schedules import model_sigmas_from_alphas, sigma_to_t

__all__ = [
    "DPMPP2MSDEHeunScheduler",
    "DPMPP2MSDEScheduler",
    "DPMPP3MSDEScheduler",
    "LCMKScheduler",
    "MultistepSDEKScheduler",
]


class MultistepSDEKScheduler(BrownianNoiseMixin, EtaAncestralScheduler):
    """k-diffusion's multistep DPM-Solver++ SDE samplers in sigma space: ``solver`` "2m_midpoint" /
    "2m_heun" (``sample_dpmpp_2m_sde``) or "3m" (``sample_dpmpp_3m_sde``, phi-function
    corrections). ``eta`` (config, A1111 eta_ancestral) scales the noise (0 = the ODE solver);
    noise comes from Brownian trees after ``set_noise_seeds``, else from ``generator``."""

    order = 1
    solver = "3m"

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
        self._history: list[tuple[torch.Tensor, float]] = []  # (denoised, h) of the previous steps
        self._tree = None
        self._step_index = None
        self._begin_index = None

    def step(  # type: ignore[override]
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        return_dict: bool = True,
        s_noise: float = 1.0,
    ):
        if self.step_index is None:
            self._init_step_index(timestep)
            self._history = []
        i = self.step_index
        s, s_next = float(self._base[i]), float(self._base[i + 1])
        x = sample.to(torch.float32)
        den = denoised_from(self.config.prediction_type, model_output.to(torch.float32), x, s)
        if s_next == 0:
            prev, h = den, None
        else:
            eta = float(self.config.eta)
            h = math.log(s) - math.log(s_next)
            h_eta = h * (eta + 1)
            prev = math.exp(-h_eta) * x - math.expm1(-h_eta) * den
            phi_2 = math.expm1(-h_eta) / h_eta + 1
            if self.solver != "3m" and self._history:
                den_1, h_1 = self._history[-1]
                coef = phi_2 if self.solver == "2m_heun" else -0.5 * math.expm1(-h_eta)
                prev = prev + coef * (h / h_1) * (den - den_1)
            elif len(self._history) >= 2:
                (den_1, h_1), (den_2, h_2) = self._history[-1], self._history[-2]
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (den - den_1) / r0
                d1_1 = (den_1 - den_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                prev = prev + phi_2 * d1 - (phi_2 / h_eta - 0.5) * d2
            elif self._history:
                den_1, h_1 = self._history[-1]
                prev = prev + phi_2 * (den - den_1) / (h_1 / h)
            if eta:
                if self.uses_brownian_noise:
                    noise = self.brownian_noise(x, s, s_next)
                else:
                    noise = randn_tensor(x.shape, generator=generator, device=x.device, dtype=torch.float32)
                prev = prev + noise * s_noise * s_next * math.sqrt(-math.expm1(-2 * h * eta))
        self._history = [*self._history[-1:], (den, h)] if h is not None else self._history
        return self._finish_step(prev, den, model_output.dtype, return_dict)


class DPMPP2MSDEScheduler(MultistepSDEKScheduler):
    """A1111's "DPM++ 2M SDE" (midpoint solver)."""

    solver = "2m_midpoint"


class DPMPP2MSDEHeunScheduler(MultistepSDEKScheduler):
    """A1111's "DPM++ 2M SDE Heun"."""

    solver = "2m_heun"


class DPMPP3MSDEScheduler(MultistepSDEKScheduler):
    """A1111's "DPM++ 3M SDE"."""

    solver = "3m"


class LCMKScheduler(EtaAncestralScheduler):
    """A1111's "LCM" sampler: the LCM boundary-condition denoiser on the 50-step origin grid
    (training steps 19, 39, …, 999), then ``x = denoised + sigma_next * noise``.

    The model runs at the grid timestep nearest to each sigma; ``model_sigma_table()`` is the
    50-entry sigma table that A1111's schedules (Automatic = uniform over the grid) are built on.
    """

    order = 1
    origin_steps = 50

    def model_sigma_table(self) -> np.ndarray:
        full = model_sigmas_from_alphas(self.alphas_cumprod)
        skip = len(full) // self.origin_steps
        return full[skip - 1 :: skip][: self.origin_steps]

    def _grid_t(self, sigmas: np.ndarray) -> np.ndarray:
        table = self.model_sigma_table()
        skip = len(self.alphas_cumprod) // self.origin_steps
        idx = np.abs(np.log(np.maximum(sigmas, 1e-10))[:, None] - np.log(table)[None, :]).argmin(axis=1)
        return idx * skip + (skip - 1)

    def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None):  # type: ignore[override]
        if sigmas is None:
            n = int(num_inference_steps)
            k = np.linspace(self.origin_steps - 1, 0, n)
            sigmas = np.concatenate(
                [np.exp(np.interp(k, np.arange(self.origin_steps), np.log(self.model_sigma_table()))), [0.0]]
            )
        base = np.asarray(sigmas, dtype=np.float64)
        self._base = base
        self._grid = self._grid_t(base[:-1])
        self.num_inference_steps = len(base) - 1
        self.sigmas = torch.from_numpy(base.astype(np.float32))
        self.timesteps = torch.from_numpy(self._grid.astype(np.int64)).to(device=device)
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
        i = self.step_index
        s, s_next = float(self._base[i]), float(self._base[i + 1])
        x = sample.to(torch.float32)
        den = denoised_from(self.config.prediction_type, model_output.to(torch.float32), x, s)
        scaled_t = float(self._grid[i]) * 10.0
        c_skip = 0.25 / (scaled_t**2 + 0.25)
        c_out = scaled_t / (scaled_t**2 + 0.25) ** 0.5
        x0 = c_out * den + c_skip * x
        prev = x0
        if s_next > 0:
            prev = prev + randn_tensor(x.shape, generator=generator, device=x.device, dtype=torch.float32) * s_next
        return self._finish_step(prev, x0, model_output.dtype, return_dict)
