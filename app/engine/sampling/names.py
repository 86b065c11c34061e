"""The A1111 sampler and schedule-type names: a pure table (no torch, no diffusers).

What the UI and the API need to list and validate sampler names lives here, so they do it without
loading torch: names, aliases and ids (case-insensitive), A1111's options, each sampler's default
schedule type and the schedule types it can run, old combined names (``DPM++ 2M Karras``), and the
``/sdapi/v1/samplers`` and ``/sdapi/v1/schedulers`` tables. Which diffusers scheduler class runs a
sampler is bound by id in :mod:`app.engine.sampling.table`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from app.engine.sampling.schedules import SCHEDULE_TYPES, ScheduleType

__all__ = [
    "SAMPLER_NAMES",
    "SCHEDULE_TYPES",
    "SamplerName",
    "UnknownSamplerError",
    "UnknownScheduleError",
    "UnsupportedScheduleError",
    "api_samplers",
    "api_schedulers",
    "find_sampler_name",
    "find_schedule",
    "resolve_names",
    "sampler_labels",
    "schedule_labels",
]


class UnknownSamplerError(ValueError):
    """An unknown sampler name; the message lists the valid names."""


class UnknownScheduleError(ValueError):
    """An unknown schedule type; the message lists the valid labels."""


class UnsupportedScheduleError(ValueError):
    """A schedule type this sampler's diffusers scheduler cannot express."""


class SamplerLike(Protocol):
    """A sampler entry: this module's ``SamplerName`` or the engine's ``SamplerInfo``."""

    id: str
    name: str
    default_schedule: str | None


@dataclass(frozen=True)
class SamplerName:
    """One sampler as the UI and API know it (A1111 name, aliases, options, schedule types)."""

    id: str
    name: str
    aliases: tuple[str, ...]
    default_schedule: str | None  # schedule id "Automatic" resolves to; None = the model's own (uniform)
    options: Mapping[str, Any]
    kind: str  # "sigmas" | "flags" | "timesteps" (how app.engine.sampling.schedulers drives it)
    discard_penultimate: bool = False
    exact: bool = True  # matches A1111's sampler math and sigma schedule
    note: str = ""
    extra: bool = False  # not an A1111 sampler (appended after A1111's list)
    schedules: tuple[str, ...] | None = None  # ids of the schedule types it can run; None = all

    def names(self) -> tuple[str, ...]:
        return (self.name, self.id, *self.aliases)


def _n(
    id_: str, name: str, aliases: tuple[str, ...], default: str | None, options: dict[str, Any], kind: str, **kw: Any
) -> SamplerName:
    return SamplerName(id_, name, aliases, default, options, kind, **kw)


#: DEIS takes diffusers' own schedules only (its ``use_*_sigmas`` flags and timestep spacings);
#: tests/engine/test_samplers.py checks this against the scheduler class.
_DEIS_SCHEDULES = (
    "automatic",
    "uniform",
    "karras",
    "exponential",
    "polyexponential",
    "sgm_uniform",
    "simple",
    "normal",
    "ddim",
    "beta",
)

#: A1111's samplers in UI/API order, then the extras diffusers offers.
SAMPLER_NAMES: tuple[SamplerName, ...] = (
    _n(
        "dpmpp_2m",
        "DPM++ 2M",
        ("k_dpmpp_2m",),
        "karras",
        {"scheduler": "karras"},
        "sigmas",
        note="exact with init_noise_scale() (diffusers starts VP noise at 1.0, A1111 at sigma_max)",
    ),
    _n(
        "dpmpp_sde",
        "DPM++ SDE",
        ("k_dpmpp_sde",),
        "karras",
        {"scheduler": "karras", "second_order": True, "brownian_noise": True},
        "sigmas",
        note="our scheduler (app.engine.sampling.kdiffusion.samplers): k-diffusion's DPM++ SDE step, Brownian noise after set_noise_seeds",
    ),
    _n(
        "dpmpp_2m_sde",
        "DPM++ 2M SDE",
        ("k_dpmpp_2m_sde",),
        "exponential",
        {"scheduler": "exponential", "brownian_noise": True},
        "sigmas",
        note="our scheduler (app.engine.sampling.kdiffusion.samplers): k-diffusion's 2M SDE (midpoint) step, Brownian noise after set_noise_seeds",
    ),
    _n(
        "dpmpp_2m_sde_heun",
        "DPM++ 2M SDE Heun",
        ("k_dpmpp_2m_sde_heun",),
        "exponential",
        {"scheduler": "exponential", "brownian_noise": True, "solver_type": "heun"},
        "sigmas",
        note="our scheduler (app.engine.sampling.kdiffusion.samplers): k-diffusion's 2M SDE (heun) step, Brownian noise after set_noise_seeds",
    ),
    _n(
        "dpmpp_2s_a",
        "DPM++ 2S a",
        ("k_dpmpp_2s_a",),
        "karras",
        {"scheduler": "karras", "uses_ensd": True, "second_order": True},
        "sigmas",
        note="our scheduler (app.engine.sampling.kdiffusion.samplers): k-diffusion's 2S ancestral step; eta via build_scheduler(eta=)",
    ),
    _n(
        "dpmpp_3m_sde",
        "DPM++ 3M SDE",
        ("k_dpmpp_3m_sde",),
        "exponential",
        {"scheduler": "exponential", "discard_next_to_last_sigma": True, "brownian_noise": True},
        "sigmas",
        discard_penultimate=True,
        note="our scheduler (app.engine.sampling.kdiffusion.samplers): k-diffusion's 3M SDE step, Brownian noise after set_noise_seeds",
    ),
    _n("euler_a", "Euler a", ("k_euler_a", "k_euler_ancestral"), None, {"uses_ensd": True}, "sigmas"),
    _n("euler", "Euler", ("k_euler",), None, {}, "sigmas"),
    _n("lms", "LMS", ("k_lms",), None, {}, "sigmas"),
    _n(
        "heun",
        "Heun",
        ("k_heun",),
        None,
        {"second_order": True},
        "sigmas",
        note="our scheduler (app.engine.sampling.kdiffusion.samplers): k-diffusion's Heun step (diffusers' Heun cannot take explicit sigmas)",
    ),
    _n(
        "dpm2",
        "DPM2",
        ("k_dpm_2",),
        "karras",
        {"scheduler": "karras", "discard_next_to_last_sigma": True, "second_order": True},
        "sigmas",
        discard_penultimate=True,
        note="our scheduler (app.engine.sampling.kdiffusion.samplers): k-diffusion's DPM-Solver-2 step",
    ),
    _n(
        "dpm2_a",
        "DPM2 a",
        ("k_dpm_2_a",),
        "karras",
        {"scheduler": "karras", "discard_next_to_last_sigma": True, "uses_ensd": True, "second_order": True},
        "sigmas",
        discard_penultimate=True,
        note="our scheduler (app.engine.sampling.kdiffusion.samplers): k-diffusion's DPM-Solver-2 ancestral step; eta via build_scheduler(eta=)",
    ),
    _n(
        "dpm_fast",
        "DPM fast",
        ("k_dpm_fast",),
        None,
        {"uses_ensd": True},
        "sigmas",
        note="our scheduler (app.engine.sampling.kdiffusion.dpm_fast): fixed-step DPM-Solver over the sigma range; ends at sigma_min",
    ),
    _n(
        "restart",
        "Restart",
        ("restart",),
        "karras",
        {"scheduler": "karras", "second_order": True},
        "sigmas",
        note="our scheduler (app.engine.sampling.kdiffusion.restart): A1111's restart plan of Heun steps",
    ),
    _n(
        "ddim",
        "DDIM",
        ("ddim",),
        None,
        {"default_eta_is_0": True, "uses_ensd": True},
        "timesteps",
        note="A1111 grid clip(range(0, 1000, 1000//n) + 1): n not dividing 1000 gives extra steps",
    ),
    _n("plms", "PLMS", ("plms",), None, {}, "timesteps"),
    _n(
        "unipc",
        "UniPC",
        ("unipc",),
        None,
        {},
        "timesteps",
        exact=False,
        note="A1111's time-uniform grid, bh1, order from the setting uni_pc_order (3); the solver is diffusers' UniPC port (not checked against A1111's)",
    ),
    _n(
        "lcm",
        "LCM",
        ("k_lcm",),
        None,
        {},
        "sigmas",
        note="our scheduler (app.engine.sampling.kdiffusion.samplers): A1111's LCM denoiser on the 50-step origin grid",
    ),
    _n(
        "res_multistep",
        "res_multistep",
        ("k_res_multistep",),
        None,
        {},
        "sigmas",
        note="our scheduler (app.engine.sampling.kdiffusion.res_multistep): ComfyUI's RES 2nd-order multistep solver",
        extra=True,
    ),
    _n(
        "deis",
        "DEIS",
        ("deis",),
        None,
        {},
        "flags",
        exact=False,
        note="not an A1111 sampler",
        extra=True,
        schedules=_DEIS_SCHEDULES,
    ),
    _n(
        "tcd",
        "TCD",
        ("tcd",),
        None,
        {"uses_ensd": True},
        "timesteps",
        exact=False,
        note="not an A1111 sampler",
        extra=True,
    ),
)

_SAMPLER_INDEX: dict[str, SamplerName] = {}
for _info in SAMPLER_NAMES:
    for _name in _info.names():
        _SAMPLER_INDEX.setdefault(_name.lower(), _info)

_SCHEDULE_INDEX: dict[str, ScheduleType] = {}
for _sch in SCHEDULE_TYPES:
    for _name in _sch.names():
        _SCHEDULE_INDEX.setdefault(_name.lower(), _sch)

_AUTOMATIC = SCHEDULE_TYPES[0]
_BY_ID = {s.id: s for s in SCHEDULE_TYPES}


# ---------------------------------------------------------------- lookup
def sampler_labels() -> list[str]:
    """Sampler names in UI order (the sampler dropdowns)."""
    return [s.name for s in SAMPLER_NAMES]


def schedule_labels() -> list[str]:
    """Schedule-type labels in UI order (the schedule-type dropdowns)."""
    return [s.label for s in SCHEDULE_TYPES]


def find_schedule(name: str | ScheduleType | None) -> ScheduleType:
    """A schedule type by label, id or alias (case-insensitive); empty → Automatic."""
    if isinstance(name, ScheduleType):
        return name
    if not name or not str(name).strip():
        return _AUTOMATIC
    found = _SCHEDULE_INDEX.get(str(name).strip().lower())
    if found is None:
        raise UnknownScheduleError(f"unknown schedule type {name!r}; valid: {', '.join(schedule_labels())}")
    return found


def find_sampler_name(name: str) -> SamplerName:
    """A sampler by name, id or alias (case-insensitive); :class:`UnknownSamplerError` lists the valid names."""
    found = _SAMPLER_INDEX.get(str(name).strip().lower())
    if found is None:
        raise UnknownSamplerError(f"unknown sampler {name!r}; valid: {', '.join(sampler_labels())}")
    return found


def supported_schedule_ids(sampler: SamplerName) -> tuple[str, ...]:
    """Ids of the schedule types *sampler* can run (timestep samplers ignore the choice)."""
    return sampler.schedules if sampler.schedules is not None else tuple(s.id for s in SCHEDULE_TYPES)


def resolve_names(
    name: str | SamplerLike | None,
    scheduler: str | ScheduleType | None = "Automatic",
    fallback: bool = False,
    supported: Callable[[Any], tuple[str, ...]] = supported_schedule_ids,
) -> tuple[Any, ScheduleType]:
    """(sampler, schedule) from A1111-style names.

    Accepts names, aliases and ids case-insensitively, and old combined names (``DPM++ 2M Karras``,
    ``Euler a Karras``): a trailing schedule label/id/alias overrides ``scheduler``. A schedule equal
    to the sampler's default becomes Automatic (as A1111 does). Unknown names raise
    :class:`UnknownSamplerError`; with ``fallback=True`` (API compatibility) they become the first
    sampler / Automatic with a warning, like A1111. A sampler entry given instead of a name is kept;
    ``supported(sampler)`` says which schedule ids it can run.
    """
    entry = name if name is not None and not isinstance(name, str) else None
    text = entry.name if entry is not None else str(name or "").strip()
    if not text:
        text = SAMPLER_NAMES[0].name
    # 1. the schedule: explicit argument, or a suffix of an old combined name
    try:
        schedule = find_schedule(scheduler)
    except UnknownScheduleError:
        if not fallback:
            raise
        warnings.warn(f"unknown schedule type {scheduler!r}; using Automatic", stacklevel=3)
        schedule = _AUTOMATIC
    if entry is None and text.lower() not in _SAMPLER_INDEX:
        for sch in SCHEDULE_TYPES:
            suffix = next((opt for opt in sch.names() if text.lower().endswith(" " + opt.lower())), None)
            if suffix is not None:
                text, schedule = text[: -len(suffix) - 1].strip(), sch
                break
    # 2. the sampler
    try:
        sampler = entry if entry is not None else find_sampler_name(text)
    except UnknownSamplerError:
        if not fallback:
            raise
        warnings.warn(f"unknown sampler {name!r}; using {SAMPLER_NAMES[0].name}", stacklevel=3)
        sampler = SAMPLER_NAMES[0]
    # 3. an explicit default schedule is stored as Automatic
    if sampler.default_schedule is not None and schedule.id == sampler.default_schedule:
        schedule = _AUTOMATIC
    allowed = supported(sampler)
    if schedule.id not in allowed:
        if not fallback:
            raise UnsupportedScheduleError(
                f"sampler {sampler.name!r} cannot use schedule type {schedule.label!r}; "
                f"supported: {', '.join(_BY_ID[s].label for s in allowed)}"
            )
        warnings.warn(f"{sampler.name} cannot use {schedule.label}; using Automatic", stacklevel=3)
        schedule = _AUTOMATIC
    return sampler, schedule


# ---------------------------------------------------------------- API tables
def api_samplers() -> list[dict[str, Any]]:
    """``GET /sdapi/v1/samplers``: ``[{name, aliases, options}]`` (option values as strings)."""
    return [
        {"name": s.name, "aliases": list(s.aliases), "options": {k: str(v) for k, v in s.options.items()}}
        for s in SAMPLER_NAMES
    ]


def api_schedulers() -> list[dict[str, Any]]:
    """``GET /sdapi/v1/schedulers``: ``[{name, label, aliases, default_rho, need_inner_model}]``."""
    return [
        {
            "name": s.id,
            "label": s.label,
            "aliases": list(s.aliases) or None,
            "default_rho": s.default_rho,
            "need_inner_model": s.need_inner_model,
        }
        for s in SCHEDULE_TYPES
    ]
