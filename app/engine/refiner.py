"""Refiner (A1111 1.6+, spec §8): a second checkpoint takes over a sampling pass part of the way through.

The sampler is not restarted: our loop (``app.engine.denoise.sample``) asks the pass's :class:`RefinerSwitch` before
every model evaluation whether to switch; once the pass is far enough along, the switch makes the refiner the job's
model (``plan.model`` / ``plan.encoder``), encodes the prompts again with the refiner's own text encoders, and hands
the loop the refiner's network and conditioning. The scheduler, its sigmas, its multistep history and the per-image
generators of ancestral samplers carry on unchanged, as in A1111 1.10 (``sd_samplers_common.apply_refiner`` swaps the
inner model inside the CFG denoiser).

- *How far along*: by default from the noise level, as A1111: the step's sigma is matched to the nearest entry of
  the model's 1000-entry sigma table and ``(999 - index) / 1000`` is compared with ``refiner_switch_at``; with the
  setting ``refiner_switch_by_sample_steps`` it is ``steps done / steps of the pass`` (infotext
  ``Refiner switch by sampling steps: True``). ``refiner_switch_at`` 1.0 never switches; None (A1111's API default)
  switches at the first model evaluation, so the refiner runs the whole pass (``sd_samplers_common.apply_refiner``
  only holds back while ``completed_ratio < refiner_switch_at``); A1111 then writes no ``Refiner switch at``.
- *Hires fix*: the setting ``hires_fix_refiner_pass`` ("first pass", "second pass" (default), "both passes") says in
  which pass the refiner may take over; each pass starts on its own model (the job's, or the hires checkpoint), as
  A1111 reloads it before the second pass. Infotext ``Hires refiner`` when it is not "second pass".
- *Compatibility*: any checkpoint whose latents the base's sampler can continue: same latent channels and, for flow
  models, the same family. SD 1.x/2.x/SDXL mix freely (A1111 allows it); a refiner that predicts v where the base
  predicts noise (or back) has its output converted to the base scheduler's kind. An inpainting model and a plain one
  do not mix (different UNet inputs). Anything else is refused with both models named: before the pass from the
  refiner file's header (``precheck``), and again from the loaded model at the switch.
- *Memory*: the model manager swaps: at the switch the refiner becomes the active model (on the device) and the base
  goes back to RAM in the manager's LRU (``sd_checkpoint_cache``; with 0 it is evicted and read again for the next
  pass). When the pass is over (after its decode) the job's model is active again.
- *Extra networks*: ``<lora:...>`` follows the model that runs, as A1111's Lora extension patches whatever model is
  loaded: at the switch the job's networks leave the job's model and are patched into the refiner (UNet and text
  encoders, before its prompts are encoded) where their keys fit, else skipped with a job warning naming the refiner;
  when the pass ends they go back to the job's model. Both models end the job with their exact weights.
- Infotext ``Refiner: <name> [hash]`` and ``Refiner switch at: <x>``, written only when the switch happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.engine.conditioning import extra_networks_follow_model
from app.engine.plan import Plan
from app.engine.prepare import vae_choice
from app.families import family_of
from app.families.registry import UnknownFamilyError, family_for_id
from app.models.catalog.parts import file_role
from app.models.handle import ModelNotFoundError

#: hires_fix_refiner_pass values, A1111's wording.
REFINER_PASSES = ("first pass", "second pass", "both passes")


@dataclass
class SwitchTo:
    """What the loop uses from the switch on: the refiner's network, its conditioning, and (when the two models
    predict different things) ``convert(net_out, x_in, sigma_ve)`` into what the base's scheduler expects."""

    unet: Any
    conds: Any
    convert: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None = None


class RefinerSwitch:
    """One pass's switch: ``__call__(step, total, sigma_ve, scheduler)`` → :class:`SwitchTo` once, else None.

    ``conds_for()`` builds the refiner's conditioning with the pass's prompts (called after the model swap, so it
    uses the refiner's encoder). ``switched`` tells whether it happened (the pass restores the job's model)."""

    def __init__(self, plan: Plan, checkpoint: str, switch_at: float | None, conds_for: Callable[[], Any]):
        self.plan = plan
        self.checkpoint = checkpoint
        self.switch_at = None if switch_at is None else float(switch_at)  # None: from the first step (module doc)
        self.conds_for = conds_for
        self.by_steps = bool(plan.settings.get("refiner_switch_by_sample_steps", False))
        self.switched = False
        self.hires_mode = ""  # hires_fix_refiner_pass when the job has hires fix (infotext `Hires refiner`)
        self.base: tuple[Any, Any] | None = None  # (model, encoder) to put back after the pass

    def completed_ratio(self, step: int, total: int, sigma_ve: float, scheduler: Any) -> float:
        """How far the pass is, A1111's way (module doc)."""
        table = None if self.by_steps else model_sigma_table(scheduler)
        if table is None:
            return step / max(1, total)
        index = int(torch.argmin(torch.abs(table - float(sigma_ve))))
        return (len(table) - 1 - index) / len(table)

    def __call__(self, step: int, total: int, sigma_ve: float, scheduler: Any) -> SwitchTo | None:
        if self.switched:
            return None
        if self.switch_at is not None and (
            self.switch_at >= 1.0 or self.completed_ratio(step, total, sigma_ve, scheduler) < self.switch_at
        ):
            return None
        return self._switch()

    def _switch(self) -> SwitchTo | None:
        plan = self.plan
        base = plan.model
        with torch.inference_mode(False):  # the loop runs in inference mode; loaded weights must stay ordinary tensors
            refiner = plan.manager.get(self.checkpoint, vae=vae_choice(plan))
            if refiner is base:  # the refiner is the pass's model already: nothing to switch (A1111 does the same)
                self.switched = True
                return None
            try:
                convert = check_compatible(base, refiner)
            except ValueError:
                plan.manager.activate(base, vae_choice(plan))
                raise
        self.switched = True
        self.base = (base, plan.encoder)
        plan.model, plan.encoder = refiner, plan.manager.encoder(refiner)
        with torch.inference_mode(False):  # LoRA backups and patched weights stay ordinary tensors
            extra_networks_follow_model(plan)
        plan.extra["Refiner"] = refiner.info.short_title
        if self.switch_at is not None:
            plan.extra["Refiner switch at"] = self.switch_at
        if self.by_steps:
            plan.extra["Refiner switch by sampling steps"] = True
        if self.hires_mode and self.hires_mode != "second pass":
            plan.extra["Hires refiner"] = self.hires_mode
        if plan.ctx is not None:
            plan.ctx.set_textinfo(f"Refiner: {refiner.info.short_title}")
        return SwitchTo(plan.family.job_denoiser(plan), self.conds_for(), convert)

    def restore(self) -> None:
        """Make the job's model active again (after the pass and its decode)."""
        if self.base is None:
            return
        model, encoder = self.base
        self.base = None
        self.plan.model, self.plan.encoder = model, encoder
        self.plan.manager.activate(model, vae_choice(self.plan))
        extra_networks_follow_model(self.plan)


def hires_mode(plan: Plan) -> str:
    """The job's ``hires_fix_refiner_pass`` when it has hires fix, else "" (module doc)."""
    if plan.params.img2img is not None or not plan.params.hires.enabled:
        return ""
    mode = str(plan.settings.get("hires_fix_refiner_pass", "second pass") or "second pass")
    if mode not in REFINER_PASSES:
        raise ValueError(f"hires_fix_refiner_pass: {mode!r} is not one of {', '.join(REFINER_PASSES)}")
    return mode


def wanted(plan: Plan, second_pass: bool) -> bool:
    """Whether the job has a refiner for this pass (``hires_fix_refiner_pass`` with hires fix, module doc)."""
    if not plan.params.refiner_checkpoint or plan.params.refiner_checkpoint == "None":
        return False
    mode = hires_mode(plan)
    if not mode:
        return not second_pass
    return mode == "both passes" or (mode == "first pass") != second_pass


@contextmanager
def refiner_pass(plan: Plan, second_pass: bool, conds_for: Callable[[], Any]) -> Iterator[RefinerSwitch | None]:
    """The switch of one pass (None without a refiner for it); the job's model is active again on leaving."""
    if not wanted(plan, second_pass):
        yield None
        return
    precheck(plan)
    switch = RefinerSwitch(plan, plan.params.refiner_checkpoint, plan.params.refiner_switch_at, conds_for)
    switch.hires_mode = hires_mode(plan)
    try:
        yield switch
    finally:
        switch.restore()


def precheck(plan: Plan) -> None:
    """Before a pass runs: the refiner exists, and its file's family (read from the file's header, no weights) has
    latents the job's model makes, so a wrong choice fails before the first step rather than at the switch."""
    catalog = getattr(plan.manager, "catalog", None)
    if catalog is None or not hasattr(catalog, "find_checkpoint"):
        return
    name = plan.params.refiner_checkpoint
    info = catalog.find_checkpoint(name)
    if info is None:
        raise ModelNotFoundError(f"refiner checkpoint {name!r} not found (refresh the checkpoint list if it is new)")
    try:
        other = family_for_id(str(file_role(Path(info.filename)).family))
    except UnknownFamilyError:
        return  # not known from its header: the switch checks the loaded model
    base = plan.family
    sd_ids = {"sd1", "sd2", "sdxl"}  # one latent space as A1111 sees it; flow families only continue their own
    if other.latent.channels != base.latent.channels or (other.id != base.id and not {other.id, base.id} <= sd_ids):
        raise ValueError(f"refiner {info.title!r} ({other.label}) cannot continue a {base.label} image of "
                         f"{plan.model.info.title!r}: their latent spaces differ")


def check_compatible(base: Any, refiner: Any) -> Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None:
    """Refuse a refiner whose latents the base's sampler cannot continue (``ValueError`` naming both); returns the
    output conversion when the two predict different things (noise / v), else None."""
    fb, fr = family_of(base.loaded), family_of(refiner.loaded)
    names = f"refiner {refiner.info.title!r} ({fr.label}) cannot continue a {fb.label} image of {base.info.title!r}"
    if fb.latent.channels != fr.latent.channels or fb.latent.downscale != fr.latent.downscale:
        raise ValueError(f"{names}: their latent spaces differ ({fb.latent.channels} and {fr.latent.channels} channels)")
    pb, pr = str(base.loaded.prediction_type), str(refiner.loaded.prediction_type)
    if "flow" in (pb, pr) and fb.id != fr.id:
        raise ValueError(f"{names}: flow models only continue their own family's latents")
    if bool(getattr(base.loaded, "is_inpainting", False)) != bool(getattr(refiner.loaded, "is_inpainting", False)):
        raise ValueError(f"{names}: an inpainting model and a plain model take different inputs")
    if pb == pr:
        return None
    if {pb, pr} != {"epsilon", "v_prediction"}:
        raise ValueError(f"{names}: predictions {pr!r} and {pb!r} cannot be converted")
    return v_to_eps if pr == "v_prediction" else eps_to_v


def _alpha_sigma(sigma_ve: float) -> tuple[float, float]:
    """VP coefficients of the scaled model input ``x_t = alpha·x0 + sigma·eps`` at a VE noise level."""
    norm = (1.0 + float(sigma_ve) ** 2) ** 0.5
    return 1.0 / norm, float(sigma_ve) / norm


def v_to_eps(v: torch.Tensor, x_t: torch.Tensor, sigma_ve: float) -> torch.Tensor:
    """A v-prediction as the noise prediction of an epsilon scheduler: ``eps = sigma·x_t + alpha·v``."""
    alpha, sigma = _alpha_sigma(sigma_ve)
    return sigma * x_t.to(v) + alpha * v


def eps_to_v(eps: torch.Tensor, x_t: torch.Tensor, sigma_ve: float) -> torch.Tensor:
    """A noise prediction as the v-prediction of a v scheduler: ``v = (eps - sigma·x_t) / alpha``."""
    alpha, sigma = _alpha_sigma(sigma_ve)
    return (eps - sigma * x_t.to(eps)) / alpha


def model_sigma_table(scheduler: Any) -> torch.Tensor | None:
    """The model's VE sigmas per training timestep (k-diffusion's ``model_wrap.sigmas``), from the scheduler's
    ``alphas_cumprod``; None when the scheduler has none."""
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if alphas is None:
        return None
    a = torch.as_tensor(alphas, dtype=torch.float64).cpu()
    return ((1 - a) / a) ** 0.5
