"""k-diffusion samplers that no diffusers scheduler provides, written as diffusers schedulers.

**DPM++ 2S a** (k-diffusion ``sample_dpmpp_2s_ancestral``) has no diffusers scheduler; **DPM2** and
**DPM2 a** have (KDPM2*), but those cannot take A1111's sigma vectors (penultimate-sigma discard,
explicit schedules) and evaluate the model at sigma 0 on the last step where k-diffusion takes an
Euler step. All three are a second-order step to ``sigma_down`` followed by ancestral noise
``sigma_up``. They plug into the same loop as every other scheduler (``set_timesteps`` /
``scale_model_input`` / ``step``, ``order = 2``): each step but the last evaluates the model twice,
at ``sigma_i`` and at the midpoint ``sqrt(sigma_i * sigma_down)``, so the timesteps list
interleaves both, like Heun's. Euler a's ancestral eta is here too (``euler_ancestral_step``).
The multistep SDE samplers and LCM live in :mod:`app.engine.sampling.kdiffusion.multistep`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from diffusers import EulerAncestralDiscreteScheduler
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_euler_ancestral_discrete import EulerAncestralDiscreteSchedulerOutput
from diffusers.utils.torch_utils import randn_tensor

from app.engine.sampling.schedules import model_sigmas_from_alphas, sigma_to_t

__all__ = [
    "BrownianNoiseMixin",
    "DPM2KScheduler",
    "DPMPPSDEScheduler",
    "DPMPP2SAncestralScheduler",
    "TwoStageKScheduler",
    "EtaAncestralScheduler",
    "HeunKScheduler",
    "ancestral_step",
    "denoised_from",
    "euler_ancestral_step",
]


def ancestral_step(sigma_from: float, sigma_to: float, eta: float = 1.0) -> tuple[float, float]:
    """k-diffusion's split of a step into (sigma_down, sigma_up)."""
    if not eta or sigma_to == 0:
        return sigma_to, 0.0
    up = min(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    return (sigma_to**2 - up**2) ** 0.5, up


def denoised_from(prediction_type: str, model_output: torch.Tensor, sample: torch.Tensor, sigma: float) -> torch.Tensor:
    """The model's clean-sample estimate at ``sigma`` (``sample`` in sigma space, k-diffusion style)."""
    if prediction_type == "epsilon":
        return sample - sigma * model_output
    if prediction_type == "v_prediction":
        return model_output * (-sigma / (sigma**2 + 1) ** 0.5) + sample / (sigma**2 + 1)
    if prediction_type == "sample":
        return model_output
    raise ValueError(f"unsupported prediction_type {prediction_type!r}")


def euler_ancestral_step(
    sample: torch.Tensor,
    x0: torch.Tensor,
    sigma: float,
    sigma_next: float,
    eta: float,
    generator: torch.Generator | list[torch.Generator] | None,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """k-diffusion's Euler ancestral step with ancestral ``eta`` (A1111 setting eta_ancestral) and
    noise scale ``s_noise``."""
    down, up = ancestral_step(sigma, sigma_next, eta)
    prev = sample + (sample - x0) / sigma * (down - sigma)
    if sigma_next > 0 and up > 0:
        noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
        prev = prev + noise * s_noise * up
    return prev


class BrownianNoiseMixin:
    """A1111's SDE noise: after ``set_noise_seeds(seeds)``, one Brownian tree per image seeded with
    that image's seed, over the positive sigmas of the run (``self.sigmas`` from the begin index)."""

    _noise_seeds: list[int] | None = None
    _tree: Any = None

    def set_noise_seeds(self, seeds: list[int] | None) -> None:
        self._noise_seeds = [int(s) for s in seeds] if seeds else None
        self._tree = None

    @property
    def uses_brownian_noise(self) -> bool:
        return self._noise_seeds is not None

    def brownian_noise(self, sample: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
        # deferred: diffusers' SDE module loads torchsde, which only the Brownian-noise samplers need
        from diffusers.schedulers.scheduling_dpmsolver_sde import BrownianTreeNoiseSampler

        if self._tree is None:
            run = self.sigmas[getattr(self, "begin_index", None) or 0 :]  # type: ignore[attr-defined]
            positive = run[run > 0]
            if len(self._noise_seeds or []) != sample.shape[0]:
                raise ValueError(
                    f"Brownian noise: {len(self._noise_seeds or [])} seeds for a batch of {sample.shape[0]}"
                )
            self._tree = BrownianTreeNoiseSampler(
                sample.to(torch.float32),
                float(positive.min()),
                float(positive.max()),
                seed=list(self._noise_seeds or []),
            )
        return self._tree(float(sigma), float(sigma_next)).to(sample.device)


class EtaAncestralScheduler(EulerAncestralDiscreteScheduler):
    """Euler-ancestral scheduler config plus A1111's ancestral ``eta`` (setting eta_ancestral)."""

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: np.ndarray | list[float] | None = None,
        prediction_type: str = "epsilon",
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
        eta: float = 1.0,
    ) -> None:
        if eta < 0:
            raise ValueError(f"ancestral eta must be >= 0, got {eta}")
        super().__init__(
            num_train_timesteps=num_train_timesteps,
            beta_start=beta_start,
            beta_end=beta_end,
            beta_schedule=beta_schedule,
            trained_betas=trained_betas,
            prediction_type=prediction_type,
            timestep_spacing=timestep_spacing,
            steps_offset=steps_offset,
            rescale_betas_zero_snr=rescale_betas_zero_snr,
        )

    def _finish_step(self, prev: torch.Tensor, denoised: torch.Tensor, dtype: torch.dtype, return_dict: bool):
        """End of every k-style ``step``: advance the index, cast back, return in diffusers' shape."""
        self._step_index += 1
        prev = prev.to(dtype)
        if not return_dict:
            return (prev, denoised)
        return EulerAncestralDiscreteSchedulerOutput(prev_sample=prev, pred_original_sample=denoised)


class TwoStageKScheduler(BrownianNoiseMixin, EtaAncestralScheduler):
    """k-diffusion's two-evaluation steps: a first evaluation at ``sigma_i``, a second at a midpoint,
    then ancestral noise ``sigma_up`` (none when eta = 0). A step without a midpoint (the last one,
    to sigma 0) is a plain Euler step. ``set_timesteps(sigmas=...)`` takes the A1111 sigma vector
    (with the trailing 0); ``step(..., generator=)`` draws the ancestral noise from the generator(s)
    (DPM++ SDE: from Brownian trees after ``set_noise_seeds``). ``eta`` is a config value because
    the midpoints depend on it."""

    order = 2
    solver = "dpmpp_2s"  # "dpmpp_2s" (DPM-Solver++ 2S), "dpm2" (DPM-Solver-2), "dpmpp_sde" or "heun"

    def _midpoint(self, s: float, s_next: float, eta: float) -> float | None:
        if self.solver == "heun":  # the corrector evaluates at sigma_i+1
            return s_next if s_next > 0 else None
        if self.solver == "dpmpp_sde":  # r = 1/2 in log-sigma between sigma_i and sigma_i+1
            return math.sqrt(s * s_next) if s_next > 0 else None
        down, _ = ancestral_step(s, s_next, eta)
        return math.sqrt(s * down) if down > 0 else None

    def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None):  # type: ignore[override]
        """Set up the evaluation points for the base ``sigmas`` (or ``num_inference_steps`` of the
        scheduler's own spacing); the midpoints depend on the config's ``eta``."""
        eta = float(self.config.eta)
        if sigmas is None:
            super().set_timesteps(num_inference_steps, device=device)
            sigmas = self.sigmas.numpy()
        base = np.asarray(sigmas, dtype=np.float64)
        evals: list[float] = []
        plan: list[tuple[int, bool]] = []
        mids: list[float | None] = []
        for i in range(len(base) - 1):
            evals.append(base[i])
            plan.append((i, False))
            mids.append(self._midpoint(base[i], base[i + 1], eta))
            if mids[-1] is not None:
                evals.append(mids[-1])
                plan.append((i, True))
        model_sigmas = model_sigmas_from_alphas(self.alphas_cumprod)
        self._base, self._plan, self._mids, self._eta = base, plan, mids, eta
        self._x: torch.Tensor | None = None
        self._tree = None
        self.num_inference_steps = len(base) - 1
        self.sigmas = torch.from_numpy(np.asarray([*evals, 0.0], dtype=np.float32))
        self.timesteps = torch.from_numpy(sigma_to_t(evals, model_sigmas).astype(np.float32)).to(device=device)
        self._step_index = None
        self._begin_index = None

    @property
    def state_in_first_order(self) -> bool:
        return self._x is None

    def _noise(self, x: torch.Tensor, s: float, s_to: float, generator) -> torch.Tensor:  # type: ignore[no-untyped-def]
        if self.solver == "dpmpp_sde" and self.uses_brownian_noise:
            return self.brownian_noise(x, s, s_to).to(torch.float32)
        return randn_tensor(x.shape, generator=generator, device=x.device, dtype=torch.float32)

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
        i, second = self._plan[self.step_index]
        s, s_next, mid = float(self._base[i]), float(self._base[i + 1]), self._mids[i]
        x = sample.to(torch.float32)
        x0 = denoised_from(
            self.config.prediction_type, model_output.to(torch.float32), x, float(self.sigmas[self.step_index])
        )
        down, up = ancestral_step(s, s_next, self._eta)
        if mid is None:  # 1. Euler step to sigma_down (= x0 when it is 0)
            prev = x + (x - x0) / s * (down - s)
        elif not second:  # 2. first evaluation: move to the midpoint
            self._x = x
            if self.solver == "heun":
                self._d = (x - x0) / s
                prev = x + self._d * (s_next - s)
            elif self.solver == "dpm2":
                prev = x + (x - x0) / s * (mid - s)
            elif self.solver == "dpmpp_2s":
                prev = (mid / s) * x + (1 - mid / s) * x0
            else:
                mid_down, mid_up = ancestral_step(s, mid, self._eta)
                prev = (mid_down / s) * x + (1 - mid_down / s) * x0
                if mid_up > 0:
                    prev = prev + self._noise(x, s, mid, generator) * s_noise * mid_up
        else:  # 3. second evaluation (at the midpoint): the full step from the stored x
            first = self._x
            if self.solver == "heun":
                prev = first + (self._d + (x - x0) / s_next) / 2 * (s_next - s)  # type: ignore[operator]
            elif self.solver == "dpm2":
                prev = first + (x - x0) / mid * (down - s)  # type: ignore[operator]
            else:
                prev = (down / s) * first + (1 - down / s) * x0  # type: ignore[operator]
            self._x = None
        if (mid is None or second) and s_next > 0 and up > 0:
            prev = prev + self._noise(x, s, s_next, generator) * s_noise * up
        return self._finish_step(prev, x0, model_output.dtype, return_dict)


class DPMPP2SAncestralScheduler(TwoStageKScheduler):
    """A1111's "DPM++ 2S a" (k-diffusion ``sample_dpmpp_2s_ancestral``)."""

    solver = "dpmpp_2s"


class DPMPPSDEScheduler(TwoStageKScheduler):
    """A1111's "DPM++ SDE" (k-diffusion ``sample_dpmpp_sde``, r = 1/2): noise at both stages,
    from Brownian trees seeded with the batch's seeds (``set_noise_seeds``)."""

    solver = "dpmpp_sde"


class HeunKScheduler(TwoStageKScheduler):
    """A1111's "Heun" (k-diffusion ``sample_heun`` without churn; config eta must stay 0)."""

    solver = "heun"


class DPM2KScheduler(TwoStageKScheduler):
    """A1111's "DPM2" (config eta 0) and "DPM2 a" (eta > 0): k-diffusion ``sample_dpm_2`` /
    ``sample_dpm_2_ancestral``."""

    solver = "dpm2"
