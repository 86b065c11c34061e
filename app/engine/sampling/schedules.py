"""A1111 schedule types (sd_schedulers.py) as sigma functions on the model's training sigmas.

Every function returns a float64 numpy vector of sigmas, high to low, including the final value
(0 for all but KL Optimal, which ends at sigma_min). ``model_sigmas`` is the 1000-entry vector of
training sigmas ``sqrt((1 - ᾱ) / ᾱ)``; ``sigma_to_t``/``t_to_sigma`` interpolate log-sigma linearly
between integer timesteps, as k-diffusion's discrete denoiser does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "AYS_SD1",
    "AYS_SDXL",
    "SCHEDULE_TYPES",
    "ScheduleSpec",
    "ScheduleType",
    "compute_sigmas",
    "model_sigmas_from_alphas",
    "model_sigmas_from_config",
    "sigma_to_t",
    "t_to_sigma",
]

AYS_SD1 = [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029]
AYS_SDXL = [14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029]


# ---------------------------------------------------------------- model sigmas
def model_sigmas_from_alphas(alphas_cumprod) -> np.ndarray:
    acp = np.asarray(alphas_cumprod, dtype=np.float64)
    return np.sqrt((1.0 - acp) / acp)


def model_sigmas_from_config(config: Mapping) -> np.ndarray:
    """Training sigmas of a diffusers scheduler config (computed like ldm: float64, stored float32)."""
    n = int(config.get("num_train_timesteps", 1000))
    trained = config.get("trained_betas")
    kind = config.get("beta_schedule", "linear")
    start, end = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
    if trained is not None:
        betas = np.asarray(trained, dtype=np.float64)
    elif kind == "scaled_linear":
        betas = np.linspace(start**0.5, end**0.5, n, dtype=np.float64) ** 2
    elif kind == "linear":
        betas = np.linspace(start, end, n, dtype=np.float64)
    elif kind == "squaredcos_cap_v2":
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = np.array([min(1 - f((i + 1) / n) / f(i / n), 0.999) for i in range(n)], dtype=np.float64)
    else:
        raise ValueError(f"scheduler config: unsupported beta_schedule {kind!r}")
    acp = np.cumprod(1.0 - betas).astype(np.float32)
    return model_sigmas_from_alphas(acp)


def sigma_to_t(sigma, model_sigmas: np.ndarray) -> np.ndarray:
    """Fractional timestep of each sigma (clamped to the training range)."""
    log_sigmas = np.log(model_sigmas)
    return np.interp(
        np.log(np.maximum(np.asarray(sigma, dtype=np.float64), 1e-10)), log_sigmas, np.arange(len(log_sigmas))
    )


def t_to_sigma(t, model_sigmas: np.ndarray) -> np.ndarray:
    log_sigmas = np.log(model_sigmas)
    return np.exp(np.interp(np.asarray(t, dtype=np.float64), np.arange(len(log_sigmas)), log_sigmas))


def _append_zero(x) -> np.ndarray:
    return np.concatenate([np.asarray(x, dtype=np.float64), [0.0]])


# ---------------------------------------------------------------- schedule functions
# Signature: fn(n, sigma_min, sigma_max, *, model_sigmas, rho, is_sdxl, beta_alpha, beta_beta)


def uniform(n, sigma_min, sigma_max, *, model_sigmas, **_):
    """The model's own schedule: n timesteps evenly from the last training step to 0."""
    return _append_zero(t_to_sigma(np.linspace(len(model_sigmas) - 1, 0, n), model_sigmas))


def karras(n, sigma_min, sigma_max, *, rho=7.0, **_):
    ramp = np.linspace(0, 1, n)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((hi + ramp * (lo - hi)) ** rho)


def exponential(n, sigma_min, sigma_max, **_):
    return _append_zero(np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), n)))


def polyexponential(n, sigma_min, sigma_max, *, rho=1.0, **_):
    ramp = np.linspace(1, 0, n) ** rho
    return _append_zero(np.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def normal(n, sigma_min, sigma_max, *, model_sigmas, sgm=False, **_):
    start, end = sigma_to_t(sigma_max, model_sigmas), sigma_to_t(sigma_min, model_sigmas)
    ts = np.linspace(start, end, n + 1)[:-1] if sgm else np.linspace(start, end, n)
    return _append_zero(t_to_sigma(ts, model_sigmas))


def sgm_uniform(n, sigma_min, sigma_max, *, model_sigmas, **_):
    return normal(n, sigma_min, sigma_max, model_sigmas=model_sigmas, sgm=True)


def kl_optimal(n, sigma_min, sigma_max, **_):
    a_min, a_max = math.atan(sigma_min), math.atan(sigma_max)
    idx = np.arange(n + 1) / n
    return np.tan(idx * a_min + (1.0 - idx) * a_max)


def align_your_steps(n, sigma_min, sigma_max, *, is_sdxl=False, **_):
    anchors = AYS_SDXL if is_sdxl else AYS_SD1
    if n == len(anchors):
        return _append_zero(anchors)
    xs = np.linspace(0, 1, len(anchors))
    ys = np.log(anchors[::-1])
    interp = np.exp(np.interp(np.linspace(0, 1, n), xs, ys))[::-1]
    return _append_zero(interp)


def simple(n, sigma_min, sigma_max, *, model_sigmas, **_):
    ss = len(model_sigmas) / n
    return _append_zero([model_sigmas[-(1 + int(x * ss))] for x in range(n)])


def ddim(n, sigma_min, sigma_max, *, model_sigmas, **_):
    ss = max(len(model_sigmas) // n, 1)
    sigs = [model_sigmas[x] for x in range(1, len(model_sigmas), ss)]
    return _append_zero(sigs[::-1])


def beta(n, sigma_min, sigma_max, *, beta_alpha=0.6, beta_beta=0.6, **_):
    from scipy import stats  # deferred: only Beta needs scipy; the torch-free name table imports this module

    ppf = stats.beta.ppf(1 - np.linspace(0, 1, n), beta_alpha, beta_beta)
    return _append_zero(sigma_min + ppf * (sigma_max - sigma_min))


# ---------------------------------------------------------------- registry
@dataclass(frozen=True)
class ScheduleType:
    """One A1111 schedule type. ``sigmas`` is None for Automatic (the sampler default decides).

    ``flag`` is the diffusers config switch that produces the same family of sigmas and ``spacing``
    the ``timestep_spacing`` that approximates it, for scheduler classes that cannot take explicit
    sigmas.
    """

    id: str
    label: str
    aliases: tuple[str, ...] = ()
    default_rho: float = -1.0
    need_inner_model: bool = False
    sigmas: Callable[..., np.ndarray] | None = None
    flag: str | None = None
    spacing: str = "linspace"
    extra: dict = field(default_factory=dict)

    def names(self) -> tuple[str, ...]:
        return (self.label, self.id, *self.aliases)


ScheduleSpec = ScheduleType  # the name used in the team brief

SCHEDULE_TYPES: tuple[ScheduleType, ...] = (
    ScheduleType("automatic", "Automatic"),
    ScheduleType("uniform", "Uniform", need_inner_model=True, sigmas=uniform),
    ScheduleType("karras", "Karras", default_rho=7.0, sigmas=karras, flag="use_karras_sigmas"),
    ScheduleType("exponential", "Exponential", sigmas=exponential, flag="use_exponential_sigmas"),
    ScheduleType("polyexponential", "Polyexponential", default_rho=1.0, sigmas=polyexponential),
    ScheduleType(
        "sgm_uniform", "SGM Uniform", ("SGMUniform",), need_inner_model=True, sigmas=sgm_uniform, spacing="trailing"
    ),
    ScheduleType("kl_optimal", "KL Optimal", sigmas=kl_optimal),
    ScheduleType("align_your_steps", "Align Your Steps", sigmas=align_your_steps),
    ScheduleType("simple", "Simple", need_inner_model=True, sigmas=simple, spacing="trailing"),
    ScheduleType("normal", "Normal", need_inner_model=True, sigmas=normal),
    ScheduleType("ddim", "DDIM", need_inner_model=True, sigmas=ddim, spacing="leading"),
    ScheduleType("beta", "Beta", need_inner_model=True, sigmas=beta, flag="use_beta_sigmas"),
)


def compute_sigmas(
    schedule: ScheduleType,
    n: int,
    model_sigmas: np.ndarray,
    *,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float | None = None,
    is_sdxl: bool = False,
    discard_penultimate: bool = False,
    beta_alpha: float = 0.6,
    beta_beta: float = 0.6,
) -> np.ndarray:
    """A1111's sigma vector for ``n`` steps (``sigma_min``/``sigma_max``/``rho`` of 0/None = default).

    ``discard_penultimate`` requests n+1 sigmas and drops the second-to-last (DPM2, DPM++ 3M SDE).
    """
    if schedule.sigmas is None:
        raise ValueError("compute_sigmas: 'Automatic' has no sigma function; resolve it to the sampler default")
    if n < 1:
        raise ValueError(f"steps must be >= 1, got {n}")
    smin = float(sigma_min) if sigma_min else float(model_sigmas[0])
    smax = float(sigma_max) if sigma_max else float(model_sigmas[-1])
    steps = n + 1 if discard_penultimate else n
    kwargs = {"model_sigmas": model_sigmas, "is_sdxl": is_sdxl, "beta_alpha": beta_alpha, "beta_beta": beta_beta}
    if schedule.default_rho > 0:
        kwargs["rho"] = float(rho) if rho else schedule.default_rho
    sig = np.asarray(schedule.sigmas(steps, smin, smax, **kwargs), dtype=np.float64)
    if discard_penultimate:
        sig = np.concatenate([sig[:-2], sig[-1:]])
    return sig
