"""Sampler set-up for a prepared job: a fresh scheduler per batch (ancestral eta, Brownian noise seeds),
timesteps/sigmas with the schedule settings (discard-penultimate, Beta, SGM noise multiplier), per-step
sigma options (churn/tmin/tmax/noise) and the infotext keys of non-default sampler settings.

Split out of ``app.engine.processing``, which re-exports ``build_scheduler`` and ``steps_info``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from app.engine.denoise import StepsInfo

if TYPE_CHECKING:
    from app.engine.processing import Plan


def sampler_infotext(plan: Plan) -> dict[str, Any]:
    """Infotext keys of the sampler settings that are not at their defaults (A1111 sampler params)."""
    st = plan.settings
    out: dict[str, Any] = {}
    for key, label in (("sigma_min", "Schedule min sigma"), ("sigma_max", "Schedule max sigma"), ("rho", "Schedule rho")):
        value = float(st.get(key, 0) or 0)
        if value:
            out[label] = value
    if st.get("always_discard_next_to_last_sigma", False):
        out["Discard penultimate sigma"] = True
    eta = sampler_eta(plan)
    if eta and getattr(plan.sampler, "name", "").startswith("DDIM"):
        out["Eta DDIM"] = eta
    return out


def build_scheduler(plan: Plan, seeds: list[int], sampler: Any = None, schedule: Any = None):
    """A fresh scheduler from the checkpoint's original config (Brownian noise seeded by *seeds*).

    Ancestral samplers get ``eta`` (request, else setting ``eta_ancestral``) where the scheduler
    takes it; the infotext then carries ``Eta`` when it is not 1.
    """
    from app.engine.samplers import build_scheduler as build
    from app.engine.samplers import takes_ancestral_eta

    loaded = plan.model.loaded
    sampler = sampler or plan.sampler
    eta = None
    if not _is_ddim(sampler) and takes_ancestral_eta(sampler):  # ancestral and SDE samplers, as A1111
        eta = float(plan.params.eta) if plan.params.eta is not None else float(plan.settings.get("eta_ancestral", 1.0))
    scheduler = build(
        sampler,
        schedule or plan.schedule,
        dict(loaded.scheduler_config),
        loaded.prediction_type,
        noise_seeds=list(seeds),
        eta=eta,
    )
    if eta is not None and eta != 1.0 and "eta" in scheduler.config:
        plan.extra["Eta"] = eta
    return scheduler


def _is_ddim(sampler: Any) -> bool:
    return str(getattr(sampler, "name", "")).startswith("DDIM")


def steps_info(plan: Plan, steps: int, start_step: int = 0, sampler: Any = None, schedule: Any = None) -> StepsInfo:
    """A1111 sigma schedules (``samplers.make_timesteps``) with the settings' sigma overrides."""
    from app.engine import samplers

    st = plan.settings
    sampler = sampler or plan.sampler
    schedule = schedule or plan.schedule

    def prepare(scheduler: Any, device: torch.device) -> torch.Tensor:
        return samplers.make_timesteps(
            scheduler,
            steps,
            sampler,
            schedule,
            device=device,
            is_sdxl=bool(getattr(plan.model.loaded, "is_sdxl", False)),
            sigma_min=float(st.get("sigma_min", 0) or 0) or None,
            sigma_max=float(st.get("sigma_max", 0) or 0) or None,
            rho=float(st.get("rho", 0) or 0) or None,
            start_index=start_step,
            discard_penultimate=True if st.get("always_discard_next_to_last_sigma", False) else None,
            beta_alpha=float(st.get("beta_dist_alpha", 0.6)),
            beta_beta=float(st.get("beta_dist_beta", 0.6)),
        )

    noise_scale = samplers.init_noise_scale
    if st.get("sgm_noise_multiplier", False):
        plan.extra["SGM noise multiplier"] = True
        noise_scale = _sgm_noise_scale
    return StepsInfo(steps, start_step=start_step, prepare=prepare, noise_scale=noise_scale)


def _sgm_noise_scale(scheduler: Any) -> float:
    """A1111 "SGM noise multiplier": start latents = noise · sqrt(1 + sigma_max²) in k-diffusion terms,
    expressed in the scheduler's own space (its init scale corresponds to noise · sigma_max)."""
    from app.engine.samplers import init_noise_scale

    base = init_noise_scale(scheduler)
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is None or not len(sigmas):
        return base
    sigma = float(sigmas[getattr(scheduler, "begin_index", None) or 0])
    return base * (1.0 + sigma**2) ** 0.5 / sigma if sigma > 0 else base


def sampler_eta(plan: Plan, sampler: Any = None) -> float | None:
    """``eta`` for DDIM's ``step`` (request, else setting ``eta_ddim``); None for other samplers."""
    if not _is_ddim(sampler or plan.sampler):
        return None
    return float(plan.params.eta) if plan.params.eta is not None else float(plan.settings.get("eta_ddim", 0.0))


_SIGMA_OPTIONS = (("s_churn", "Sigma churn"), ("s_tmin", "Sigma tmin"), ("s_tmax", "Sigma tmax"), ("s_noise", "S noise"))


def sigma_options(plan: Plan, scheduler: Any) -> dict[str, float]:
    """``s_churn``/``s_tmin``/``s_tmax``/``s_noise`` for schedulers whose ``step`` takes them, when they are
    not at their defaults; their infotext keys are added to the plan."""
    import inspect

    accepted = inspect.signature(scheduler.step).parameters
    st = plan.settings
    churn = float(st.get("s_churn", 0.0) or 0.0)
    noise = float(st.get("s_noise", 1.0) if st.get("s_noise", 1.0) is not None else 1.0)
    wanted: dict[str, float] = {}
    if churn > 0:
        wanted["s_churn"] = churn
        wanted["s_tmin"] = float(st.get("s_tmin", 0.0) or 0.0)
        wanted["s_tmax"] = float(st.get("s_tmax", 0.0) or 0.0) or float("inf")
    if noise != 1.0:
        wanted["s_noise"] = noise
    used = {k: v for k, v in wanted.items() if k in accepted}
    for key, label in _SIGMA_OPTIONS:
        if key in used and used[key] != float("inf"):
            plan.extra[label] = used[key]
    return used
