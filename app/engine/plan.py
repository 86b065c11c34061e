"""The plan of one job: everything ``prepare`` resolved once, read by every step after it.

``Plan`` is the engine's hub type; it lives here, apart from the code that builds it
(``app.engine.prepare``) and the code that reads it (conditioning, sampling set-up, VAE, outputs),
so every one of them imports it from below and none imports another back.
``EffectiveSettings`` is the job's read-only settings view (``override_settings`` over the global
settings); ``JobControl`` is what the engine uses of the job context (progress, previews, stop).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from app.families import Family, family_of

if TYPE_CHECKING:
    from app.engine.sampling.schedules import ScheduleType
    from app.engine.sampling.table import SamplerInfo
    from app.models.handle import ModelHandle
    from app.params import GenerationParams
    from app.paths import Paths
    from app.prompts.encode import PromptEncoder

log = logging.getLogger(__name__)

_MODEL_KEYS = ("sd_model_checkpoint", "sd_vae")


# ------------------------------------------------------------------------------ settings view
class EffectiveSettings:
    """Read-only view: ``override_settings`` of one job over the global settings (never mutated)."""

    def __init__(self, base: Any, overrides: dict[str, Any] | None = None):
        self.base = base
        self.overrides: dict[str, Any] = {}
        for key, value in (overrides or {}).items():
            if key in _MODEL_KEYS:  # names/aliases: the model manager resolves and reports them
                self.overrides[key] = value
                continue
            if base is not None and hasattr(base, "validate"):
                try:
                    value = base.validate(key, value)
                except KeyError:
                    log.warning("override_settings: unknown setting %r ignored", key)
                    continue
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"override_settings[{key!r}]: {exc}") from exc
            self.overrides[key] = value

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.overrides:
            return self.overrides[key]
        if self.base is None:
            return default
        value = self.base.get(key, default) if hasattr(self.base, "get") else default
        return default if value is None else value

    def __getitem__(self, key: str) -> Any:
        if key in self.overrides:
            return self.overrides[key]
        return self.base[key]

    def __contains__(self, key: object) -> bool:
        return key in self.overrides or (self.base is not None and key in self.base)


# ------------------------------------------------------------------------------ job context
class JobControl(Protocol):
    """What the engine uses of a job context (``app.jobs.job.JobContext`` or a sub-job's view of it)."""

    settings: Any
    paths: Any

    @property
    def interrupted(self) -> bool: ...
    @property
    def skipped(self) -> bool: ...
    def should_stop(self) -> bool: ...
    def clear_skip(self) -> None: ...
    def begin(self, job_count: int, sampling_steps: int = 0, textinfo: str = "") -> None: ...
    def set_job_no(self, job_no: int) -> None: ...
    def set_textinfo(self, text: str) -> None: ...
    def step(self, step: int, steps: int) -> bool: ...
    def set_preview(self, image: Any) -> None: ...


# ------------------------------------------------------------------------------ the plan
@dataclass
class Batch:
    index: int
    prompts: list[str]  # as in the infotext (styles applied, extra-network tags kept)
    negative_prompts: list[str]
    seeds: list[int]
    subseeds: list[int]
    cond_prompts: list[str] = field(default_factory=list)  # extra-network tags removed


@dataclass
class Plan:
    params: GenerationParams
    settings: EffectiveSettings
    ctx: JobControl | None
    model: ModelHandle
    encoder: PromptEncoder
    sampler: SamplerInfo
    schedule: ScheduleType
    clip_skip: int
    emphasis: str
    seeds: list[int]
    subseeds: list[int]
    all_prompts: list[str]
    all_negative_prompts: list[str]
    kind: str = "txt2img"
    manager: Any = None  # app.models.manager.ModelManager (tests pass small stand-ins)
    paths: Paths | None = None  # data dir for outputs, params.txt
    extra: dict[str, Any] = field(default_factory=dict)  # extra_generation_params
    used_embeddings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    job_timestamp: str = ""
    active_networks: list[str] = field(default_factory=list)
    steps_offset: int = 0  # progress: steps already done in this batch (hires pass)
    steps_total: int = 0

    @property
    def pipe(self) -> Any:
        """The diffusers pipeline of the job's current model (unet, vae, text encoders)."""
        return self.model.loaded.pipe

    @property
    def family(self) -> Family:
        """The model family of the job's current model (latent format, denoiser, prompt encoder)."""
        return family_of(self.model.loaded)

    @property
    def denoiser(self) -> Any:
        """The job's network with the UNet call signature (the UNet itself for the SD families)."""
        return self.family.denoiser(self.pipe)

    @property
    def device(self) -> torch.device:
        if self.model.offload == "none":
            unet_device: torch.device = self.denoiser.device
            return unet_device
        execution_device: torch.device | None = getattr(self.pipe, "_execution_device", None)
        return execution_device or torch.device("cpu")

    def should_stop(self) -> bool:
        return self.ctx is not None and self.ctx.should_stop()

    @property
    def interrupted(self) -> bool:
        return self.ctx is not None and self.ctx.interrupted

    def warn(self, message: str) -> None:
        log.warning(message)
        self.warnings.append(message)
