"""A1111's "Restart" sampler (Restart Sampling for Improving Generative Processes, 2023) as a
diffusers-style scheduler.

The run is a list of Heun steps ``(sigma_from, sigma_to)``. With 20 or more steps A1111 replaces
the schedule by Karras sigmas over ``steps - restart_steps * restart_times`` steps (same min/max)
and, at the sigma nearest 0.1, inserts ``restart_times`` segments that jump back up to the sigma
nearest 2 (fresh noise ``s_noise * sqrt(high² - low²)``) and walk down again on
``restart_steps + 1`` Karras sigmas. Each Heun step evaluates the model twice (once for the last
step to sigma 0), so the timesteps list interleaves both evaluations.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from app.engine.sampling.kdiffusion.samplers import EtaAncestralScheduler, denoised_from
from app.engine.sampling.schedules import karras, model_sigmas_from_alphas, sigma_to_t

__all__ = ["RestartKScheduler", "restart_step_list"]


def _nearest(values: np.ndarray, target: float) -> int:
    return int(np.argmin(np.abs(values - target)))


def restart_step_list(sigmas: np.ndarray) -> list[tuple[float, float]]:
    """A1111's list of Heun steps for a sigma vector (with its trailing 0)."""
    sigmas = np.asarray(sigmas, dtype=np.float64)
    steps = len(sigmas) - 1
    restarts: dict[int, tuple[int, int, float]] = {}
    if steps >= 20:
        restart_steps, restart_times = (steps // 4, 2) if steps >= 36 else (9, 1)
        sigmas = karras(steps - restart_steps * restart_times, float(sigmas[-2]), float(sigmas[0]))
        restarts = {_nearest(sigmas, 0.1): (restart_steps + 1, restart_times, 2.0)}
    pairs: list[tuple[float, float]] = []
    for i in range(len(sigmas) - 1):
        pairs.append((float(sigmas[i]), float(sigmas[i + 1])))
        if i + 1 in restarts:
            n, times, high = restarts[i + 1]
            low_idx, high_idx = i + 1, _nearest(sigmas, high)
            if high_idx < low_idx:
                segment = karras(n, float(sigmas[low_idx]), float(sigmas[high_idx]))[:-1]
                for _ in range(times):
                    pairs.extend(zip(segment[:-1].tolist(), segment[1:].tolist(), strict=True))
    return pairs


class RestartKScheduler(EtaAncestralScheduler):
    """A1111's "Restart". ``set_timesteps(sigmas=...)`` takes the A1111 sigma vector; the restart
    noise comes from ``step(..., generator=)`` scaled by ``s_noise``. For img2img pass the
    truncated sigma vector (``truncate_for_img2img``): the restart plan is built from it, as A1111
    does."""

    order = 2
    truncate_for_img2img = True

    def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None):  # type: ignore[override]
        if sigmas is None:
            super().set_timesteps(num_inference_steps, device=device)
            sigmas = self.sigmas.numpy()
        pairs = restart_step_list(np.asarray(sigmas, dtype=np.float64))
        evals: list[float] = []
        plan: list[tuple[int, bool]] = []
        for k, (old, new) in enumerate(pairs):
            evals.append(old)
            plan.append((k, False))
            if new > 0:
                evals.append(new)
                plan.append((k, True))
        self._pairs, self._plan = pairs, plan
        self._x: torch.Tensor | None = None
        self._d: torch.Tensor | None = None
        self.num_inference_steps = len(pairs)
        self.sigmas = torch.from_numpy(np.asarray([*evals, 0.0], dtype=np.float32))
        ts = sigma_to_t(evals, model_sigmas_from_alphas(self.alphas_cumprod))
        self.timesteps = torch.from_numpy(ts.astype(np.float32)).to(device=device)
        self._step_index = None
        self._begin_index = None

    @property
    def state_in_first_order(self) -> bool:
        return self._x is None

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
        k, second = self._plan[self.step_index]
        old, new = self._pairs[k]
        x = sample.to(torch.float32)
        sigma = new if second else old
        x0 = denoised_from(self.config.prediction_type, model_output.to(torch.float32), x, sigma)
        d = (x - x0) / sigma
        if not second and new > 0:  # Heun predictor; the corrector comes with the next evaluation
            self._x, self._d = x, d
            prev = x + d * (new - old)
            done = False
        elif not second:  # Euler step to sigma 0
            prev, done = x + d * (new - old), True
        else:
            prev = self._x + (self._d + d) / 2 * (new - old)  # type: ignore[operator]
            self._x = self._d = None
            done = True
        if done and k + 1 < len(self._pairs) and self._pairs[k + 1][0] > new:
            up = self._pairs[k + 1][0]
            noise = randn_tensor(x.shape, generator=generator, device=x.device, dtype=torch.float32)
            prev = prev + noise * s_noise * (up**2 - new**2) ** 0.5
        return self._finish_step(prev, x0, model_output.dtype, return_dict)
