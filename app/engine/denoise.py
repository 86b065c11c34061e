"""The denoising loop: A1111 semantics on top of diffusers schedulers.

The loop is ours (not a diffusers pipeline's) because A1111 needs per-step control:
prompt-editing schedules switch the conditioning mid-run, ``AND`` needs several conds per
image, inpainting blends latents with a mask, and previews / interrupt / skip happen between
steps. With one plain cond per image it reproduces ``StableDiffusionPipeline`` bit for bit
(same ``set_timesteps`` / ``scale_model_input`` / UNet / CFG / ``step`` sequence, uncond first).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from app.engine.sampling.model_sampling import ModelSampling
from app.engine.sampling.skip_layers import SkipLayerGuidance

#: ``callback(step_done, total, latents, denoised)``; ``denoised`` is the scheduler's prediction of
#: the final latents (``pred_original_sample``) or None. A returned tensor replaces the latents.
StepCallback = Callable[[int, int, torch.Tensor, "torch.Tensor | None"], "torch.Tensor | None"]


@dataclass
class CondEntry:
    """One stretch of a prompt schedule: used while ``step <= end_step``."""

    end_step: int
    cond: torch.Tensor  # [T, D]
    pooled: torch.Tensor | None = None  # [P] (SDXL) or None


@dataclass
class CondSchedule:
    """A prompt's conditioning over the run (A1111 ``ScheduledPromptConditioning`` list)."""

    entries: list[CondEntry]

    def __post_init__(self) -> None:
        if not self.entries:
            raise ValueError("a conditioning schedule needs at least one entry")

    def at(self, step: int) -> CondEntry:
        """The first entry whose end_step >= step (A1111 ``reconstruct_cond_batch``)."""
        for entry in self.entries:
            if step <= entry.end_step:
                return entry
        return self.entries[-1]

    @classmethod
    def constant(cls, cond: torch.Tensor, pooled: torch.Tensor | None = None) -> CondSchedule:
        return cls([CondEntry(10**9, cond, pooled)])


@dataclass
class StepConds:
    """Conditioning for one batch.

    ``conds[i]`` is the list of ``(schedule, weight)`` sub-prompts of image i (``AND``);
    ``unconds[i]`` is its negative prompt schedule. ``time_ids`` ([B, 6]) is the SDXL micro
    conditioning (orig_h, orig_w, crop_top, crop_left, target_h, target_w).
    """

    conds: list[list[tuple[CondSchedule, float]]]
    unconds: list[CondSchedule]
    time_ids: torch.Tensor | None = None
    uncond_time_ids: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if len(self.conds) != len(self.unconds):
            raise ValueError(f"conds for {len(self.conds)} images but unconds for {len(self.unconds)}")
        if any(not c for c in self.conds):
            raise ValueError("every image needs at least one cond")

    @property
    def batch_size(self) -> int:
        return len(self.conds)

    @classmethod
    def simple(
        cls,
        cond: torch.Tensor,
        uncond: torch.Tensor,
        pooled: torch.Tensor | None = None,
        uncond_pooled: torch.Tensor | None = None,
        time_ids: torch.Tensor | None = None,
    ) -> StepConds:
        """One fixed cond / uncond per image from batched tensors ([B, T, D])."""
        conds, unconds = [], []
        for i in range(cond.shape[0]):
            conds.append([(CondSchedule.constant(cond[i], None if pooled is None else pooled[i]), 1.0)])
            unconds.append(CondSchedule.constant(uncond[i], None if uncond_pooled is None else uncond_pooled[i]))
        return cls(conds, unconds, time_ids=time_ids)

    def needs_uncond(self, cfg_scale: float) -> bool:
        """cfg 1 with one plain cond per image equals the cond alone: skip the uncond pass."""
        if cfg_scale != 1.0:
            return True
        return any(len(c) != 1 or c[0][1] != 1.0 for c in self.conds)


@dataclass
class StepsInfo:
    """How many steps, and where to start.

    ``steps`` goes to ``set_timesteps``; ``start_step`` (img2img / hires) skips the first
    sampler steps and noises ``init_latents`` to the first remaining timestep. ``sigmas`` or
    ``timesteps`` are passed to ``set_timesteps`` when the schedule type computes its own.
    ``prepare(scheduler, device) -> timesteps`` replaces all of that when given (it sets the
    scheduler up, including the begin index, and returns the timesteps to run);
    ``noise_scale`` replaces ``scheduler.init_noise_sigma`` for the txt2img start latents.
    """

    steps: int
    start_step: int = 0
    sigmas: Sequence[float] | None = None
    timesteps: Sequence[int] | None = None
    prepare: Callable[[Any, torch.device], torch.Tensor] | None = None
    noise_scale: Callable[[Any], float] | None = None


@dataclass
class Inpainting:
    """Inpaint hooks. ``mask`` [B,1,h,w] is 1 where the image is regenerated.

    ``unet_extra_channels`` [B,5,h,w] (mask + masked-image latents) are concatenated to the model
    input for 9-channel inpainting UNets; ``blend`` re-imposes the noised original outside the mask
    after every step (4-channel UNets).
    """

    mask: torch.Tensor | None = None
    unet_extra_channels: torch.Tensor | None = None
    blend: bool = True


@dataclass
class SampleResult:
    latents: torch.Tensor
    steps_done: int
    total_steps: int
    stopped: bool = False


def _step_kwargs(
    scheduler, generators: list[torch.Generator] | None, eta: float | None, options: dict | None = None
) -> dict:
    params = inspect.signature(scheduler.step).parameters
    kwargs: dict = {k: v for k, v in (options or {}).items() if k in params}
    if generators is not None and "generator" in params:
        kwargs["generator"] = generators if len(generators) > 1 else generators[0]
    if eta is not None and "eta" in params:
        kwargs["eta"] = eta
    return kwargs


def _set_timesteps(scheduler, info: StepsInfo, device: torch.device) -> None:
    params = inspect.signature(scheduler.set_timesteps).parameters
    if info.sigmas is not None and "sigmas" in params:
        scheduler.set_timesteps(sigmas=list(info.sigmas), device=device)
    elif info.timesteps is not None and "timesteps" in params:
        scheduler.set_timesteps(timesteps=list(info.timesteps), device=device)
    else:
        scheduler.set_timesteps(info.steps, device=device)


def _pad_tokens(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Stack [T_i, D] tensors, equalising lengths by repeating the last vector (A1111 stack_conds)."""
    longest = max(t.shape[0] for t in tensors)
    out = []
    for t in tensors:
        if t.shape[0] < longest:
            t = torch.cat([t, t[-1:].expand(longest - t.shape[0], -1)], dim=0)
        out.append(t)
    return torch.stack(out)


def _build_batch(conds: StepConds, step: int, with_uncond: bool, ragged: bool = False):
    """Flatten to one model batch: [uncond_0..uncond_B-1, cond_0_0, cond_0_1, ..., cond_B-1_k].

    ``ragged``: the network takes captions of different lengths (a list of ``[T_i, D]``), so nothing is padded."""
    entries: list[CondEntry] = []
    owners: list[int] = []
    if with_uncond:
        for i, sched in enumerate(conds.unconds):
            entries.append(sched.at(step))
            owners.append(i)
    weights: list[float] = []
    for i, subs in enumerate(conds.conds):
        for sched, weight in subs:
            entries.append(sched.at(step))
            owners.append(i)
            weights.append(weight)
    hidden: Any = [e.cond for e in entries] if ragged else _pad_tokens([e.cond for e in entries])
    pooled = None
    if entries[0].pooled is not None:
        pooled = torch.stack([e.pooled for e in entries])
    return hidden, pooled, owners, weights


def _time_ids_for(conds: StepConds, owners: list[int], n_uncond: int) -> torch.Tensor | None:
    if conds.time_ids is None:
        return None
    unc = conds.uncond_time_ids if conds.uncond_time_ids is not None else conds.time_ids
    rows = [unc[o] if j < n_uncond else conds.time_ids[o] for j, o in enumerate(owners)]
    return torch.stack(rows)


def guided_prediction(
    unet,
    x: torch.Tensor,
    t: torch.Tensor,
    conds: StepConds,
    step: int,
    cfg_scale: float,
    extra_channels: torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
    skip_uncond: bool = False,
    slg: SkipLayerGuidance | None = None,
) -> torch.Tensor:
    """Model output with classifier-free guidance and composable (AND) sub-prompts.

    ``x`` is the already-scaled model input [B, C, h, w]. Result: ``u + cfg * Σ w_i (c_i - u)``.
    ``dtype`` is the UNet's dtype when the caller knows it (``unet.dtype`` walks every submodule).
    ``skip_uncond`` (A1111 "Negative Guidance minimum sigma") leaves the uncond pass out and lets each
    image's first sub-prompt prediction stand in for it. ``slg`` (skip-layer guidance, this step) adds
    ``scale * Σ w_j (c_j - c_j_skipped)`` from one more forward of the cond rows with its blocks skipped.
    """
    batch = x.shape[0]
    needs_uncond = conds.needs_uncond(cfg_scale)
    with_uncond = needs_uncond and not skip_uncond
    ragged = bool(getattr(unet, "ragged_conds", False))
    hidden, pooled, owners, weights = _build_batch(conds, step, with_uncond, ragged)
    n_uncond = batch if with_uncond else 0
    if extra_channels is not None:
        x = torch.cat([x, extra_channels.to(x)], dim=1)
    model_in = x if owners == list(range(batch)) else x[torch.tensor(owners, device=x.device)]
    dtype = dtype if dtype is not None else unet.dtype
    added = None
    if pooled is not None:
        time_ids = _time_ids_for(conds, owners, n_uncond)
        added = {"text_embeds": pooled.to(x.device, dtype),
                 "time_ids": None if time_ids is None else time_ids.to(x.device, dtype)}
    text = [h.to(x.device, dtype) for h in hidden] if ragged else hidden.to(x.device, dtype)
    out = unet(model_in.to(dtype), t, encoder_hidden_states=text, added_cond_kwargs=added, return_dict=False)[0].to(x.dtype)
    if n_uncond == 0 and not needs_uncond:
        result = out[:batch]
    elif n_uncond == 0:
        first: dict[int, int] = {}
        for j, owner in enumerate(owners):
            first.setdefault(owner, j)
        result = _combine(out[[first[i] for i in range(batch)]], out, owners, weights, cfg_scale)
    elif len(owners) == 2 * n_uncond and all(w == 1.0 for w in weights) and owners[n_uncond:] == owners[:n_uncond]:
        uncond = out[:n_uncond]
        result = uncond + cfg_scale * (out[n_uncond:] - uncond)  # one plain cond per image: same values, fewer ops
    else:
        result = _combine(out[:n_uncond], out[n_uncond:], owners[n_uncond:], weights, cfg_scale)
    if slg is not None:
        rows = {k: (None if v is None else v[n_uncond:]) for k, v in added.items()} if added is not None else None
        result = result + slg.delta(unet, model_in[n_uncond:].to(dtype), t, text[n_uncond:], rows, out[n_uncond:],
                                    owners[n_uncond:], weights, batch)
    return result


def _combine(uncond: torch.Tensor, cond_out: torch.Tensor, owners: list[int], weights: list[float], cfg_scale: float):
    """``u + cfg * Σ w_j (c_j - u)`` per image (composable diffusion)."""
    delta = torch.zeros_like(uncond)
    for j, owner in enumerate(owners):
        diff = cond_out[j] - uncond[owner]
        delta[owner] = delta[owner] + (diff if weights[j] == 1.0 else diff * weights[j])
    return uncond + cfg_scale * delta


def sample(
    unet,
    scheduler,
    noise: torch.Tensor,
    conds: StepConds,
    cfg_scale: float,
    steps_info: StepsInfo | int,
    callback: StepCallback | None = None,
    generators: list[torch.Generator] | None = None,
    *,
    should_stop: Callable[[], bool] | None = None,
    init_latents: torch.Tensor | None = None,
    inpainting: Inpainting | None = None,
    eta: float | None = None,
    step_options: dict | None = None,
    min_uncond_sigma: float = 0.0,
    skip_early_uncond: float = 0.0,
    model_sampling: ModelSampling | None = None,
    skip_layer_guidance: SkipLayerGuidance | None = None,
    switch: Callable[[int, int, float, Any], Any] | None = None,
    extra_noise: float = 0.0,
) -> SampleResult:
    """Run the sampler and return the final (or, when stopped, the current) latents.

    1. ``set_timesteps`` (custom sigmas/timesteps when given); skip ``start_step`` steps.
    2. Start latents: ``noise * init_noise_sigma`` (txt2img) or ``add_noise(init_latents, noise, t0)``.
    3. Per step: ``scale_model_input``, guided UNet prediction, ``scheduler.step`` with the
       per-image generators (ancestral/SDE samplers draw their noise from them), inpaint blend,
       callback; ``should_stop()`` is checked before every model evaluation.
    ``step_options`` (e.g. ``s_churn``/``s_noise``) reach ``scheduler.step`` where it takes them.
    ``min_uncond_sigma`` > 0 skips the uncond pass on every second step below that sigma (A1111 NGMS);
    ``skip_early_uncond`` skips it for that fraction of the first steps (A1111 "Skip Early CFG").
    ``model_sampling`` (a non-identity one, e.g. flow) turns the scaled input and the step's sigma into
    the network's input and timestep, and the network output into the scheduler's epsilon; None (or
    SD's noise / v prediction) is the plain path. ``skip_layer_guidance`` (SD3.5's SLG) runs on the steps its
    ``active`` selects. ``extra_noise`` > 0 (A1111's "Extra noise", img2img and hires) adds the same noise again to
    the noised ``init_latents``, as if the first sigma were larger by that much.
    ``switch(step, total, sigma_ve, scheduler)`` (the refiner, ``app.engine.refiner``) is asked before every model
    evaluation until it returns a hand-over (``unet``, ``conds``, optional ``convert`` of the network output): the
    rest of the run uses that network and conditioning with the same scheduler state.
    """
    info = steps_info if isinstance(steps_info, StepsInfo) else StepsInfo(int(steps_info))
    if conds.batch_size != noise.shape[0]:
        raise ValueError(f"noise batch {noise.shape[0]} != conditioning batch {conds.batch_size}")
    device = noise.device
    # 1. timesteps
    if info.prepare is not None:
        timesteps = info.prepare(scheduler, device)
    else:
        _set_timesteps(scheduler, info, device)
        order = getattr(scheduler, "order", 1)
        begin = max(0, info.start_step) * order
        timesteps = scheduler.timesteps[begin:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(begin)  # also at 0: see make_timesteps (repeated first timesteps)
    total = len(timesteps)
    # 2. start latents (kept in fp32 when the input is fp32; the UNet gets its own dtype)
    if init_latents is None:
        scale = info.noise_scale(scheduler) if info.noise_scale is not None else scheduler.init_noise_sigma
        latents = noise * scale
    else:
        t0 = timesteps[:1].repeat(noise.shape[0])
        latents = scheduler.add_noise(init_latents.to(noise), noise, t0)
        if extra_noise > 0:  # in VE terms x + (sigma + extra)·noise; the image's weight at t0 scales it (DDIM: √ᾱ)
            weight = scheduler.add_noise(torch.ones_like(noise), torch.zeros_like(noise), t0)
            latents = latents + noise * (extra_noise * weight)
    step_kwargs = _step_kwargs(scheduler, generators, eta, step_options)
    mask = None if inpainting is None or not inpainting.blend else inpainting.mask
    extra = None if inpainting is None else inpainting.unet_extra_channels
    unet_dtype = unet.dtype  # once: the property walks every submodule
    wrap = model_sampling if model_sampling is not None and not model_sampling.identity else None
    convert: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None = None
    # 3. loop
    for i, t in enumerate(timesteps):
        if should_stop is not None and should_stop():
            return SampleResult(latents, i, total, stopped=True)
        skip = min_uncond_sigma > 0 and i % 2 == 1 and current_sigma(scheduler, t, i) < min_uncond_sigma
        skip = skip or (skip_early_uncond > 0 and i / total <= skip_early_uncond)
        model_in = scheduler.scale_model_input(latents, t)
        if switch is not None:
            handover = switch(i, total, current_sigma(scheduler, t, i), scheduler)
            if handover is not None:
                unet, conds, convert, switch = handover.unet, handover.conds, handover.convert, None
                unet_dtype = unet.dtype
        slg = skip_layer_guidance if skip_layer_guidance is not None and skip_layer_guidance.active(i, total) else None
        if wrap is None:
            pred = guided_prediction(unet, model_in, t, conds, i, cfg_scale, extra, unet_dtype, skip_uncond=skip,
                                     slg=slg)
            if convert is not None:
                pred = convert(pred, model_in, current_sigma(scheduler, t, i))
        else:
            sigma = current_sigma(scheduler, t, i)
            x_net, t_net = wrap.network_call_args(model_in, sigma)
            pred = guided_prediction(unet, x_net, t_net, conds, i, cfg_scale, extra, unet_dtype, skip_uncond=skip,
                                     slg=slg)
            pred = wrap.to_scheduler_output(pred, model_in, sigma)
        out = scheduler.step(pred, t, latents, **step_kwargs, return_dict=True)
        latents = out.prev_sample if hasattr(out, "prev_sample") else out[0]
        if mask is not None and init_latents is not None:
            latents = _blend(scheduler, latents, init_latents.to(latents), noise, mask.to(latents), timesteps, i)
        if callback is not None:
            replaced = callback(i + 1, total, latents, getattr(out, "pred_original_sample", None))
            if replaced is not None:
                latents = replaced
    return SampleResult(latents, total, total)


def current_sigma(scheduler, t: torch.Tensor, i: int) -> float:
    """The noise level of the step about to run (k-diffusion / VE sigma): the scheduler's sigma at its
    step index (after ``scale_model_input``), else from ``alphas_cumprod`` at timestep ``t``."""
    sigmas = getattr(scheduler, "sigmas", None)
    index = getattr(scheduler, "step_index", None)
    if index is None:
        index = getattr(scheduler, "begin_index", None) or 0
    if sigmas is not None and len(sigmas) > index:
        return float(sigmas[index])
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if alphas is None:
        return float("inf")
    a = float(alphas[int(t)])
    return ((1 - a) / a) ** 0.5


def _blend(scheduler, latents, init_latents, noise, mask, timesteps, i):
    """Outside the mask, put back the original latents noised to the next timestep (diffusers inpaint)."""
    if i < len(timesteps) - 1:
        proper = scheduler.add_noise(init_latents, noise, timesteps[i + 1 : i + 2].repeat(latents.shape[0]))
    else:
        proper = init_latents
    return (1 - mask) * proper + mask * latents


@contextmanager
def seamless_tiling(*modules: torch.nn.Module | None, enabled: bool = True) -> Iterator[None]:
    """Circular padding on every Conv2d of *modules* for the duration (A1111 "Tiling")."""
    if not enabled:
        yield
        return
    saved: list[tuple[torch.nn.Conv2d, str]] = []
    try:
        for module in modules:
            if module is None:
                continue
            for sub in module.modules():
                if isinstance(sub, torch.nn.Conv2d):
                    saved.append((sub, sub.padding_mode))
                    sub.padding_mode = "circular"
        yield
    finally:
        for conv, mode in saved:
            conv.padding_mode = mode


def sdxl_time_ids(
    batch: int, height: int, width: int, crop: tuple[int, int] = (0, 0), target: tuple[int, int] | None = None
) -> torch.Tensor:
    """SDXL micro-conditioning rows (orig_h, orig_w, crop_top, crop_left, target_h, target_w)."""
    th, tw = target if target is not None else (height, width)
    row = torch.tensor([height, width, crop[0], crop[1], th, tw], dtype=torch.float32)
    return row.unsqueeze(0).repeat(batch, 1)
