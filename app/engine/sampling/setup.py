"""Sampler set-up for a prepared job: a fresh scheduler per batch (ancestral eta, Brownian noise seeds),
timesteps/sigmas with the schedule settings (discard-penultimate, Beta, SGM noise multiplier), per-step
sigma options (churn/tmin/tmax/noise), the infotext keys of non-default sampler settings, the batch's
RNG (``make_rng``) and ``run_sampler``: our loop (``app.engine.denoise``) wired to the job's progress,
previews, extension step hooks, stop flags and SD3.5's skip-layer guidance. A flow model (``prediction_type`` "flow") gets its
``ModelSampling`` with the job's shift (``plan_model_sampling``) in all three.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from app.engine.denoise import SampleResult, StepConds, StepsInfo, sample
from app.engine.plan import Batch, Plan
from app.engine.preview import preview_image
from app.engine.rng import ImageRNG
from app.engine.sampling import schedulers as samplers
from app.engine.sampling.deepcache import deepcache_for
from app.engine.sampling.model_sampling import ModelSampling, model_sampling_for
from app.engine.sampling.skip_layers import plan_guidance
from app.plugins import hooks


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


def job_shift(plan: Plan) -> float | None:
    """The job's flow shift: the request's ``shift``, else the setting ``flow_shift`` (0 = None = model default)."""
    if plan.params.shift is not None and float(plan.params.shift) > 0:
        return float(plan.params.shift)
    value = float(plan.settings.get("flow_shift", 0) or 0)
    return value if value > 0 else None


def plan_model_sampling(plan: Plan) -> ModelSampling | None:
    """The flow model sampling of the job's model with the job's shift (infotext ``Shift``); None for SD."""
    loaded = plan.model.loaded
    if getattr(loaded, "prediction_type", None) != "flow":
        return None
    shift = job_shift(plan)
    if shift is None:  # FLUX dev: the resolution-dependent shift of the job's size
        shift = plan.family.job_shift(dict(loaded.scheduler_config), plan.params.width, plan.params.height)
        if shift is not None:
            # Rounded before use, so the infotext's `Shift: 1.5831` pastes back to exactly the sigmas this job ran with
            # (the rounding moves the sigmas by about 1e-6: invisible in the image).
            shift = round(float(shift), 4)
    sampling = model_sampling_for("flow", dict(loaded.scheduler_config), shift)
    plan.extra["Shift"] = float(getattr(sampling, "shift", 0.0))
    return sampling


def build_scheduler(plan: Plan, seeds: list[int], sampler: Any = None, schedule: Any = None):
    """A fresh scheduler from the checkpoint's original config (Brownian noise seeded by *seeds*).

    Ancestral samplers get ``eta`` (request, else setting ``eta_ancestral``) where the scheduler
    takes it; the infotext then carries ``Eta`` when it is not 1.
    """
    loaded = plan.model.loaded
    sampler = sampler or plan.sampler
    eta = None
    if not _is_ddim(sampler) and samplers.takes_ancestral_eta(sampler):  # ancestral and SDE samplers, as A1111
        eta = float(plan.params.eta) if plan.params.eta is not None else float(plan.settings.get("eta_ancestral", 1.0))
    scheduler = samplers.build_scheduler(
        sampler,
        schedule or plan.schedule,
        dict(loaded.scheduler_config),
        loaded.prediction_type,
        noise_seeds=list(seeds),
        eta=eta,
        model_sampling=plan_model_sampling(plan),
        config_overrides=_unipc_options(plan, sampler),
    )
    if eta is not None and eta != 1.0 and "eta" in scheduler.config:
        plan.extra["Eta"] = eta
    return scheduler


def _unipc_options(plan: Plan, sampler: Any) -> dict[str, Any] | None:
    """UniPC's ``solver_order`` from the setting ``uni_pc_order`` (A1111's ``order``, default 3; infotext
    ``UniPC order`` when not 3, as A1111 1.5 wrote it, so it pastes back); None for other samplers."""
    if getattr(sampler, "id", None) != "unipc":
        return None
    order = int(plan.settings.get("uni_pc_order", 3) or 3)
    if order != 3:
        plan.extra["UniPC order"] = order
    return {"solver_order": order}


def _is_ddim(sampler: Any) -> bool:
    return str(getattr(sampler, "name", "")).startswith("DDIM")


def steps_info(plan: Plan, steps: int, start_step: int = 0, sampler: Any = None, schedule: Any = None) -> StepsInfo:
    """A1111 sigma schedules (``samplers.make_timesteps``) with the settings' sigma overrides."""
    st = plan.settings
    sampler = sampler or plan.sampler
    schedule = schedule or plan.schedule

    def prepare(scheduler: Any, device: torch.device) -> torch.Tensor:
        if samplers.uses_beta_settings(scheduler, sampler, schedule):  # A1111 writes both whenever Beta runs
            plan.extra["Beta schedule alpha"] = float(st.get("beta_dist_alpha", 0.6))
            plan.extra["Beta schedule beta"] = float(st.get("beta_dist_beta", 0.6))
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
    base = samplers.init_noise_scale(scheduler)
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


# ------------------------------------------------------------------------------ the batch's RNG and loop
def make_rng(plan: Plan, batch: Batch, latent_hw: tuple[int, int]):
    """Per-image RNG for a batch: ``first()`` is the start noise, generators feed ancestral steps."""
    channels = plan.family.latent.channels
    seeds = plan.params.seed
    source = str(plan.settings.get("randn_source", "CPU"))
    device = plan.device if source == "GPU" else torch.device("cpu")
    return ImageRNG(
        (channels, latent_hw[0], latent_hw[1]),
        batch.seeds,
        batch.subseeds,
        seeds.subseed_strength,
        (seeds.seed_resize_from_w, seeds.seed_resize_from_h),
        source=source,
        device=device if device.type != "mps" else torch.device("cpu"),
        ensd=int(plan.settings.get("eta_noise_seed_delta", 0) or 0),
    )


def run_sampler(
    plan: Plan,
    scheduler: Any,
    noise: torch.Tensor,
    conds: StepConds,
    steps_info: StepsInfo,  # noqa: F811  (the parameter shadows this module's helper of that name)
    generators: list[torch.Generator] | None,
    on_step: Callable[[int, int, torch.Tensor], None] | None = None,
    init_latents: torch.Tensor | None = None,
    sampler: Any = None,
    pass_steps: int | None = None,
    **kwargs: Any,
) -> SampleResult:
    """Our loop with the job's progress, preview and stop wiring.

    Progress is reported in sampler steps (``pass_steps`` for this pass, after ``plan.steps_offset``),
    whatever the number of model evaluations per step.
    """
    unet = plan.family.job_denoiser(plan)
    model = deepcache_for(unet, plan.settings) if plan.family.id != "zimage" and hasattr(unet, "up_blocks") else None  # setting deepcache_enabled (approximate, off by default)
    if model is not None:
        plan.extra["DeepCache interval"] = model.interval
    device = plan.device
    noise = noise.to(device, torch.float32)
    if init_latents is not None:
        init_latents = init_latents.to(device, torch.float32)

    def callback(step: int, total: int, latents: torch.Tensor, denoised: torch.Tensor | None):
        if plan.ctx is not None:
            done = step if not pass_steps else max(1, round(step * pass_steps / total))
            due = plan.ctx.step(plan.steps_offset + done, plan.steps_total or total)
            if due:  # A1111 previews the current prediction of the final image when there is one
                image = preview_image(plan, latents if denoised is None else denoised)
                if image is not None:
                    plan.ctx.set_preview(image)
        hooks.on_step(plan, step, total, latents)
        if on_step is not None:
            return on_step(step, total, latents)
        return None

    extra_noise = float(plan.settings.get("img2img_extra_noise", 0.0) or 0.0)
    if init_latents is not None and extra_noise > 0:  # img2img and the hires fix, as A1111's sample_img2img
        kwargs.setdefault("extra_noise", extra_noise)
        plan.extra["Extra noise"] = extra_noise
    kwargs.setdefault("step_options", sigma_options(plan, scheduler))
    kwargs.setdefault("skip_layer_guidance", plan_guidance(plan, unet))  # SD3.5 SLG (off unless the job asks)
    ngms = float(plan.settings.get("s_min_uncond", 0.0) or 0.0)
    if ngms > 0:
        kwargs.setdefault("min_uncond_sigma", ngms)
        plan.extra["NGMS"] = ngms
    early = float(plan.settings.get("skip_early_cond", 0.0) or 0.0)
    if early > 0:
        kwargs.setdefault("skip_early_uncond", early)
        plan.extra["Skip Early CFG"] = early
    with torch.inference_mode():
        return sample(
            unet if model is None else model,
            scheduler,
            noise,
            conds,
            float(plan.params.cfg_scale),
            steps_info,
            callback,
            generators,
            should_stop=plan.should_stop,
            init_latents=init_latents,
            model_sampling=plan_model_sampling(plan),
            eta=sampler_eta(plan, sampler),
            **kwargs,
        )
