"""img2img and inpaint: init image → VAE latents → noised to the start step → our loop → overlay.

Reuses the job preparation (``app.engine.prepare``: plan, seeds, prompts), conditioning, sampler
set-up (``app.engine.sampling.setup``), VAE (``app.engine.vae_io``) and ``app.engine.outputs``
(infotext, result; files through ``app.outputs.job.JobSaver`` into ``outputs/img2img-images``). Its variants (folder batch, SD upscale) are
dispatched by ``app.engine.modes.runners``.

- Size: "Resize to" (``width x height``) or "Resize by" (``img2img.scale_by``), resize modes in
  ``app.engine.image.resize``; mode 3 encodes the image at its own size and resizes the latent bilinearly.
- Steps (spec §6.3, ``rng.img2img_schedule``): ``int(min(d, .999) * steps) + 1`` sampling steps
  out of a ``steps`` schedule (setting ``img2img_fix_steps``: exactly ``steps``).
- Encoding is deterministic: the VAE latent distribution's **mean** (``vae_io.encode_images``).
- Start noise: the seed's first noise tensor (× ``initial_noise_multiplier``), added at the first
  remaining timestep by the loop.
- Inpaint (``app.engine.modes.inpaint``): mask → latent mask blended every step outside the mask, masked
  content (fill / original / latent noise / latent nothing), Only masked crop + paste back, final
  overlay of the original; inpainting models (9-channel UNets, FLUX.1 Fill) get the mask and the masked-image
  latents as extra input, in the family's layout (``Family.inpaint_channels``); without a mask, a full one.
  A blank mask falls back to plain img2img with a job warning.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from app.engine.conditioning import build_conds, deactivate_extra_networks, schedule_steps
from app.engine.denoise import Inpainting, seamless_tiling
from app.engine.image import color_correction
from app.engine.image.resize import (
    ImageInputError,
    check_image,
    check_size,
    flatten,
    resize_image,
    resize_mode_index,
    target_size,
)
from app.engine.image.upscalers import registry_of
from app.engine.modes import inpaint as ip
from app.engine.modes.inpaint_model import is_inpainting_model, model_channels
from app.engine.outputs import JobOutputs
from app.engine.plan import Plan
from app.engine.prepare import batches, prepare
from app.engine.refiner import refiner_pass
from app.engine.rng import img2img_schedule
from app.engine.sampling.setup import build_scheduler, make_rng, run_sampler, steps_info
from app.engine.vae_io import decode, encode_images, to_pil
from app.jobs.job import JobResult
from app.outputs.job import JobSaver
from app.settings import setting_value

log = logging.getLogger(__name__)

FILL, ORIGINAL, LATENT_NOISE, LATENT_NOTHING = range(4)
_MASK_KEYS = ("Mask blur", "Mask mode", "Masked content", "Inpaint area", "Masked area padding")


@dataclass
class InitSet:
    """The job's init images prepared once: processing images (W x H), overlays and the mask."""

    images: list[Image.Image]
    overlays: list[Image.Image | None] = field(default_factory=list)
    mask: ip.PreparedMask | None = None
    latent_resize: bool = False  # resize mode 3
    corrections: list[Any] = field(default_factory=list)  # colour-correction targets (setting)

    def for_batch(self, size: int) -> tuple[list[Image.Image], list[Image.Image | None], list[Any]]:
        """One init image for every batch position, or one per position (every batch count uses them)."""
        corrections = self.corrections or [None] * len(self.images)
        if len(self.images) == 1:
            return self.images * size, self.overlays * size, corrections * size
        return self.images[:size], self.overlays[:size], corrections[:size]


class SubJobContext:
    """The job context seen by one part of a bigger job (a batch of SD upscale tiles, one file of
    a folder batch): ``begin`` is a no-op (the whole job reported its totals) and job numbers are
    offset; everything else (stop flags, progress steps, previews, paths) is the real context's."""

    def __init__(self, ctx: Any, offset: int):
        self._ctx = ctx
        self._offset = offset

    def begin(self, *args: Any, **kwargs: Any) -> None:
        return None

    def set_job_no(self, job_no: int) -> None:
        self._ctx.set_job_no(self._offset + job_no)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)


def run_prepared(
    manager: Any, params: Any, settings: Any, job_ctx: Any = None, *, begin: bool = True, extra: dict | None = None
) -> JobResult:
    """img2img without script dispatch (SD upscale runs it per batch of tiles with ``begin=False``)."""
    return run_plan(manager, params, settings, job_ctx, begin=begin, extra=extra)[1]


def run_plan(
    manager: Any, params: Any, settings: Any, job_ctx: Any = None, *, begin: bool = True, extra: dict | None = None
) -> tuple[Plan, JobResult]:
    """Like ``run_prepared`` but also returns the job's plan; *extra* adds infotext keys."""
    params, warnings = resolve_params(params, settings)
    with manager.lock:
        plan = prepare(manager, params, settings, job_ctx, kind="img2img")
        if job_ctx is not None:
            job_ctx.settings = plan.settings  # previews etc. follow this job's overrides
        plan.warnings.extend(warnings)
        plan.extra.update(extra or {})
        try:
            return plan, _run(plan, begin)
        finally:
            deactivate_extra_networks(plan)


def resolve_params(params: Any, settings: Any) -> tuple[Any, list[str]]:
    """Validate the inputs and return a copy with the final width/height (Resize by applied)."""
    i2i = params.img2img
    limit = float(setting_value(settings, "img_max_size_mp", 200.0) or 0)
    if not i2i.init_images:
        raise ImageInputError("img2img.init_images: no init image given")
    for i, image in enumerate(i2i.init_images):
        check_image(image, f"img2img.init_images[{i}]", limit)
    if i2i.mask is not None:
        check_image(i2i.mask, "img2img.mask", limit)
    if not 0.0 <= float(i2i.denoising_strength) <= 1.0:
        raise ImageInputError(f"img2img.denoising_strength must be within [0, 1], got {i2i.denoising_strength}")
    n = len(i2i.init_images)
    if n > 1 and n != params.batch_size:
        raise ImageInputError(
            f"img2img.init_images: {n} images given; pass 1 (used for every image) or batch_size ({params.batch_size})"
        )
    first = i2i.init_images[0]
    width, height = target_size(first.size, params.width, params.height, i2i.scale_by)
    check_size(width, height, "img2img size", limit)
    out = params.copy()
    out.width, out.height = width, height
    return out, []


def _resize_mode(params: Any) -> int:
    return resize_mode_index(params.img2img.resize_mode)


def prepare_inits(plan: Plan, saver: JobSaver) -> InitSet:
    """Flatten, resize/crop the init images and prepare the mask (blank → img2img + warning)."""
    params, st = plan.params, plan.settings
    i2i = params.img2img
    mode = _resize_mode(params)
    background = str(st.get("img2img_background_color", "#ffffff") or "#ffffff")
    upscaler = st.get("upscaler_for_img2img", None) or None
    registry = registry_of(plan.manager)
    if params.save_images and st.get("save_init_img", False):
        _save_init_images(plan, saver, i2i.init_images)
    sources = [flatten(im, background) for im in i2i.init_images]
    prepared: ip.PreparedMask | None = None
    if i2i.mask is not None:
        try:
            prepared = ip.prepare_mask(
                i2i.mask,
                sources[0].size,
                params.width,
                params.height,
                resize_mode=mode,
                invert=bool(i2i.inpainting_mask_invert),
                blur_x=i2i.mask_blur_x,
                blur_y=i2i.mask_blur_y,
                round_mask=bool(i2i.mask_round),
                only_masked=bool(i2i.inpaint_full_res),
                padding=int(i2i.inpaint_full_res_padding),
                warn=plan.warn,
            )
        except ip.BlankMaskError:
            plan.warn("the inpaint mask is blank: running plain img2img on the whole picture")
            for key in _MASK_KEYS:
                plan.extra[key] = None
    images: list[Image.Image] = []
    overlays: list[Image.Image | None] = []
    for src in sources:
        if prepared is None:
            image = src if mode == 3 else resize_image(mode, src, params.width, params.height, upscaler, registry)
        elif prepared.crop is None:  # whole picture: image, mask and overlay at W x H
            image = resize_image(0 if mode == 3 else mode, src, params.width, params.height, upscaler, registry)
        else:  # only masked: the overlay is the full original; the crop is processed at W x H
            image = src
        if prepared is not None:
            overlays.append(ip.overlay_image(image, prepared))
            if prepared.crop is not None:
                image = resize_image(2, image.crop(prepared.crop), params.width, params.height)
            if int(i2i.inpainting_fill) == FILL:
                image = ip.fill_masked(image, prepared.mask)
        else:
            overlays.append(None)
        images.append(image)
    corrections = []
    if st.get("img2img_color_correction", False):
        corrections = [color_correction.correction_target(im) for im in images]
    return InitSet(images, overlays, prepared, latent_resize=(mode == 3 and prepared is None), corrections=corrections)


def _save_init_images(plan: Plan, saver: JobSaver, images: list[Image.Image]) -> None:
    """Setting ``save_init_img``: each init image is saved named by its MD5 (infotext ``Init image hash``),
    as A1111 does."""
    for image in images:
        digest = hashlib.md5(image.tobytes()).hexdigest()
        plan.extra["Init image hash"] = digest
        saver.save_init_image(image, digest)


def _encode(plan: Plan, images: list[Image.Image], latent_resize: bool) -> torch.Tensor:
    params = plan.params
    if latent_resize:
        size = (max(8, images[0].width // 8 * 8), max(8, images[0].height // 8 * 8))
        images = [im if im.size == size else im.resize(size, Image.Resampling.LANCZOS) for im in images]
    latents = encode_images(plan, images).float()
    down = plan.family.latent.downscale
    size = (params.height // down, params.width // down)
    if latents.shape[-2:] != size:
        latents = torch.nn.functional.interpolate(latents, size=size, mode="bilinear")
    return latents


def _inpainting(plan: Plan, init: InitSet, images: list[Image.Image], latents: torch.Tensor) -> Inpainting | None:
    """Latent mask (blend) and, for inpainting models, the mask + masked-image latents (``Family.inpaint_channels``)."""
    params = plan.params
    i2i = params.img2img
    is_inpaint_model = is_inpainting_model(plan)
    if init.mask is None and not is_inpaint_model:
        return None
    b, _, h, w = latents.shape
    mask_t = None
    if init.mask is not None:
        lm = ip.latent_mask(init.mask.mask, w, h, bool(i2i.mask_round))
        mask_t = torch.from_numpy(lm)[None, None].expand(b, 1, h, w).to(latents)
    extra = None
    if is_inpaint_model:
        weight = float(plan.settings.get("inpainting_mask_weight", 1.0))
        if init.mask is not None:
            cond_mask = init.mask.mask
        else:
            cond_mask = Image.new("L", images[0].size, 255)
        # SD: mask + 4 latent channels; FLUX Fill: 16 latent channels + the folded 8x8 mask
        extra = model_channels(plan, images, cond_mask, weight, bool(i2i.mask_round), latents.device).to(latents)
    return Inpainting(mask=mask_t, unet_extra_channels=extra, blend=mask_t is not None)


def _run(plan: Plan, begin: bool = True) -> JobResult:
    params = plan.params
    i2i = params.img2img
    pipe = plan.pipe
    fix = bool(plan.settings.get("img2img_fix_steps", False))
    sched = img2img_schedule(params.steps, float(i2i.denoising_strength), fix)
    plan.steps_total = sched.run_steps
    if plan.ctx is not None and begin:
        plan.ctx.begin(job_count=params.n_iter, sampling_steps=sched.run_steps)
    outputs = JobOutputs(plan)
    init = prepare_inits(plan, outputs.saver)
    multiplier = float(i2i.initial_noise_multiplier)
    if multiplier == 1.0:
        multiplier = float(plan.settings.get("initial_noise_multiplier", 1.0) or 1.0)
        if multiplier != 1.0:
            plan.extra["Noise multiplier"] = multiplier
    tiling = bool(params.tiling or plan.settings.get("tiling", False))
    if tiling and not plan.family.seamless_tiling:
        plan.warn(f"Tiling is not available for {plan.family.label} models; ignored")
        tiling = False
    with seamless_tiling(getattr(pipe, "unet", None), pipe.vae, enabled=tiling):
        for batch in batches(plan):
            images, overlays, corrections = init.for_batch(len(batch.seeds))
            latents = _encode(plan, images, init.latent_resize)
            h, w = latents.shape[-2:]
            def make_conds(batch: Any = batch) -> Any:  # with the plan's current encoder (the refiner's after a switch)
                return build_conds(plan, batch.cond_prompts, batch.negative_prompts, schedule_steps(plan, params.steps),
                                   params.width, params.height)

            conds = make_conds()
            rng = make_rng(plan, batch, (h, w))
            noise = rng.first()
            inpainting = _inpainting(plan, init, images, latents)
            if inpainting is not None and inpainting.mask is not None:
                keep = 1.0 - inpainting.mask.to(latents)
                if int(i2i.inpainting_fill) == LATENT_NOISE:
                    latents = latents * keep + noise.to(latents) * inpainting.mask.to(latents)
                elif int(i2i.inpainting_fill) == LATENT_NOTHING:
                    latents = latents * keep
            plan.steps_offset = 0
            with refiner_pass(plan, False, make_conds) as switch:  # decoded by the refiner when it took over
                result = run_sampler(
                    plan,
                    build_scheduler(plan, batch.seeds),
                    noise * multiplier if multiplier != 1.0 else noise,
                    conds,
                    steps_info(plan, sched.total_steps, sched.start_index),
                    rng.torch_generators(),
                    init_latents=latents,
                    pass_steps=sched.run_steps,
                    inpainting=inpainting,
                    switch=switch,
                )
                decoded = to_pil(decode(plan, result.latents))
            if init.corrections:
                decoded = [color_correction.apply(t, im) for t, im in zip(corrections, decoded, strict=True)]
            paste_to = init.mask.paste_to if init.mask is not None else None
            final = [ip.apply_overlay(im, ov, paste_to) for im, ov in zip(decoded, overlays, strict=True)]
            if plan.ctx is not None and plan.ctx.skipped:
                plan.ctx.clear_skip()
            outputs.add_batch(batch, final)
    return outputs.finish()
