"""Generation fields that follow the model family of the checkpoint picked in the top row.

"Distilled CFG Scale" is shown only for a family whose network takes a distilled guidance input (FLUX.1 dev and Fill;
schnell has none), "Shift" only for flow-matching families (Z-Image, FLUX, SD3.5), the skip-layer guidance row (SLG
scale, layers, start, stop) only for SD3.5, in the txt2img and img2img tabs. The family
comes from the checkpoint file's header through the catalog (``app.models.catalog.file_info.family_id``), never from a
loaded model, and nothing here imports torch: the server process knows a file's family without a model in it.

Values: when the user picks another checkpoint, a field still at the previous family's default takes the new family's
(CFG Scale 7 for SD 1.x and 2.x, 6 for SDXL, 1 for Z-Image and FLUX; Distilled CFG Scale 3.5 for dev, 30 for Fill, as ``FluxFillPipeline``);
a value the user chose stays. On page load and tab switch only the Distilled CFG default is followed (a Fill model
shown with dev's 3.5 gets 30), so restored values are kept. The API is not affected: ``distilled_cfg_scale``,
``shift`` and the ``skip_layer_guidance_*`` fields are accepted for every model (ignored where they do not apply; SLG
with a job warning).

``FIELDS`` repeats a few facts of ``app.families`` (importing those would import torch); a test checks they agree.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FamilyFields:
    """What the generation form shows for one family."""

    label: str
    #: the default Distilled CFG Scale, None when the network has no distilled guidance input (field hidden)
    distilled_cfg: float | None
    #: flow matching: the Shift field applies
    flow: bool
    #: the family's default CFG Scale
    cfg_scale: float
    #: MMDiT joint blocks: the skip-layer guidance row applies (SD3.5)
    skip_layers: bool = False


FIELDS: dict[str, FamilyFields] = {
    "sd1": FamilyFields("Stable Diffusion 1.x", None, False, 7.0),
    "sd2": FamilyFields("Stable Diffusion 2.x", None, False, 7.0),
    "sdxl": FamilyFields("Stable Diffusion XL", None, False, 6.0),
    "zimage": FamilyFields("Z-Image", None, True, 1.0),
    "flux": FamilyFields("FLUX.1 dev", 3.5, True, 1.0),
    "flux-schnell": FamilyFields("FLUX.1 schnell", None, True, 1.0),
    "flux-fill": FamilyFields("FLUX.1 Fill", 30.0, True, 1.0),
    "sd3": FamilyFields("Stable Diffusion 3.5", None, True, 4.5, skip_layers=True),
}
#: a family this table does not know (added later): every field stays visible
UNKNOWN = FamilyFields("", 3.5, True, 7.0, skip_layers=True)
DEFAULT_FAMILY = "sd1"  # files without a readable header (pickled .ckpt) are SD checkpoints
#: hover help of the skip-layer guidance fields
SLG_INFO = {
    "skip_layer_guidance_scale": "Skip-layer guidance: 0 = off; 2.8 as diffusers (ComfyUI's node: 3)",
    "skip_guidance_layers": "Joint blocks skipped in the extra pass (SD3.5 medium: 7, 8, 9)",
    "skip_layer_guidance_start": "From this fraction of the steps",
    "skip_layer_guidance_stop": "Until this fraction of the steps",
}
_DISTILLED_DEFAULTS = {f.distilled_cfg for f in FIELDS.values() if f.distilled_cfg is not None}
_CFG_DEFAULTS = {f.cfg_scale for f in FIELDS.values()}


def checkpoint_family(ctx: Any, title: str | None) -> str:
    """The family id of the checkpoint *title* (or the one a job would use when empty), from its file's header."""
    from app.models.catalog.file_info import family_id
    from app.models.catalog.parts import file_role
    from app.ui.settings_bind import current_checkpoint

    try:
        title = title or current_checkpoint(ctx)
        info = ctx.catalog.find_checkpoint(str(title or "")) if ctx.catalog is not None else None
        if info is None:
            return DEFAULT_FAMILY
        path = Path(info.filename)
        if not path.name.lower().endswith((".safetensors", ".sft", ".gguf")):
            return DEFAULT_FAMILY
        return family_id(file_role(path)) or DEFAULT_FAMILY
    except Exception:  # noqa: BLE001 - showing fields must never break the page
        log.exception("could not read the family of checkpoint %r", title)
        return DEFAULT_FAMILY


def fields_of(family: str) -> FamilyFields:
    return FIELDS.get(family, UNKNOWN)


def distilled_info(fields: FamilyFields) -> str:
    if fields.distilled_cfg is None:
        return "Not used by this model"
    name = fields.label or "This model"
    return f"{name}: the guidance strength the model was distilled with (default {fields.distilled_cfg:g})"


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def follow(value: Any, new_default: float | None, defaults: set[float]) -> Any:
    """The new value of a field: the new family's default when the field holds another family's default, else
    *value* unchanged."""
    current = _number(value)
    if new_default is None or current is None or current == new_default or current not in defaults:
        return value
    return new_default


def updates(family: str, values: list[Any], *, switched: bool) -> list[Any]:
    """Component updates for one tab: ``[distilled, shift, cfg, slg row]`` from ``values`` = ``[distilled, cfg]``."""
    import gradio as gr

    fields = fields_of(family)
    distilled, cfg = values
    shown = fields.distilled_cfg is not None
    new_distilled = follow(distilled, fields.distilled_cfg, _DISTILLED_DEFAULTS) if shown else distilled
    new_cfg = follow(cfg, fields.cfg_scale, _CFG_DEFAULTS) if switched else cfg
    distilled_update = {"visible": shown, "info": distilled_info(fields)}
    if new_distilled != distilled:  # write a value only when it changes (the user may be typing in it)
        distilled_update["value"] = new_distilled
    return [
        gr.update(**distilled_update),
        gr.update(visible=fields.flow),
        gr.update() if new_cfg == cfg else gr.update(value=new_cfg),
        gr.update(visible=fields.skip_layers),
    ]


def wire(ctx: Any, demo: Any, tabs: Any, checkpoint: Any, forms: list[Any]) -> None:
    """Show the fields of the selected checkpoint's family in every form: on page load, on a top-level tab switch
    (the setting may have changed elsewhere), when the checkpoint control changes (the user, or the 🔄 refresh), and
    follow the family's defaults when the user picks another checkpoint."""
    outputs = [c for f in forms for c in [f.components[n] for n in ("distilled_cfg_scale", "shift", "cfg_scale")]
               + [f.extra["slg_row"]]]
    inputs = [f.components[n] for f in forms for n in ("distilled_cfg_scale", "cfg_scale")]

    def handler(title: Callable[[tuple[Any, ...]], str | None], switched: bool) -> Callable[..., list[Any]]:
        def run(*args: Any) -> list[Any]:
            family = checkpoint_family(ctx, title(args))
            values = args[len(args) - len(inputs):]
            out: list[Any] = []
            for i in range(len(forms)):
                out += updates(family, list(values[2 * i:2 * i + 2]), switched=switched)
            return out

        return run

    stored = handler(lambda args: None, switched=False)  # the setting (or what a job would load)
    for trigger in [demo.load] + ([tabs.select] if tabs is not None else []):
        trigger(stored, inputs, outputs, queue=False, show_progress="hidden")
    if checkpoint is None:
        return
    picked = [checkpoint, *inputs]
    checkpoint.change(handler(lambda args: args[0], switched=False), picked, outputs, queue=False,
                      show_progress="hidden")
    checkpoint.input(handler(lambda args: args[0], switched=True), picked, outputs, queue=False,
                     show_progress="hidden")
