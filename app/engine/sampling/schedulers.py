"""A1111 samplers and schedule types mapped onto diffusers schedulers (spec §6.1, §6.2).

One ordered table keyed by stable ids. Each sampler has one of three kinds:

- ``sigmas``: the scheduler takes an explicit sigma vector (natively, through a small subclass
  that adds a ``sigmas=`` argument to ``set_timesteps``, or one of our k-diffusion schedulers in
  :mod:`app.engine.sampling.kdiffusion.samplers`), so every schedule type gives A1111's exact sigma vector
  (computed in :mod:`app.engine.sampling.schedules`).
- ``flags`` (DEIS, plugin samplers): the scheduler only knows diffusers' own schedules; Karras/Exponential/Beta map to its
  ``use_*_sigmas`` switches, Uniform/Normal to linspace spacing, SGM Uniform/Simple to trailing and
  DDIM to leading spacing; other schedules go through custom ``timesteps=`` where the class accepts
  them, else they are rejected (:class:`UnsupportedScheduleError`).
- ``timesteps``: A1111's timestep samplers (DDIM, PLMS, UniPC) and TCD; the schedule type is ignored.

Schedulers are always built FRESH from the checkpoint's original config (only its noise-schedule
keys are kept), never from another scheduler's ``.config`` (feasibility pitfall 4).
The table itself (and which A1111 samplers are left out) lives in :mod:`app.engine.sampling.table`.
"""

from __future__ import annotations

import copy
import inspect
import logging
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from diffusers import DEISMultistepScheduler, DPMSolverMultistepScheduler, DPMSolverSinglestepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from app.engine.sampling import names
from app.engine.sampling.model_sampling import ModelSampling, model_sampling_for
from app.engine.sampling.names import (
    UnknownSamplerError,
    UnknownScheduleError,
    UnsupportedScheduleError,
    find_schedule,
)
from app.engine.sampling.schedules import (
    SCHEDULE_TYPES,
    ScheduleType,
    compute_sigmas,
    model_sigmas_from_alphas,
    sigma_to_t,
)
from app.engine.sampling.table import SAMPLERS, SamplerInfo

__all__ = [
    "SAMPLERS",
    "SCHEDULE_TYPES",
    "SamplerInfo",
    "ScheduleType",
    "UnknownSamplerError",
    "UnknownScheduleError",
    "UnsupportedScheduleError",
    "build_scheduler",
    "effective_schedule",
    "find_schedule",
    "init_noise_scale",
    "is_second_order",
    "make_timesteps",
    "needs_generator",
    "resolve_sampler",
    "step_kwargs",
    "takes_ancestral_eta",
    "supported_schedules",
]

log = logging.getLogger(__name__)

# Keys of the checkpoint's scheduler config that describe the MODEL (its noise schedule and target);
# everything else (spacing, sigma switches, solver options) is set by the sampler/schedule choice.
_MODEL_KEYS = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "prediction_type",
    "rescale_betas_zero_snr",
)


_SAMPLER_BY_ID: dict[str, SamplerInfo] = {s.id: s for s in SAMPLERS}

# scheduler instance → (sampler, schedule) it was built for (make_timesteps' defaults)
_BUILT: weakref.WeakKeyDictionary[SchedulerMixin, tuple[SamplerInfo, ScheduleType]] = weakref.WeakKeyDictionary()
# scheduler instance → the non-identity model sampling (flow) it was built for (make_timesteps' default)
_SAMPLING: weakref.WeakKeyDictionary[SchedulerMixin, ModelSampling] = weakref.WeakKeyDictionary()
_BY_ID = {s.id: s for s in SCHEDULE_TYPES}
_SPACING_IDS = ("uniform", "normal", "sgm_uniform", "simple", "ddim")


# ---------------------------------------------------------------- lookup
def _find_sampler(name: str | SamplerInfo | names.SamplerName) -> SamplerInfo:
    if isinstance(name, SamplerInfo):
        return name
    if isinstance(name, names.SamplerName):
        return _SAMPLER_BY_ID[name.id]
    return _SAMPLER_BY_ID[names.find_sampler_name(name).id]


def resolve_sampler(
    name: str | SamplerInfo | None, scheduler: str | ScheduleType | None = "Automatic", fallback: bool = False
) -> tuple[SamplerInfo, ScheduleType]:
    """(sampler, schedule) from A1111-style names (:func:`app.engine.sampling.names.resolve_names`),
    with the schedule types checked against the sampler's diffusers scheduler class."""
    entry, schedule = names.resolve_names(name, scheduler, fallback, supported=supported_schedules)
    return (entry if isinstance(entry, SamplerInfo) else _SAMPLER_BY_ID[entry.id]), schedule


def _concrete(sampler: SamplerInfo, schedule: ScheduleType) -> ScheduleType:
    """The schedule actually used: Automatic → the sampler default (else the model's uniform)."""
    if schedule.id != "automatic":
        return schedule
    return _BY_ID[sampler.default_schedule or "uniform"]


def _accepts(fn: Callable, arg: str) -> bool:
    return arg in inspect.signature(fn).parameters


def _flags_route(cls: type, schedule: ScheduleType) -> str | None:
    """How a ``flags`` scheduler class runs a concrete schedule: "flag", "spacing", "timesteps" or None."""
    flag = schedule.flag or ("use_exponential_sigmas" if schedule.id == "polyexponential" else None)
    if flag and _accepts(cls.__init__, flag):
        return "flag"
    if schedule.id in _SPACING_IDS and _accepts(cls.__init__, "timestep_spacing"):
        return "spacing"
    if _accepts(cls.set_timesteps, "timesteps"):
        return "timesteps"
    return None


def _scheduler_class(info: SamplerInfo) -> type:
    cls = getattr(info.factory, "scheduler_class", None)
    return cls if cls is not None else type(info.factory({}))


def supported_schedules(sampler: SamplerInfo | names.SamplerName | str) -> tuple[str, ...]:
    """Ids of the schedule types this sampler can run (timestep samplers ignore the choice)."""
    info = _find_sampler(sampler)
    if info.kind in ("sigmas", "timesteps"):
        return tuple(s.id for s in SCHEDULE_TYPES)
    cls = _scheduler_class(info)
    return tuple(s.id for s in SCHEDULE_TYPES if _flags_route(cls, _concrete(info, s)) is not None)


def effective_schedule(sampler: SamplerInfo | str, schedule: ScheduleType | str | None = "Automatic") -> str:
    """The ``Schedule type`` label for infotext: Automatic resolves to the sampler's default
    (DPM++ 2M → Karras); without a default it stays Automatic (Euler a)."""
    info = _find_sampler(sampler)
    sch = find_schedule(schedule)
    if sch.id == "automatic" and info.default_schedule:
        return _BY_ID[info.default_schedule].label
    return sch.label


# ---------------------------------------------------------------- building
def build_scheduler(
    sampler: SamplerInfo | str,
    schedule: ScheduleType | str | None,
    base_config: Mapping[str, Any],
    prediction_type: str | None = None,
    noise_seeds: list[int] | None = None,
    eta: float | None = None,
    model_sampling: ModelSampling | None = None,
    config_overrides: Mapping[str, Any] | None = None,
) -> SchedulerMixin:
    """A FRESH scheduler for ``sampler`` + ``schedule`` from the checkpoint's ORIGINAL config.

    ``prediction_type`` "flow" (or a non-identity ``model_sampling``) builds it on the VE-equivalent
    noise schedule of the flow model (:mod:`app.engine.sampling.model_sampling`; ``model_sampling``
    defaults to the one of ``base_config``, a FlowMatchEulerDiscreteScheduler config), and
    ``make_timesteps`` then computes the schedule types in the flow sigma space.

    Only the model keys of ``base_config`` (betas, training steps, prediction type) are kept, so
    settings of whatever scheduler class the checkpoint shipped never leak in. ``noise_seeds`` seeds
    the Brownian trees of DPM++ SDE / 2M SDE / 2M SDE Heun / 3M SDE (A1111 uses the batch's seeds). ``eta`` goes into the config of
    schedulers that take it there (DPM++ 2S a); DDIM's eta is a ``step`` argument (``step_kwargs``).
    ``config_overrides`` replace the sampler's own config values (UniPC's ``solver_order`` from a setting).
    """
    info, sch = resolve_sampler(sampler, schedule)
    if prediction_type == "flow" and model_sampling is None:
        model_sampling = model_sampling_for("flow", base_config)
    flow = model_sampling is not None and not model_sampling.identity
    class_name = str(base_config.get("_class_name", ""))
    if not flow and ("FlowMatch" in class_name or ("shift" in base_config and "beta_schedule" not in base_config)):
        raise ValueError(
            f"scheduler config {class_name or '(flow matching)'} is a flow-matching model's: "
            "build its sampler with prediction_type 'flow'"
        )
    if flow:
        config = model_sampling.scheduler_model_keys(base_config)  # type: ignore[union-attr]
    else:
        config = {k: copy.deepcopy(base_config[k]) for k in _MODEL_KEYS if k in base_config}
        if prediction_type:
            config["prediction_type"] = prediction_type
    concrete = _concrete(info, sch)
    overrides: dict[str, Any] = {}
    if info.kind == "flags":
        route = _flags_route(_scheduler_class(info), concrete)
        if route == "flag" and flow:
            # diffusers' sigma switches work in VE sigma up to ~4096 on a flow table: integer timesteps collide
            raise UnsupportedScheduleError(
                f"sampler {info.name!r} cannot use schedule type {concrete.label!r} on a flow-matching model; "
                "use Simple, SGM Uniform, Uniform, Normal or DDIM"
            )
        if route == "flag":
            overrides[concrete.flag or "use_exponential_sigmas"] = True
        elif route == "spacing":
            overrides["timestep_spacing"] = concrete.spacing
            if concrete.spacing == "leading":
                overrides["steps_offset"] = 1
    if eta is not None:
        config["eta"] = float(eta)  # dropped by factories whose class has no eta parameter
    overrides.update(config_overrides or {})
    scheduler = info.factory(config, **overrides)
    if noise_seeds is not None and hasattr(scheduler, "set_noise_seeds"):
        scheduler.set_noise_seeds(list(noise_seeds))
    _BUILT[scheduler] = (info, sch)
    if flow:
        _SAMPLING[scheduler] = model_sampling  # type: ignore[assignment]
    return scheduler


def uses_beta_settings(scheduler: SchedulerMixin, sampler: SamplerInfo | str, schedule: ScheduleType | str) -> bool:
    """Whether *sampler* on *schedule* runs A1111's Beta schedule computed here, so that the settings
    ``beta_dist_alpha``/``beta_dist_beta`` shape it (k-diffusion samplers, custom-timestep ``flags`` samplers);
    the timestep samplers ignore the schedule type and diffusers' own Beta flag has its fixed 0.6/0.6."""
    info, sch = resolve_sampler(sampler, schedule)
    concrete = _concrete(info, sch)
    if concrete.id != "beta":
        return False
    return info.kind == "sigmas" or (info.kind == "flags" and _flags_route(type(scheduler), concrete) == "timesteps")


def make_timesteps(
    scheduler: SchedulerMixin,
    steps: int,
    sampler: SamplerInfo | str | None = None,
    schedule: ScheduleType | str | None = None,
    *,
    device: str | torch.device | None = None,
    is_sdxl: bool = False,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float | None = None,
    start_index: int = 0,
    discard_penultimate: bool | None = None,
    beta_alpha: float = 0.6,
    beta_beta: float = 0.6,
    model_sampling: ModelSampling | None = None,
) -> torch.Tensor:
    """Set ``scheduler`` up for ``steps`` steps of ``schedule`` and return the timesteps to run.

    ``sampler``/``schedule`` default to those ``build_scheduler`` made this scheduler for.
    ``sigma_min``/``sigma_max``/``rho`` (0/None = the model's) are the A1111 schedule overrides,
    ``discard_penultimate=True`` is the setting ``always_discard_next_to_last_sigma`` (None = the
    sampler's own rule) and ``beta_alpha``/``beta_beta`` the Beta schedule's settings. Overrides only
    apply to samplers that take explicit sigmas or custom timesteps (they are logged and ignored
    for the others).
    ``start_index`` skips the first steps (img2img: ``Img2ImgSchedule.start_index``) and sets the
    scheduler's begin index accordingly.
    ``model_sampling`` (default: the one ``build_scheduler`` used) with a native sigma table (flow) makes
    the schedule types work in that space, as ComfyUI does (Simple = every N/steps-th entry of the
    shifted table, Karras/Exponential between the native sigma min and max, ``sigma_min``/``sigma_max``
    overrides in native units); the result is converted to VE sigmas for the scheduler. Align Your
    Steps' anchors are VE sigmas and stay so. ``flags`` samplers (DEIS) use diffusers' own VE schedules.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    built = _BUILT.get(scheduler)
    if sampler is None and built is None:
        raise ValueError("make_timesteps: pass sampler= for a scheduler not made by build_scheduler")
    info = _find_sampler(sampler) if sampler is not None else built[0]
    if schedule is None and built is not None and built[0] is info:
        schedule = built[1]
    info, sch = resolve_sampler(info, schedule)
    concrete = _concrete(info, sch)
    table = getattr(scheduler, "model_sigma_table", None)  # LCM: schedules live on its 50-step grid
    ve_sigmas = table() if callable(table) else model_sigmas_from_alphas(scheduler.alphas_cumprod)
    sampling = model_sampling if model_sampling is not None else _SAMPLING.get(scheduler)
    native = sampling.native_sigmas() if sampling is not None and concrete.id != "align_your_steps" else None
    if native is not None and callable(table):
        native = sampling.from_ve(ve_sigmas)  # type: ignore[union-attr]
    model_sigmas = ve_sigmas if native is None else native
    overridden = bool(
        sigma_min
        or sigma_max
        or (rho and concrete.default_rho > 0)
        or (discard_penultimate and not info.discard_penultimate)
        or (concrete.id == "beta" and (beta_alpha, beta_beta) != (0.6, 0.6))
    )

    def a1111_sigmas() -> np.ndarray:
        if native is not None and concrete.id == "simple" and not overridden and hasattr(sampling, "simple_sigmas"):
            # flow models: Simple on the continuous time axis, as the model's own pipeline steps (equal to the
            # table pick when steps divide 1000; for other counts the table rounds each step to 1/1000)
            return sampling.to_ve(sampling.simple_sigmas(steps))  # type: ignore[union-attr]
        sig = compute_sigmas(
            concrete,
            steps,
            model_sigmas,
            sigma_min=sigma_min,
            sigma_max=sigma_max,
            rho=rho,
            is_sdxl=is_sdxl,
            discard_penultimate=info.discard_penultimate if discard_penultimate is None else discard_penultimate,
            beta_alpha=beta_alpha,
            beta_beta=beta_beta,
        )
        return sig if native is None else sampling.to_ve(sig)  # type: ignore[union-attr]

    truncate = start_index > 0 and getattr(scheduler, "truncate_for_img2img", False)
    if info.kind == "sigmas" and truncate:  # Restart plans its run from the truncated sigmas
        scheduler.set_timesteps(sigmas=a1111_sigmas()[start_index:], device=device)
        return scheduler.timesteps
    if info.kind == "sigmas":
        scheduler.set_timesteps(sigmas=a1111_sigmas(), device=device)
    elif info.kind == "flags" and _flags_route(type(scheduler), concrete) == "timesteps":
        ts = sigma_to_t(a1111_sigmas()[:-1], ve_sigmas)
        scheduler.set_timesteps(timesteps=ts.tolist(), device=device)
    else:
        if overridden and info.kind == "flags":
            log.warning(
                "%s: schedule overrides (sigma min/max, rho, discard, beta) are not supported; ignored", info.name
            )
        scheduler.set_timesteps(steps, device=device)
    order = int(getattr(scheduler, "order", 1) or 1)
    timesteps = scheduler.timesteps
    begin = min(start_index * order, len(timesteps) - 1) if start_index > 0 else 0
    if hasattr(scheduler, "set_begin_index"):
        # Also at 0: a schedule whose first timesteps repeat (LCM past its 50-step grid) would otherwise be located by
        # diffusers' timestep lookup, which picks the second match and runs off the end.
        scheduler.set_begin_index(begin)
    return timesteps[begin:]


# ---------------------------------------------------------------- step helpers
def init_noise_scale(scheduler: SchedulerMixin) -> float:
    """The factor for the initial noise that matches A1111 (x = noise·sigma_max in k-diffusion terms).

    Sigma-space schedulers (Euler, Heun, …) say ``init_noise_sigma`` = sigma_max already. The VP-space
    DPM-Solver family says 1.0, which is the limit sigma→∞; A1111's start at sigma_max corresponds to
    ``sigma_max / sqrt(1 + sigma_max²)`` there. Timestep samplers (DDIM, PLMS, UniPC, LCM) start from
    the plain noise like A1111's. Call after ``make_timesteps``.
    """
    if getattr(scheduler, "num_inference_steps", None) is None:
        raise ValueError("init_noise_scale: set the scheduler up with make_timesteps first")
    base = float(scheduler.init_noise_sigma)
    vp_sigma_family = isinstance(
        scheduler, (DPMSolverMultistepScheduler, DPMSolverSinglestepScheduler, DEISMultistepScheduler)
    )
    sigmas = getattr(scheduler, "sigmas", None)
    if vp_sigma_family and base == 1.0 and sigmas is not None and len(sigmas):
        sigma_max = float(sigmas[getattr(scheduler, "begin_index", None) or 0])
        return sigma_max / (1.0 + sigma_max**2) ** 0.5
    return base


def needs_generator(scheduler: SchedulerMixin) -> bool:
    """Whether ``scheduler.step`` takes a ``generator`` (ancestral/SDE noise)."""
    return _accepts(scheduler.step, "generator")


def is_second_order(sampler_or_scheduler: SamplerInfo | SchedulerMixin | str) -> bool:
    """A1111's second-order flag for a sampler (prompt schedules count model calls), or for a
    scheduler whether it evaluates the model twice per step (``order`` 2)."""
    if isinstance(sampler_or_scheduler, (SamplerInfo, str)):
        return bool(_find_sampler(sampler_or_scheduler).options.get("second_order", False))
    return int(getattr(sampler_or_scheduler, "order", 1) or 1) > 1


def takes_ancestral_eta(sampler: SamplerInfo | str) -> bool:
    """Whether A1111's ancestral eta (request ``eta`` / setting eta_ancestral) applies to this
    sampler: pass it as ``build_scheduler(..., eta=)``. True for Euler a, DPM2 a, DPM++ 2S a,
    DPM++ SDE, DPM++ 2M SDE (+ Heun) and DPM++ 3M SDE; DDIM's eta goes to ``step`` instead."""
    info = _find_sampler(sampler)
    cls = _scheduler_class(info)
    pinned = "eta" in getattr(info.factory, "overrides", {})
    return _accepts(cls.__init__, "eta") and not pinned


def step_kwargs(
    scheduler: SchedulerMixin,
    generator: torch.Generator | list[torch.Generator] | None = None,
    eta: float | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``scheduler.step``: the generator(s) and ``eta`` where accepted."""
    kwargs: dict[str, Any] = {}
    if generator is not None and needs_generator(scheduler):
        kwargs["generator"] = generator
    if eta is not None and _accepts(scheduler.step, "eta"):
        kwargs["eta"] = float(eta)
    return kwargs
