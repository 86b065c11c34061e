"""Per-job orchestration shared by txt2img, hires and img2img.

``prepare`` resolves everything a job needs once (effective settings, model + VAE, sampler,
clip skip, seeds, styled prompts); ``batches`` yields the per-batch prompts/seeds; helpers build
the scheduled / composable conditioning, draw the noise, run our loop with progress and
interrupt wiring, decode (fp32 retry on NaN), and turn results into PIL images with infotext.
Saving lives in ``app.engine.outputs``.

Recipe for another job kind (img2img, see ``app.engine.txt2img`` for the txt2img one)::

    with manager.lock:
        plan = prepare(manager, params, settings, ctx, kind="img2img")
        outputs = JobOutputs(plan)
        try:
            for batch in batches(plan):
                init = encode_images(plan, images_for(batch))              # [B,4,h,w]
                conds = build_conds(plan, batch.cond_prompts, batch.negative_prompts,
                                    schedule_steps(plan, params.steps), width, height)
                rng = make_rng(plan, batch, init.shape[-2:]); noise = rng.first()
                sched = app.engine.rng.img2img_schedule(steps, denoise, fix_steps)
                result = run_sampler(plan, build_scheduler(plan, batch.seeds), noise, conds,
                                     steps_info(plan, sched.total_steps, sched.start_index),
                                     rng.torch_generators(), init_latents=init, pass_steps=sched.run_steps,
                                     inpainting=Inpainting(mask=..., unet_extra_channels=...))
                outputs.add_batch(batch, to_pil(decode(plan, result.latents)))
        finally:
            deactivate_extra_networks(plan)
        return outputs.finish()
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from app.engine.conditioning import (  # noqa: F401  (public names of the engine's processing API)
    EXTRA_NETWORK_HANDLERS,
    ExtraNetworkHandler,
    activate_extra_networks,
    build_conds,
    deactivate_extra_networks,
    register_extra_network,
    schedule_steps,
)
from app.engine.denoise import SampleResult, StepConds, StepsInfo, sample
from app.engine.outputs import infotext  # noqa: F401  (re-exported)
from app.engine.plan_sampling import (  # noqa: F401  (re-exported: proc.build_scheduler / proc.steps_info)
    build_scheduler,
    sampler_eta,
    sampler_infotext,
    sigma_options,
    steps_info,
)
from app.engine.vae_io import decode, encode_images, to_pil  # noqa: F401

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ settings view
_MODEL_KEYS = ("sd_model_checkpoint", "sd_vae")


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
    params: Any
    settings: EffectiveSettings
    ctx: Any  # JobContext or None
    model: Any  # ModelHandle
    encoder: Any
    sampler: Any
    schedule: Any
    clip_skip: int
    emphasis: str
    seeds: list[int]
    subseeds: list[int]
    all_prompts: list[str]
    all_negative_prompts: list[str]
    kind: str = "txt2img"
    manager: Any = None
    paths: Any = None  # app.paths.Paths (data dir for outputs, params.txt)
    extra: dict[str, Any] = field(default_factory=dict)  # extra_generation_params
    used_embeddings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    job_timestamp: str = ""
    active_networks: list[str] = field(default_factory=list)
    steps_offset: int = 0  # progress: steps already done in this batch (hires pass)
    steps_total: int = 0

    @property
    def device(self) -> torch.device:
        return self.model.loaded.pipe.unet.device if self.model.offload == "none" else _exec_device(self.model)

    def should_stop(self) -> bool:
        return self.ctx is not None and self.ctx.should_stop()

    @property
    def interrupted(self) -> bool:
        return self.ctx is not None and self.ctx.interrupted

    def warn(self, message: str) -> None:
        log.warning(message)
        self.warnings.append(message)


def _exec_device(model: Any) -> torch.device:
    pipe = model.loaded.pipe
    return getattr(pipe, "_execution_device", None) or torch.device("cpu")


def _style_prompts(params: Any, paths: Any, warn: Callable[[str], None]) -> tuple[str, str]:
    """Prompt and negative prompt with ``params.styles`` from styles.csv applied (spec §9.6)."""
    if not params.styles:
        return params.prompt, params.negative_prompt
    from app.styles import StyleDatabase

    files = getattr(paths, "styles_files", None) or ([paths.styles_file] if getattr(paths, "styles_file", None) else [])
    if not files:
        warn("styles requested but no styles file is configured; prompts used as given")
        return params.prompt, params.negative_prompt
    db = StyleDatabase(list(files))
    unknown = [name for name in params.styles if db.get(name) is None]
    if unknown:
        warn(f"unknown style(s) ignored: {', '.join(unknown)}")
    return (
        db.apply_styles_to_prompt(params.prompt, params.styles),
        db.apply_negative_styles_to_prompt(params.negative_prompt, params.styles),
    )


def prepare(manager: Any, params: Any, settings: Any, ctx: Any = None, kind: str = "txt2img") -> Plan:
    """Resolve model, VAE, sampler, clip skip, seeds and prompts for one job."""
    from app.engine import rng
    from app.engine.samplers import resolve_sampler
    from app.plugins import hooks
    from app.prompts.encode import PromptEncoder

    # 1. let extensions adjust the request, validate it and build the effective settings view
    params = hooks.adjust_params(params, kind)
    if params.steps < 1:
        raise ValueError(f"steps must be >= 1, got {params.steps}")
    if params.width < 8 or params.height < 8:  # like A1111, other sizes are floored to multiples of 8
        raise ValueError(f"width and height must be at least 8, got {params.width}x{params.height}")
    if params.batch_size < 1 or params.n_iter < 1:
        raise ValueError(f"batch size and batch count must be >= 1, got {params.batch_size}, {params.n_iter}")
    eff = EffectiveSettings(settings, params.override_settings)
    if ctx is not None:
        ctx.settings = eff  # previews etc. follow this job's overrides
    # 2. model and VAE (request fields win over settings / overrides)
    checkpoint = params.checkpoint or eff.overrides.get("sd_model_checkpoint", "")  # "" = the manager's setting
    model = manager.get(checkpoint, vae=params.vae or str(eff.get("sd_vae", "Automatic") or "Automatic"))
    encoder = (
        manager.encoder(model)
        if hasattr(manager, "encoder")
        else PromptEncoder.from_pipe(model.loaded.pipe, model.loaded.family, getattr(manager, "embeddings", None))
    )
    if hasattr(encoder, "comma_padding_backtrack"):  # setting "Prompt word wrap length limit" (per job)
        encoder.comma_padding_backtrack = int(eff.get("comma_padding_backtrack", 20))
    # 3. sampler, clip skip, emphasis
    sampler, schedule = resolve_sampler(params.sampler_name, params.scheduler or "Automatic")
    clip_skip = int(params.clip_skip or eff.get("CLIP_stop_at_last_layers", 1) or 1)
    # 4. seeds and prompts
    n = params.n_images
    seeds, subseeds = rng.all_seeds(params.seed.seed, params.seed.subseed, params.seed.subseed_strength, n)
    paths = getattr(ctx, "paths", None) or getattr(manager, "paths", None)
    style_warnings: list[str] = []
    prompt, negative = _style_prompts(params, paths, style_warnings.append)
    plan = Plan(
        params=params,
        settings=eff,
        ctx=ctx,
        model=model,
        encoder=encoder,
        sampler=sampler,
        schedule=schedule,
        clip_skip=clip_skip,
        emphasis=str(eff.get("emphasis", "Original")),
        seeds=seeds,
        subseeds=subseeds,
        all_prompts=[prompt] * n,
        all_negative_prompts=[negative] * n,
        kind=kind,
        manager=manager,
        paths=paths,
        warnings=style_warnings,
        job_timestamp=time.strftime("%Y%m%d%H%M%S"),
    )
    plan.extra.update(sampler_infotext(plan))
    hooks.job_started(plan)  # extensions' process()/process_batch(); may rewrite plan.all_prompts
    return plan


def vae_choice(plan: Plan) -> str:
    return plan.params.vae or str(plan.settings.get("sd_vae", "Automatic") or "Automatic")


@contextmanager
def using_model(plan: Plan, checkpoint: str) -> Iterator[Any]:
    """Run part of a job on another checkpoint (hires checkpoint); the job's model is active again after."""
    first, first_encoder = plan.model, plan.encoder
    other = plan.manager.get(checkpoint, vae=vae_choice(plan))
    if other is first:
        yield other
        return
    same_space = (
        bool(other.loaded.is_sdxl) == bool(first.loaded.is_sdxl)
        and other.loaded.pipe.unet.config.out_channels == first.loaded.pipe.unet.config.out_channels
    )
    if not same_space:
        plan.manager.activate(first, vae_choice(plan))
        raise ValueError(f"checkpoint {checkpoint!r} ({other.loaded.family}) cannot continue a {first.loaded.family} image")
    plan.model, plan.encoder = other, plan.manager.encoder(other)
    try:
        yield other
    finally:
        plan.model, plan.encoder = first, first_encoder
        plan.manager.activate(first, vae_choice(plan))


def batches(plan: Plan) -> Iterator[Batch]:
    """The job's batches (seeds ``[n*B, (n+1)*B)``); stops early when the job is interrupted."""
    size = plan.params.batch_size
    for n in range(plan.params.n_iter):
        if plan.interrupted:
            return
        if plan.ctx is not None:
            plan.ctx.set_textinfo(f"Batch {n + 1} of {plan.params.n_iter}")
            plan.ctx.set_job_no(n)
        sl = slice(n * size, (n + 1) * size)
        batch = Batch(n, plan.all_prompts[sl], plan.all_negative_prompts[sl], plan.seeds[sl], plan.subseeds[sl])
        batch.cond_prompts = activate_extra_networks(plan, batch.prompts)
        yield batch


# ------------------------------------------------------------------------------ sampling
def make_rng(plan: Plan, batch: Batch, latent_hw: tuple[int, int]):
    """Per-image RNG for a batch: ``first()`` is the start noise, generators feed ancestral steps."""
    from app.engine.rng import ImageRNG

    channels = int(plan.model.loaded.pipe.unet.config.out_channels)
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
    steps_info: StepsInfo,  # noqa: F811  (the parameter shadows the re-exported helper, as before the split)
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
    from app.engine.deepcache import deepcache_for
    from app.plugins import hooks

    unet = plan.model.loaded.pipe.unet
    model = deepcache_for(unet, plan.settings)  # setting deepcache_enabled (approximate, off by default)
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

    kwargs.setdefault("step_options", sigma_options(plan, scheduler))
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
            eta=sampler_eta(plan, sampler),
            **kwargs,
        )


#: Sampler settings A1111 passes to Euler/Heun-style steps → their infotext keys.


def preview_image(plan: Plan, latents: torch.Tensor):
    from app.engine.preview import latent_preview

    try:
        return latent_preview(latents, plan)
    except Exception as exc:  # a preview must never break the job
        log.debug("preview failed: %s", exc)
        return None
