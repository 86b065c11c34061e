"""Per-job preparation shared by every job mode: ``prepare`` resolves what a job needs once
(effective settings, model + VAE, sampler, clip skip, seeds, styled prompts) into a ``Plan``;
``batches`` yields the per-batch prompts/seeds; ``using_model`` runs part of a job on another checkpoint.

Recipe for a job mode (see ``app.engine.modes.txt2img`` and ``app.engine.modes.img2img``)::

    with manager.lock:
        plan = prepare(manager, params, settings, ctx, kind="img2img")
        ctx.settings = plan.settings                                        # previews follow the job's overrides
        outputs = JobOutputs(plan)                                          # app.engine.outputs
        try:
            for batch in batches(plan):
                init = encode_images(plan, images_for(batch))                # app.engine.vae_io
                conds = build_conds(plan, batch.cond_prompts, batch.negative_prompts,
                                    schedule_steps(plan, params.steps), width, height)  # conditioning
                rng = make_rng(plan, batch, init.shape[-2:]); noise = rng.first()       # sampling.setup
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

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from app.engine import rng
from app.engine.conditioning import activate_extra_networks, extra_networks_follow_model
from app.engine.plan import Batch, EffectiveSettings, Plan
from app.engine.sampling.schedulers import resolve_sampler
from app.engine.sampling.setup import sampler_infotext
from app.families import Family, family_of
from app.models.memory_check import check_plan_job
from app.plugins import hooks
from app.prompts.styles import StyleDatabase


def _style_prompts(params: Any, paths: Any, warn: Callable[[str], None]) -> tuple[str, str]:
    """Prompt and negative prompt with ``params.styles`` from styles.csv applied (spec §9.6)."""
    if not params.styles:
        return params.prompt, params.negative_prompt
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
    """Resolve model, VAE, sampler, clip skip, seeds and prompts for one job.

    Returns what it computes and changes nothing it is given: the effective settings (``settings`` with the
    request's ``override_settings``) are ``plan.settings``; the job mode hands them to its job context."""
    # 1. let extensions adjust the request, validate it and build the effective settings view
    params = hooks.adjust_params(params, kind, hooks.registry_of(manager))
    if params.steps < 1:
        raise ValueError(f"steps must be >= 1, got {params.steps}")
    if params.width < 8 or params.height < 8:  # like A1111, other sizes are floored to multiples of 8
        raise ValueError(f"width and height must be at least 8, got {params.width}x{params.height}")
    if params.batch_size < 1 or params.n_iter < 1:
        raise ValueError(f"batch size and batch count must be >= 1, got {params.batch_size}, {params.n_iter}")
    eff = EffectiveSettings(settings, params.override_settings)  # → plan.settings (the caller's job context may follow it)
    # 2. model and VAE (request fields win over settings / overrides)
    checkpoint = params.checkpoint or eff.overrides.get("sd_model_checkpoint", "")  # "" = the manager's setting
    model = manager.get(checkpoint, vae=params.vae or str(eff.get("sd_vae", "Automatic") or "Automatic"))
    family = family_of(model.loaded)
    size_warnings: list[str] = []
    params = _fit_size(params, family, size_warnings.append)
    check_plan_job(manager, model, family, params, eff)  # refuse a size that cannot fit before allocating
    encoder = (
        manager.encoder(model)
        if hasattr(manager, "encoder")
        else family.prompt_encoder(model.loaded.pipe, model.loaded.family, getattr(manager, "embeddings", None))
    )
    if hasattr(encoder, "comma_padding_backtrack"):  # setting "Prompt word wrap length limit" (per job)
        encoder.comma_padding_backtrack = int(eff.get("comma_padding_backtrack", 20))
    # 3. sampler, clip skip, emphasis
    wanted_schedule = params.scheduler or "Automatic"
    if wanted_schedule == "Automatic" and family.defaults.schedule != "Automatic":
        # a flow family's "Automatic" is its own schedule (Simple): the samplers' SD defaults (Karras for
        # DPM2/Heun) start too far out on a flow model's noise scale
        wanted_schedule = family.defaults.schedule
    sampler, schedule = resolve_sampler(params.sampler_name, wanted_schedule)
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
        warnings=size_warnings + style_warnings,
        job_timestamp=time.strftime("%Y%m%d%H%M%S"),
    )
    plan.extra.update(sampler_infotext(plan))
    hooks.job_started(plan)  # extensions' process()/process_batch(); may rewrite plan.all_prompts
    return plan


def _fit_size(params: Any, family: Family, warn: Callable[[str], None]) -> Any:
    """Sizes floored to the family's multiple (A1111 floors to 8; a patched latent needs whole patches)."""
    multiple = family.latent.multiple
    width = max(multiple, params.width // multiple * multiple)
    height = max(multiple, params.height // multiple * multiple)
    if (width, height) == (params.width, params.height) or multiple <= 8:
        return params
    warn(f"{family.label} needs sizes in multiples of {multiple}: {params.width}x{params.height} became {width}x{height}")
    return dataclasses.replace(params, width=width, height=height)


def vae_choice(plan: Plan) -> str:
    return plan.params.vae or str(plan.settings.get("sd_vae", "Automatic") or "Automatic")


@contextmanager
def using_model(plan: Plan, checkpoint: str) -> Iterator[Any]:
    """Run part of a job on another checkpoint (hires checkpoint); the job's model is active again after.

    The job's extra networks (``<lora:...>``) follow onto it and back, as they do for the refiner."""
    first, first_encoder = plan.model, plan.encoder
    other = plan.manager.get(checkpoint, vae=vae_choice(plan))
    if other is first:
        yield other
        return
    same_space = family_of(other.loaded).id == family_of(first.loaded).id or (
        family_of(other.loaded).latent == family_of(first.loaded).latent
        and bool(other.loaded.is_sdxl) == bool(first.loaded.is_sdxl)
    )
    if not same_space:
        plan.manager.activate(first, vae_choice(plan))
        raise ValueError(f"checkpoint {checkpoint!r} ({other.loaded.family}) cannot continue a {first.loaded.family} image")
    plan.model, plan.encoder = other, plan.manager.encoder(other)
    try:
        extra_networks_follow_model(plan)
        yield other
    finally:
        plan.model, plan.encoder = first, first_encoder
        plan.manager.activate(first, vae_choice(plan))
        extra_networks_follow_model(plan)


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
