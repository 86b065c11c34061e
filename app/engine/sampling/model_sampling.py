"""How a family's network output and timestep relate to the samplers' sigma space (pure torch/numpy).

Every sampler of :mod:`app.engine.sampling.table` works in k-diffusion (VE) sigma space:
``x = x0 + sigma * noise`` and the scheduler wants a noise (epsilon) prediction, or it handles SD's
noise / v prediction itself from ``prediction_type``. A :class:`ModelSampling` says how one
parameterisation of the network maps onto that space:

- ``epsilon`` and ``v_prediction`` (SD 1.x / 2.x / SDXL): the schedulers know them already, so the
  wrapper is the identity (``identity`` is True and the loop keeps today's path bit for bit).
- ``flow`` (rectified flow: ``x_s = (1 - s) * x0 + s * noise``, the network predicts the velocity
  ``v = noise - x0`` or its negative): the same diffusion in another parameterisation, with
  ``sigma_ve = s / (1 - s)``. The scaled input the loop already computes
  (``scheduler.scale_model_input``: ``x_ve / sqrt(sigma_ve² + 1)`` for VE schedulers, the VP sample
  itself for DPM-Solver / DDIM, which is the same tensor) becomes the flow input
  ``x_s = x_in * sqrt(sigma_ve² + 1) / (1 + sigma_ve)``, and the scheduler gets
  ``eps = x_s + (1 - s) * v``, which equals ``(x_ve - x0) / sigma_ve`` with ``x0 = x_s - s * v``
  but needs no division by a large sigma. Every sampler and schedule then runs unchanged and
  correctly on flow models (Euler in VE space *is* flow Euler; DPM++ sees the right log-SNR).

``s = 1`` (pure noise, ``sigma_ve = inf``) is handled as diffusers handles zero-terminal-SNR SD
models: the last training step gets ``alphas_cumprod = 2**-24``, i.e. ``sigma_ve ≈ 4096`` and
``s = 4096/4097``. A run that starts at ``s = 1`` therefore starts ``1/4097 ≈ 2.4e-4`` below it
(the network sees ``s ≈ 0.99976``); the difference to a flow pipeline that starts at exactly 1 is
of that order (a few 1e-4 of the data scale), far below what bf16 weights resolve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "FLOW_TIMESTEP_KEY",
    "FLOW_TIMESTEP_MODES",
    "TERMINAL_ALPHA_CUMPROD",
    "DiscreteModelSampling",
    "FlowModelSampling",
    "ModelSampling",
    "model_sampling_for",
]

#: Our key in a flow model's scheduler config: how s maps to the network's timestep.
FLOW_TIMESTEP_KEY = "atelier_flow_timestep"
#: ``"1-sigma"``: t = 1 - s and the network predicts -v (Z-Image); ``"sigma*1000"``: t = 1000 * s,
#: the network predicts v (FLUX, SD3: diffusers' FlowMatchEulerDiscreteScheduler convention).
FLOW_TIMESTEP_MODES: dict[str, bool] = {"1-sigma": True, "sigma*1000": False}  # mode -> output negated
#: ``alphas_cumprod`` of the pure-noise step (diffusers' zero-terminal-SNR value): sigma_ve ≈ 4096.
TERMINAL_ALPHA_CUMPROD = 2.0**-24


class ModelSampling:
    """The parameterisation of one model's network (see the module docstring)."""

    prediction_type: str = "epsilon"
    #: True: the schedulers handle the network output themselves; the loop passes it through.
    identity: bool = True

    def scheduler_model_keys(self, base_config: Mapping[str, Any]) -> dict[str, Any]:
        """The noise-schedule keys a diffusers scheduler is built from (betas, steps, prediction type)."""
        raise NotImplementedError

    def native_sigmas(self) -> np.ndarray | None:
        """The model's own sigma table (t = 1..N, ascending) when schedules are computed in it; None = VE."""
        return None

    def to_ve(self, sigmas: np.ndarray) -> np.ndarray:
        """Native sigmas to VE sigmas (identity for SD)."""
        return np.asarray(sigmas, dtype=np.float64)

    def from_ve(self, sigmas: np.ndarray) -> np.ndarray:
        """VE sigmas to native sigmas (identity for SD)."""
        return np.asarray(sigmas, dtype=np.float64)

    def network_call_args(self, x_in: torch.Tensor, sigma_ve: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(network input, network timestep) for the scaled scheduler input ``x_in`` at ``sigma_ve``."""
        raise NotImplementedError

    def to_scheduler_output(self, net_out: torch.Tensor, x_in: torch.Tensor, sigma_ve: float) -> torch.Tensor:
        """The network output as the prediction the scheduler was configured for."""
        raise NotImplementedError


@dataclass(frozen=True)
class DiscreteModelSampling(ModelSampling):
    """SD's noise or v prediction on the discrete DDPM schedule: the schedulers do everything."""

    prediction_type: str = "epsilon"
    identity: bool = True

    def scheduler_model_keys(self, base_config: Mapping[str, Any]) -> dict[str, Any]:
        return {**dict(base_config), "prediction_type": self.prediction_type}

    def network_call_args(self, x_in: torch.Tensor, sigma_ve: float) -> tuple[torch.Tensor, torch.Tensor]:
        raise TypeError("epsilon / v-prediction models are called with the scheduler's own timestep")

    def to_scheduler_output(self, net_out: torch.Tensor, x_in: torch.Tensor, sigma_ve: float) -> torch.Tensor:
        return net_out


def _shifted(u: np.ndarray, shift: float) -> np.ndarray:
    """The flow time shift (SD3 / ComfyUI ``ModelSamplingDiscreteFlow``): s = shift·u / (1 + (shift-1)·u)."""
    return shift * u / (1.0 + (shift - 1.0) * u)


@dataclass(frozen=True)
class FlowModelSampling(ModelSampling):
    """Rectified-flow (velocity) models with a constant ``shift``.

    ``timestep_mode`` says what the network is given: ``"1-sigma"`` → ``1 - s`` (Z-Image, which also
    predicts ``-v``: ``negate_output``), ``"sigma*1000"`` → ``1000 · s`` (FLUX, SD3).
    """

    shift: float = 3.0
    timestep_mode: str = "sigma*1000"
    negate_output: bool = False
    num_train_timesteps: int = 1000
    prediction_type: str = "flow"
    identity: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.shift) and self.shift > 0):
            raise ValueError(f"flow shift must be a positive number, got {self.shift!r}")
        if self.timestep_mode not in FLOW_TIMESTEP_MODES:
            raise ValueError(f"flow timestep mode {self.timestep_mode!r}; valid: {', '.join(FLOW_TIMESTEP_MODES)}")
        if self.num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps must be >= 2, got {self.num_train_timesteps}")

    # ---------------------------------------------------------------- tables
    def native_sigmas(self) -> np.ndarray:
        """s(t) for t = 1..N (float64, ascending, ending at exactly 1)."""
        n = self.num_train_timesteps
        return _shifted(np.arange(1, n + 1, dtype=np.float64) / n, float(self.shift))

    def simple_sigmas(self, steps: int) -> np.ndarray:
        """The Simple schedule on the continuous time axis: u = 1, 1 - 1/steps, ..., 1/steps shifted, then 0
        (diffusers' ``ZImagePipeline`` / ``FlowMatchEulerDiscreteScheduler`` sigmas)."""
        u = np.linspace(1.0, 1.0 / steps, steps, dtype=np.float64)
        return np.append(_shifted(u, self.shift), 0.0)

    @property
    def sigma_ve_max(self) -> float:
        """The VE sigma that stands for s = 1: ≈ 4096 (diffusers' zero-terminal-SNR value), or just above the
        table's last finite entry when a large shift puts that entry higher (shift > ~4): the table must stay
        strictly increasing, else timestep lookups interpolate between equal sigmas."""
        n = self.num_train_timesteps
        s = float(_shifted(np.array([(n - 1) / n]), float(self.shift))[0])
        return max(math.sqrt((1.0 - TERMINAL_ALPHA_CUMPROD) / TERMINAL_ALPHA_CUMPROD), 1.01 * s / (1.0 - s))

    def to_ve(self, sigmas: np.ndarray) -> np.ndarray:
        """s / (1 - s), clamped to ``sigma_ve_max`` (s = 1 and anything noisier than the table)."""
        s = np.asarray(sigmas, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ve = np.where(s < 1.0, s / np.maximum(1.0 - s, 1e-300), np.inf)
        return np.minimum(ve, self.sigma_ve_max)

    def from_ve(self, sigmas: np.ndarray) -> np.ndarray:
        ve = np.asarray(sigmas, dtype=np.float64)
        return ve / (1.0 + ve)

    def alphas_cumprod(self) -> np.ndarray:
        """The DDPM ``alphas_cumprod`` with the VE table of :meth:`native_sigmas` (float64)."""
        ve = self.to_ve(self.native_sigmas())
        acp = 1.0 / (1.0 + ve**2)
        acp[-1] = min(TERMINAL_ALPHA_CUMPROD, float(acp[-1]))
        return acp

    def scheduler_model_keys(self, base_config: Mapping[str, Any]) -> dict[str, Any]:
        """``trained_betas`` whose ``alphas_cumprod`` is the flow table in VE form, and an epsilon target:
        every diffusers scheduler (sigma, flag and timestep kinds) then sees the right noise levels."""
        acp = self.alphas_cumprod()
        betas = 1.0 - acp / np.concatenate([[1.0], acp[:-1]])
        return {
            "num_train_timesteps": self.num_train_timesteps,
            "trained_betas": betas.tolist(),
            "prediction_type": "epsilon",
        }

    # ---------------------------------------------------------------- per step
    def timestep(self, s: float) -> float:
        """The network's timestep for flow sigma ``s``."""
        return 1.0 - s if self.timestep_mode == "1-sigma" else s * self.num_train_timesteps

    def network_call_args(self, x_in: torch.Tensor, sigma_ve: float) -> tuple[torch.Tensor, torch.Tensor]:
        sigma = float(sigma_ve)
        s = sigma / (1.0 + sigma)
        x_net = x_in * (math.sqrt(sigma * sigma + 1.0) / (1.0 + sigma))
        t_net = torch.tensor(self.timestep(s), dtype=torch.float32, device=x_in.device)
        return x_net, t_net

    def to_scheduler_output(self, net_out: torch.Tensor, x_in: torch.Tensor, sigma_ve: float) -> torch.Tensor:
        """eps = x_s + (1 - s)·v  (= (x_ve - x0)/sigma_ve with x0 = x_s - s·v)."""
        sigma = float(sigma_ve)
        s = sigma / (1.0 + sigma)
        x_s = x_in * (math.sqrt(sigma * sigma + 1.0) / (1.0 + sigma))
        v = -net_out if self.negate_output else net_out
        return x_s + (1.0 - s) * v.to(x_s.dtype)


def model_sampling_for(
    prediction_type: str, scheduler_config: Mapping[str, Any] | None = None, shift: float | None = None
) -> ModelSampling:
    """The :class:`ModelSampling` of a loaded model.

    ``prediction_type`` "epsilon" / "v_prediction" give the identity wrapper. "flow" reads a diffusers
    ``FlowMatchEulerDiscreteScheduler`` config (``shift``, ``num_train_timesteps``,
    ``use_dynamic_shifting``) plus :data:`FLOW_TIMESTEP_KEY`; ``shift`` (the job's, None or 0 = the
    config's) overrides the config's shift.
    """
    config = dict(scheduler_config or {})
    if prediction_type in ("epsilon", "v_prediction", "sample"):
        return DiscreteModelSampling(prediction_type)
    if prediction_type != "flow":
        raise ValueError(f"unsupported prediction_type {prediction_type!r}; valid: epsilon, v_prediction, flow")
    mode = config.get(FLOW_TIMESTEP_KEY)
    if mode not in FLOW_TIMESTEP_MODES:
        raise ValueError(
            f"flow scheduler config needs {FLOW_TIMESTEP_KEY!r} = one of {', '.join(FLOW_TIMESTEP_MODES)} "
            f"(how s maps to the network's timestep), got {mode!r}"
        )
    if not shift:
        if config.get("use_dynamic_shifting"):
            raise ValueError(
                "this flow model uses a resolution-dependent (dynamic) shift, which is not supported yet; "
                "set a Shift for the job"
            )
        shift = float(config.get("shift", 1.0))
    return FlowModelSampling(
        shift=float(shift),
        timestep_mode=str(mode),
        negate_output=FLOW_TIMESTEP_MODES[str(mode)],
        num_train_timesteps=int(config.get("num_train_timesteps", 1000)),
    )
