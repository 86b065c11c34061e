"""Skip-layer guidance (SLG) for SD3.5: on some steps, one more forward of the positive conditioning with a few of the
MMDiT's joint blocks left out, and the guided prediction moves away from that weakened prediction.

The maths is diffusers' ``StableDiffusion3Pipeline`` (``skip_guidance_layers``, ``skip_layer_guidance_scale``,
``skip_layer_guidance_start``, ``skip_layer_guidance_stop``) and ComfyUI's ``SkipLayerGuidanceSD3`` node::

    guided = uncond + cfg * (cond - uncond) + scale * (cond - cond_skipped)

on the steps ``i`` (0-based, of this sampling pass's ``n`` steps) with ``n * start < i < n * stop`` (diffusers' rule;
ComfyUI's node takes the same fractions as sigma percents). With composable prompts (``AND``) every sub-prompt gets its
own skipped forward and the term is ``scale * Σ w_j (c_j - c_j_skipped)``, as CFG combines them. Defaults: SD3.5
medium's blocks 7, 8, 9, scale 2.8 (diffusers' default; ComfyUI's node uses 3.0), start 0.01, stop 0.2. Unlike
diffusers, the term is added at CFG 1 too (ComfyUI's post-CFG hook does the same).

The network must take ``skip_layers`` (the block indices to leave out) and say how many blocks it has
(``skip_layer_blocks``): ``app.families.sd3_nets.SD3Denoiser`` does. On another family the request is ignored with a
job warning, as ``shift`` and ``distilled_cfg_scale`` are accepted for every model (a hires pass or an X/Y plot may
switch to a checkpoint without joint blocks). The fields are ``GenerationParams.skip_layer_guidance_*`` and
``skip_guidance_layers`` (``app.params.parse_layers`` reads the layer list).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.params import format_layers, parse_layers

if TYPE_CHECKING:
    import torch

#: infotext keys, written when SLG is on for a model with joint blocks (``app.infotext.paste`` reads the same strings
#: back; it sits below the engine, so it spells them itself)
INFOTEXT_SCALE, INFOTEXT_LAYERS, INFOTEXT_START, INFOTEXT_STOP = "SLG scale", "SLG layers", "SLG start", "SLG stop"
NOT_SUPPORTED = ("skip-layer guidance is for SD3.5 (MMDiT joint blocks); this model has none, so the SLG settings "
                 "were ignored")


@dataclass(frozen=True)
class SkipLayerGuidance:
    """The blocks to skip, the guidance scale and the fractions of the steps where it applies."""

    layers: tuple[int, ...]
    scale: float
    start: float = 0.01
    stop: float = 0.2

    def active(self, step: int, total: int) -> bool:
        """Whether step ``step`` (0-based) of ``total`` gets the extra forward (diffusers' strict inequalities)."""
        return total * self.start < step < total * self.stop

    def check(self, blocks: int) -> None:
        """A clear error for a block index the network does not have (diffusers would silently skip nothing)."""
        bad = [i for i in self.layers if not 0 <= i < blocks]
        if bad:
            raise ValueError(f"skip_guidance_layers: {', '.join(map(str, bad))} not in this model's joint blocks "
                             f"0..{blocks - 1}")

    def delta(self, unet: Any, model_in: torch.Tensor, t: torch.Tensor, hidden: Any, added: dict[str, Any] | None,
              cond_out: torch.Tensor, owners: Sequence[int], weights: Sequence[float], batch: int) -> torch.Tensor:
        """``scale * Σ_j w_j (c_j - c_j_skipped)`` per image, ``[batch, C, h, w]``.

        ``model_in`` / ``hidden`` / ``added`` are the network inputs of the cond rows only, ``cond_out`` their
        outputs, ``owners[j]`` the image of row j and ``weights[j]`` its sub-prompt weight."""
        import torch

        skipped = unet(model_in, t, encoder_hidden_states=hidden, added_cond_kwargs=added, return_dict=False,
                       skip_layers=list(self.layers))[0].to(cond_out.dtype)
        diff = cond_out - skipped
        if list(owners) == list(range(batch)) and all(w == 1.0 for w in weights):
            return diff * self.scale
        out = torch.zeros((batch, *diff.shape[1:]), dtype=diff.dtype, device=diff.device)
        for j, owner in enumerate(owners):
            out[owner] = out[owner] + diff[j] * weights[j]
        return out * self.scale


def job_guidance(params: Any) -> SkipLayerGuidance | None:
    """The job's SLG from its ``GenerationParams``; None when off (scale 0 or no layers)."""
    scale = float(getattr(params, "skip_layer_guidance_scale", 0.0) or 0.0)
    layers = parse_layers(getattr(params, "skip_guidance_layers", ()) or ())
    if scale == 0.0 or not layers:
        return None
    start = float(params.skip_layer_guidance_start)
    stop = float(params.skip_layer_guidance_stop)
    return SkipLayerGuidance(layers, scale, start, stop)


def plan_guidance(plan: Any, unet: Any) -> SkipLayerGuidance | None:
    """The job's SLG for the network *unet*, recorded in the infotext; None (with a job warning when it was asked
    for) where the network has no joint blocks to skip."""
    slg = job_guidance(plan.params)
    if slg is None:
        return None
    blocks = int(getattr(unet, "skip_layer_blocks", 0) or 0)
    if blocks <= 0:
        if NOT_SUPPORTED not in plan.warnings:
            plan.warn(NOT_SUPPORTED)
        return None
    slg.check(blocks)
    plan.extra.update({INFOTEXT_SCALE: slg.scale, INFOTEXT_LAYERS: format_layers(slg.layers),
                       INFOTEXT_START: slg.start, INFOTEXT_STOP: slg.stop})
    return slg
