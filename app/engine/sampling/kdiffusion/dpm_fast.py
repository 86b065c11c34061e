"""A1111's "DPM fast" (k-diffusion ``sample_dpm_fast``: DPM-Solver with fixed step size) as a
diffusers-style scheduler.

``n`` model evaluations cover log-sigma uniformly from sigma_max down to sigma_min (not to 0) in
``floor(n/3) + 1`` steps of order 3 (three evaluations each), ending with order 2 and 1 (or a
single step of order ``n % 3``). With ancestral ``eta`` each step targets ``sigma_down`` and adds
``sigma_up`` noise. Only the smallest positive and the largest sigma of the vector given to
``set_timesteps`` are used (A1111 uses the model's range; for img2img the truncated schedule's).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from app.engine.sampling.kdiffusion.samplers import EtaAncestralScheduler, ancestral_step, denoised_from
from app.engine.sampling.schedules import model_sigmas_from_alphas, sigma_to_t

__all__ = ["DPMFastKScheduler", "dpm_fast_plan"]

_R = {2: (0.5,), 3: (1 / 3, 2 / 3)}


def dpm_fast_plan(n: int, sigma_min: float, sigma_max: float, eta: float) -> list[tuple[float, float, float, int]]:
    """Steps ``(t, t_next, t_target, order)`` in t = -log(sigma); ``t_target`` is where the
    deterministic update goes (``t_next``, or the ancestral sigma_down's t)."""
    if n < 1:
        raise ValueError(f"DPM fast needs at least one step, got {n}")
    t_start, t_end = -math.log(sigma_max), -math.log(sigma_min)
    m = n // 3 + 1
    ts = np.linspace(t_start, t_end, m + 1)
    orders = [3] * (m - 2) + [2, 1] if n % 3 == 0 else [3] * (m - 1) + [n % 3]
    plan = []
    for i, order in enumerate(orders):
        t, t_next = float(ts[i]), float(ts[i + 1])
        target = t_next
        if eta:
            down, _ = ancestral_step(math.exp(-t), math.exp(-t_next), eta)
            target = min(t_end, -math.log(down)) if down > 0 else t_end
        plan.append((t, t_next, target, order))
    return plan


class DPMFastKScheduler(EtaAncestralScheduler):
    """A1111's "DPM fast"; ``eta`` (config, A1111 eta_ancestral) and ``step(..., generator=, s_noise=)``."""

    order = 1
    truncate_for_img2img = True

    def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None):  # type: ignore[override]
        model_sigmas = model_sigmas_from_alphas(self.alphas_cumprod)
        if sigmas is None:
            n, lo, hi = int(num_inference_steps), float(model_sigmas[0]), float(model_sigmas[-1])
        else:
            sig = np.asarray(sigmas, dtype=np.float64)
            n, lo, hi = len(sig) - 1, float(sig[sig > 0].min()), float(sig.max())
        plan = dpm_fast_plan(n, lo, hi, float(self.config.eta))
        evals: list[float] = []
        stages: list[tuple[int, int]] = []  # (step, stage)
        for k, (t, _, target, order) in enumerate(plan):
            h = target - t
            points = [t] + [t + r * h for r in _R.get(order, ())]
            evals.extend(math.exp(-p) for p in points)
            stages.extend((k, j) for j in range(len(points)))
        self._plan, self._stages = plan, stages
        self._x: torch.Tensor | None = None
        self._eps: list[torch.Tensor] = []
        self.num_inference_steps = n
        self.sigmas = torch.from_numpy(np.asarray([*evals, math.exp(-plan[-1][2])], dtype=np.float32))
        self.timesteps = torch.from_numpy(sigma_to_t(evals, model_sigmas).astype(np.float32)).to(device=device)
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
        k, stage = self._stages[self.step_index]
        t, t_next, target, order = self._plan[k]
        sigma = float(self.sigmas[self.step_index])
        x_eval = sample.to(torch.float32)
        x0 = denoised_from(self.config.prediction_type, model_output.to(torch.float32), x_eval, sigma)
        if stage == 0:
            self._x, self._eps = x_eval, []
        self._eps.append((x_eval - x0) / sigma)
        x, eps, h = self._x, self._eps, target - t
        sig = math.exp
        if stage + 1 < order:  # move to the next evaluation point of this step
            r = _R[order][stage]
            if stage == 0:
                prev = x - sig(-(t + r * h)) * math.expm1(r * h) * eps[0]
            else:  # order 3, second point
                r1, r2 = _R[3]
                prev = (
                    x
                    - sig(-(t + r2 * h)) * math.expm1(r2 * h) * eps[0]
                    - sig(-(t + r2 * h)) * (r2 / r1) * (math.expm1(r2 * h) / (r2 * h) - 1) * (eps[1] - eps[0])
                )
        else:  # the step's update to t_target, then the ancestral noise
            s_t = sig(-target)
            prev = x - s_t * math.expm1(h) * eps[0]
            if order == 2:
                prev = prev - s_t / (2 * _R[2][0]) * math.expm1(h) * (eps[1] - eps[0])
            elif order == 3:
                prev = prev - s_t / _R[3][1] * (math.expm1(h) / h - 1) * (eps[2] - eps[0])
            up = (sig(-t_next) ** 2 - s_t**2) ** 0.5 if target != t_next else 0.0
            if up > 0:
                noise = randn_tensor(x.shape, generator=generator, device=x.device, dtype=torch.float32)
                prev = prev + noise * s_noise * up
            self._x, self._eps = None, []
        return self._finish_step(prev, x0, model_output.dtype, return_dict)
