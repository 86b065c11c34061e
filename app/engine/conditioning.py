"""Conditioning for a job: extra-network tags and the scheduled / composable (AND) prompt conds.

``activate_extra_networks`` strips ``<name:...>`` tags and hands the first prompt's tags to the
handlers registered in the job's model manager (``manager.extra_networks``; LoRA registers ``lora``);
``build_conds`` turns prompts into ``StepConds``:
A1111 multicond (``AND`` with weights) × prompt-editing schedules, encoded once per unique text, and
"Unconditional first steps" (the first N steps use the empty prompt's conditioning) as one more
schedule entry in front of every positive prompt's schedule.
"""

from __future__ import annotations

from typing import Any

import torch

from app.engine.denoise import CondEntry, CondSchedule, StepConds, sdxl_time_ids
from app.engine.plan import Plan
from app.engine.sampling.schedulers import is_second_order
from app.prompts.syntax import (
    get_learned_conditioning_prompt_schedules,
    get_multicond_prompt_list,
    parse_extra_networks,
)


# ------------------------------------------------------------------------------ extra networks
class ExtraNetworkHandler:
    """Hook point for ``<name:...>`` prompt tags, registered in the model manager's ``extra_networks``
    (``app.prompts.extra_networks.ExtraNetworkRegistry``; LoRA registers ``lora`` and ``lyco``).

    ``activate(plan, items)`` gets the parsed ``ExtraNetworkParams`` list of the batch's first
    prompt; it may add infotext keys to ``plan.extra``. ``deactivate(plan)`` runs after the job.
    ``model_changed(plan)`` runs when ``plan.model`` changes mid-job (the refiner takes over, and the job's model
    comes back): networks patched into a model move to the new one (A1111 applies them to whichever model runs).
    """

    def activate(self, plan: Plan, items: list[Any]) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def deactivate(self, plan: Plan) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def model_changed(self, plan: Plan) -> None:
        """A handler that keeps no per-model state has nothing to move (see the class doc)."""


def _handlers(plan: Plan) -> Any:
    """The job's extra-network handlers: its model manager's ``extra_networks`` registry (None: no handlers)."""
    return getattr(plan.manager, "extra_networks", None)


def activate_extra_networks(plan: Plan, prompts: list[str]) -> list[str]:
    """Strip ``<name:...>`` tags; the first prompt's tags go to the registered handlers (A1111)."""
    cleaned, first_data = [], None
    for i, prompt in enumerate(prompts):
        text, data = parse_extra_networks(prompt)
        cleaned.append(text)
        if i == 0:
            first_data = data
    if plan.params.extras.get("disable_extra_networks"):
        return cleaned
    handlers = _handlers(plan)
    for name, items in (first_data or {}).items():
        handler = handlers.get(name) if handlers is not None else None
        if handler is None:
            plan.warn(f"no handler for extra network <{name}:...> (tag ignored)")
            continue
        handler.activate(plan, items)
        if name not in plan.active_networks:
            plan.active_networks.append(name)
    return cleaned


def extra_networks_follow_model(plan: Plan) -> None:
    """``plan.model`` changed mid-job: every active handler moves its networks to it (``model_changed``)."""
    handlers = _handlers(plan)
    done: set[int] = set()
    for name in plan.active_networks:
        handler = handlers.get(name) if handlers is not None else None
        if handler is not None and id(handler) not in done:
            done.add(id(handler))
            handler.model_changed(plan)


def deactivate_extra_networks(plan: Plan) -> None:
    handlers = _handlers(plan)
    for name in plan.active_networks:
        try:
            handlers.get(name).deactivate(plan)
        except Exception as exc:  # never leave the job in a failed state because of cleanup
            plan.warn(f"extra network {name}: deactivate failed: {exc}")
    plan.active_networks.clear()


# ------------------------------------------------------------------------------ conditioning
def schedule_steps(plan: Plan, steps: int, sampler: Any = None) -> int:
    """Steps as A1111 counts them for prompt schedules (second-order samplers evaluate twice)."""
    return steps * 2 if is_second_order(sampler or plan.sampler) else steps


def build_conds(
    plan: Plan,
    prompts: list[str],
    negatives: list[str],
    steps: int,
    width: int,
    height: int,
    hires_steps: int | None = None,
) -> StepConds:
    """Prompt-editing schedules × AND sub-prompts → ``StepConds`` (A1111 multicond + schedules).

    In the first pass (``hires_steps`` None) ``params.unconditional_first_steps`` > 0 puts the empty
    prompt in front of every positive schedule for that many sampler steps (infotext key
    "Unconditional first steps")."""
    old = bool(plan.settings.get("use_old_scheduling", False))
    indexes, flat, _ = get_multicond_prompt_list(prompts)
    cond_scheds = _encode_schedules(plan, flat, steps, hires_steps, old, negative=False)
    neg_scheds = _encode_schedules(plan, negatives, steps, hires_steps, old, negative=True)
    uncond_steps = int(getattr(plan.params, "unconditional_first_steps", 0) or 0)
    if uncond_steps > 0 and hires_steps is None:
        _unconditional_start(plan, cond_scheds, uncond_steps)
    if plan.settings.get("pad_cond_uncond", False):
        _pad_with_empty_prompt(plan, cond_scheds + neg_scheds)
        plan.extra["Pad conds"] = True
    conds = [[(cond_scheds[i], float(w)) for i, w in per_prompt] for per_prompt in indexes]
    time_ids = uncond_time_ids = None
    crop = (int(plan.settings.get("sdxl_crop_top", 0)), int(plan.settings.get("sdxl_crop_left", 0)))
    if str(getattr(plan.model.loaded, "family", "")) == "sdxl-refiner":
        # the refiner's micro-conditioning: (h, w, crop top, crop left, aesthetic score), the score high for the
        # prompt and low for the negative prompt (A1111's sdxl_refiner_high/low_aesthetic_score)
        rows = sdxl_time_ids(len(prompts), height, width, crop)[:, :4]
        high = float(plan.settings.get("sdxl_refiner_high_aesthetic_score", 6.0))
        low = float(plan.settings.get("sdxl_refiner_low_aesthetic_score", 2.5))
        time_ids = torch.cat([rows, torch.full((len(prompts), 1), high)], dim=1)
        uncond_time_ids = torch.cat([rows, torch.full((len(prompts), 1), low)], dim=1)
    elif getattr(plan.model.loaded, "is_sdxl", False):
        time_ids = sdxl_time_ids(len(prompts), height, width, crop)
    return StepConds(conds, neg_scheds, time_ids=time_ids, uncond_time_ids=uncond_time_ids)


def _encode_schedules(plan: Plan, texts: list[str], steps: int, hires_steps: int | None, old: bool, negative: bool):
    schedules = get_learned_conditioning_prompt_schedules(texts, steps, hires_steps, old)
    unique = list(dict.fromkeys(text for sched in schedules for _, text in sched))
    enc = plan.encoder.encode(unique, plan.clip_skip, plan.emphasis, is_negative=negative)
    if getattr(enc, "weights_ignored", False):  # an LLM encoder: (word:1.3) was read as plain text
        plan.extra["Prompt weights"] = "ignored"
    for name, emb in getattr(enc, "used_embeddings", {}).items():
        plan.used_embeddings.setdefault(name, emb)
    row = {text: i for i, text in enumerate(unique)}
    out = []
    for sched in schedules:
        entries = []
        for end, text in sched:
            i = row[text]
            pooled = None if enc.pooled is None else enc.pooled[i]
            entries.append(CondEntry(int(end), enc.cond[i], pooled))
        out.append(CondSchedule(entries))
    return out


def _unconditional_start(plan: Plan, schedules: list[CondSchedule], steps: int) -> None:
    """Prepend the empty prompt's conditioning, used for the first ``steps`` sampler steps (model
    evaluations of second-order samplers counted as A1111 counts them for prompt schedules)."""
    empty = plan.encoder.encode([""], plan.clip_skip, plan.emphasis)
    pooled = None if empty.pooled is None else empty.pooled[0]
    end = schedule_steps(plan, steps) - 1
    for sched in schedules:
        sched.entries.insert(0, CondEntry(end, empty.cond[0], pooled))
    plan.extra["Unconditional first steps"] = steps


def _pad_with_empty_prompt(plan: Plan, schedules: list[CondSchedule]) -> None:
    """A1111 "Pad prompt/negative prompt": shorter conds get empty-prompt chunks (not their last vector)."""
    longest = max(e.cond.shape[0] for sched in schedules for e in sched.entries)
    filler = plan.encoder.encode([""], plan.clip_skip, plan.emphasis).cond[0]
    for sched in schedules:
        for entry in sched.entries:
            missing = longest - entry.cond.shape[0]
            if missing > 0:
                reps = filler.to(entry.cond).repeat(missing // filler.shape[0] + 1, 1)[:missing]
                entry.cond = torch.cat([entry.cond, reps], dim=0)
