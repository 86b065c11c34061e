"""txt2img: seeds → conds → noise → loop → (hires pass) → decode → save → infotext.

An inpainting model (SD 9-channel, FLUX.1 Fill) gets the whole picture masked with a grey masked image, as A1111
(``app.engine.modes.inpaint_model.whole_picture``)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from app.engine.conditioning import build_conds, deactivate_extra_networks, schedule_steps
from app.engine.denoise import StepConds, seamless_tiling
from app.engine.image.upscalers import registry_of
from app.engine.modes import hires as hr_mod
from app.engine.modes.inpaint_model import whole_picture
from app.engine.outputs import JobOutputs
from app.engine.plan import Batch, Plan
from app.engine.prepare import batches, prepare, using_model
from app.engine.refiner import RefinerSwitch, refiner_pass
from app.engine.sampling.schedulers import effective_schedule, resolve_sampler
from app.engine.sampling.setup import build_scheduler, make_rng, run_sampler, steps_info
from app.engine.vae_io import decode, encode_images, to_pil
from app.jobs.job import JobResult
from app.prompts.syntax import parse_extra_networks

log = logging.getLogger(__name__)


def run_txt2img(manager: Any, params: Any, settings: Any, job_ctx: Any = None) -> JobResult:
    """Generate ``n_iter`` batches of ``batch_size`` images; returns what exists when interrupted."""
    if params.img2img is not None:
        raise ValueError("txt2img got img2img params; submit it as kind='img2img'")
    with manager.lock:
        plan = prepare(manager, params, settings, job_ctx, kind="txt2img")
        if job_ctx is not None:
            job_ctx.settings = plan.settings  # previews etc. follow this job's overrides
        try:
            return _run(plan)
        finally:
            deactivate_extra_networks(plan)


def _run(plan: Plan) -> JobResult:
    params = plan.params
    pipe = plan.pipe
    hires = _HiresPlan(plan) if params.hires.enabled else None
    plan.steps_total = params.steps + (hires.run_steps if hires else 0)
    if plan.ctx is not None:
        plan.ctx.begin(job_count=params.n_iter, sampling_steps=plan.steps_total)
    outputs = JobOutputs(plan)
    if hires is not None:
        plan.extra.update(hires.infotext_extra())
    tiling = bool(params.tiling or plan.settings.get("tiling", False))  # a setting in A1111 1.10, a field in the API
    if tiling and not params.tiling:
        plan.extra["Tiling"] = "True"
    if tiling and not plan.family.seamless_tiling:
        plan.warn(f"Tiling is not available for {plan.family.label} models; ignored")
        tiling = False
    with seamless_tiling(getattr(pipe, "unet", None), pipe.vae, enabled=tiling):
        for batch in batches(plan):
            # the refiner (when it takes over in this pass) stays active until the pass's images are decoded
            with refiner_pass(plan, False, lambda batch=batch: _first_conds(plan, batch)) as switch:
                latents, stopped = _first_pass(plan, batch, switch)
                if hires is None or stopped:
                    decoded = decode(plan, latents)
                elif plan.settings.get("save_images_before_highres_fix", False):
                    outputs.save_intermediate(batch, to_pil(decode(plan, latents)), "-before-highres-fix")
            if hires is not None and not stopped:
                decoded = hires.run(batch, latents)
            if plan.ctx is not None and plan.ctx.skipped:
                plan.ctx.clear_skip()
            outputs.add_batch(batch, to_pil(decoded))
    return outputs.finish()


def _first_conds(plan: Plan, batch: Batch) -> StepConds:
    """The first pass's conditioning with the plan's current encoder (the job's model, or the refiner's)."""
    params = plan.params
    return build_conds(
        plan, batch.cond_prompts, batch.negative_prompts, schedule_steps(plan, params.steps), params.width, params.height
    )


def _first_pass(plan: Plan, batch: Batch, switch: RefinerSwitch | None = None) -> tuple[torch.Tensor, bool]:
    params = plan.params
    down = plan.family.latent.downscale
    latent_hw = (params.height // down, params.width // down)
    conds = _first_conds(plan, batch)
    rng = make_rng(plan, batch, latent_hw)
    noise = rng.first()
    plan.steps_offset = 0
    result = run_sampler(
        plan,
        build_scheduler(plan, batch.seeds),
        noise,
        conds,
        steps_info(plan, params.steps),
        rng.torch_generators(),
        pass_steps=params.steps,
        inpainting=whole_picture(plan, noise.shape[0], params.width, params.height, plan.device),
        switch=switch,
    )
    return result.latents, result.stopped


class _HiresPlan:
    """Second pass of hires fix: upscale (latent or image), then img2img for exactly hires steps."""

    def __init__(self, plan: Plan):
        self.plan = plan
        hr = plan.params.hires
        self.hr = hr
        self.target = hr_mod.hires_target(plan.params.width, plan.params.height, hr.scale, hr.resize_x, hr.resize_y)
        multiple = plan.family.latent.multiple
        if multiple > 8 and (self.target.width % multiple or self.target.height % multiple):
            # the family's latents need whole patches: floor the hires size to its multiple
            self.target = hr_mod.HiresTarget(
                max(multiple, self.target.width // multiple * multiple),
                max(multiple, self.target.height // multiple * multiple),
            )
        if not hr_mod.is_latent_mode(hr.upscaler):
            names = hr_mod.available_upscalers(registry_of(plan.manager))
            if hr.upscaler not in names:
                raise ValueError(f"hires upscaler {hr.upscaler!r} not found; available: {', '.join(names)}")
        self.checkpoint = hr.checkpoint if hr.checkpoint and hr.checkpoint != "Use same checkpoint" else ""
        self.total, self.start, self.run_steps = hr_mod.hires_steps(plan.params.steps, hr.steps, hr.denoising_strength)
        same_sampler = not hr.sampler_name or hr.sampler_name == "Use same sampler"
        same_sched = not hr.scheduler or hr.scheduler == "Use same scheduler"
        if same_sampler and same_sched:
            self.sampler, self.schedule = plan.sampler, plan.schedule
        else:
            self.sampler, self.schedule = resolve_sampler(
                plan.params.sampler_name if same_sampler else hr.sampler_name,
                plan.params.scheduler if same_sched else hr.scheduler,
            )

    def infotext_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}

        hr = self.hr
        if hr.scheduler and hr.scheduler != "Use same scheduler":
            extra["Hires schedule type"] = effective_schedule(self.sampler, self.schedule)
        return extra

    def _prompts(self, batch: Batch) -> tuple[list[str], list[str]]:
        prompts = [parse_extra_networks(self.hr.prompt)[0]] * len(batch.prompts) if self.hr.prompt else batch.cond_prompts
        negatives = [self.hr.negative_prompt] * len(batch.prompts) if self.hr.negative_prompt else batch.negative_prompts
        return prompts, negatives

    def _upscaled_latents(self, latents: torch.Tensor) -> torch.Tensor:
        t = self.target
        if hr_mod.is_latent_mode(self.hr.upscaler):
            up = hr_mod.upscale_latents(latents, self.hr.upscaler, t.width, t.height)
        else:
            images = to_pil(decode(self.plan, latents))
            images = [
                hr_mod.upscale_image(im, self.hr.upscaler, t.width, t.height, registry_of(self.plan.manager))
                for im in images
            ]
            up = encode_images(self.plan, images).to(latents.device)
        return hr_mod.crop_latents(up, t)

    def run(self, batch: Batch, latents: torch.Tensor) -> torch.Tensor:
        """Upscale, run the second pass (on the hires checkpoint when set) and decode."""
        plan = self.plan
        init = self._upscaled_latents(latents)
        if not self.checkpoint:
            return self._second_pass(batch, init)
        with using_model(plan, self.checkpoint):
            return self._second_pass(batch, init)

    def _conds(self, batch: Batch, width: int, height: int) -> StepConds:
        plan = self.plan
        prompts, negatives = self._prompts(batch)
        hires_steps = schedule_steps(plan, self.hr.steps or plan.params.steps, self.sampler)
        return build_conds(
            plan, prompts, negatives, schedule_steps(plan, plan.params.steps), width, height, hires_steps=hires_steps
        )

    def _second_pass(self, batch: Batch, init: torch.Tensor) -> torch.Tensor:
        """The second pass, decoded (by the refiner's VAE when the refiner took over, as A1111)."""
        plan = self.plan
        if plan.ctx is not None:
            plan.ctx.set_textinfo(f"Hires fix: batch {batch.index + 1} of {plan.params.n_iter}")
        if self.hr.denoising_strength <= 0:
            return decode(plan, init)
        width, height = init.shape[-1] * 8, init.shape[-2] * 8
        with refiner_pass(plan, True, lambda: self._conds(batch, width, height)) as switch:
            return decode(plan, self._sample(batch, init, self._conds(batch, width, height), switch))

    def _sample(self, batch: Batch, init: torch.Tensor, conds: StepConds, switch: RefinerSwitch | None) -> torch.Tensor:
        plan = self.plan
        width, height = init.shape[-1] * 8, init.shape[-2] * 8
        rng = make_rng(plan, batch, (init.shape[-2], init.shape[-1]))
        noise = rng.first()
        plan.steps_offset = plan.params.steps
        scheduler = build_scheduler(plan, batch.seeds, self.sampler, self.schedule)
        result = run_sampler(
            plan,
            scheduler,
            noise,
            conds,
            steps_info(plan, self.total, self.start, self.sampler, self.schedule),
            rng.torch_generators(),
            init_latents=init,
            sampler=self.sampler,
            pass_steps=self.run_steps,
            inpainting=whole_picture(plan, noise.shape[0], width, height, plan.device),
            switch=switch,
        )
        return result.latents
