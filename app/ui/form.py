"""The generation form: which fields the txt2img/img2img tabs show and how they map to `GenerationParams`.

Pure (no gradio, no torch): the gradio tabs, Paste, "Send to", last-used values and generate-forever all go
through `values_to_params` / `params_to_values`, so there is one mapping between the UI and the job.

- `FieldSpec` describes one input: its name (stable id), A1111 label (the ui-config.json key part), component
  kind, default, range, elem_id, and the ui-config prefix (`txt2img` or `customscript/<script>.py/txt2img`).
- `fields_for(kind)` gives the ordered specs of a tab; the gradio handlers receive values in this order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.infotext.paste import SETTING_MAPPINGS
from app.params import (
    INPAINT_AREAS,
    LATENT_UPSCALE_MODES,
    MASK_MODES,
    MASKED_CONTENT,
    RESIZE_MODES,
    GenerationParams,
    HiresParams,
    Img2ImgParams,
    ScriptParams,
    SeedParams,
    format_layers,
    parse_layers,
)

SAME_CHECKPOINT = "Use same checkpoint"
SAME_SAMPLER = "Use same sampler"
SAME_SCHEDULER = "Use same scheduler"
NO_SCRIPT = "None"
RESIZE_TO = "Resize to"
RESIZE_BY = "Resize by"
SEED_KEYS = ("Variation seed", "Variation seed strength", "Seed resize from-1", "Seed resize from-2")


@dataclass(frozen=True)
class FieldSpec:
    """One input of the generation form.

    `choices` is a tuple, or a string naming a dynamic list the UI fills at build time ("samplers",
    "schedulers", "hr_upscalers", "styles", "scripts", "hr_checkpoints", "hr_samplers", "hr_schedulers",
    "refiner_checkpoints").
    `script` puts the ui-config key under `customscript/<script>/<tab>/` as A1111 does for its built-in scripts.
    """

    name: str
    label: str
    kind: str  # textbox | slider | dropdown | checkbox | number | radio
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] | str | None = None
    script: str | None = None
    elem: str | None = None  # elem_id without the tab prefix
    lines: int = 1
    multiselect: bool = False
    precision: int | None = None

    def elem_id(self, tab: str) -> str:
        return f"{tab}_{self.elem or self.name}"

    def config_prefix(self, tab: str) -> str:
        return f"customscript/{self.script}/{tab}" if self.script else tab

    def config_key(self, tab: str, field: str = "value") -> str:
        return f"{self.config_prefix(tab)}/{self.label}/{field}"


def _f(*args: Any, **kwargs: Any) -> FieldSpec:
    return FieldSpec(*args, **kwargs)


PROMPT_FIELDS = (
    _f("prompt", "Prompt", "textbox", "", lines=3),
    _f("negative_prompt", "Negative prompt", "textbox", "", lines=3, elem="neg_prompt"),
    _f("styles", "Styles", "dropdown", [], choices="styles", multiselect=True),
)
SAMPLER_FIELDS = (
    _f("sampler_name", "Sampling method", "dropdown", "DPM++ 2M", choices="samplers", script="sampler.py",
       elem="sampling"),
    _f("scheduler", "Schedule type", "dropdown", "Automatic", choices="schedulers", script="sampler.py"),
    _f("steps", "Sampling steps", "slider", 20, 1, 150, 1, script="sampler.py"),
    # flow-matching models (Z-Image, FLUX): 0 = the model's own shift; SD models ignore it
    _f("shift", "Shift", "number", 0.0, 0.0, 100.0, 0.05, script="sampler.py"),
    _f("unconditional_first_steps", "Unconditional first steps", "number", 0, 0, 150, 1, script="sampler.py",
       precision=0),
)
SIZE_FIELDS = (
    _f("width", "Width", "slider", 512, 64, 2048, 8),
    _f("height", "Height", "slider", 512, 64, 2048, 8),
)
BATCH_FIELDS = (
    _f("n_iter", "Batch count", "slider", 1, 1, 100, 1, elem="batch_count"),
    _f("batch_size", "Batch size", "slider", 1, 1, 8, 1),
    _f("cfg_scale", "CFG Scale", "slider", 7.0, 1.0, 30.0, 0.5),
    # FLUX.1 dev's guidance input (Forge's name); other models ignore it
    _f("distilled_cfg_scale", "Distilled CFG Scale", "slider", 3.5, 0.0, 30.0, 0.1),
    # SD3.5 skip-layer guidance (shown for SD3.5 only; scale 0 = off; app.engine.sampling.skip_layers)
    _f("skip_layer_guidance_scale", "SLG scale", "slider", 0.0, 0.0, 10.0, 0.1, elem="slg_scale"),
    _f("skip_guidance_layers", "SLG layers", "textbox", "7, 8, 9", elem="slg_layers"),
    _f("skip_layer_guidance_start", "SLG start", "slider", 0.01, 0.0, 1.0, 0.01, elem="slg_start"),
    _f("skip_layer_guidance_stop", "SLG stop", "slider", 0.2, 0.0, 1.0, 0.01, elem="slg_stop"),
)
SEED_FIELDS = (
    _f("seed", "Seed", "number", -1, script="seed.py", precision=0),
    _f("seed_extra", "Extra", "checkbox", False, script="seed.py", elem="subseed_show"),
    _f("subseed", "Variation seed", "number", -1, script="seed.py", precision=0),
    _f("subseed_strength", "Variation strength", "slider", 0.0, 0.0, 1.0, 0.01, script="seed.py"),
    _f("seed_resize_from_w", "Resize seed from width", "slider", 0, 0, 2048, 8, script="seed.py"),
    _f("seed_resize_from_h", "Resize seed from height", "slider", 0, 0, 2048, 8, script="seed.py"),
)
HIRES_FIELDS = (
    _f("enable_hr", "Hires. fix", "checkbox", False, elem="hr"),
    _f("hr_upscaler", "Upscaler", "dropdown", "Latent", choices="hr_upscalers"),
    _f("hr_second_pass_steps", "Hires steps", "slider", 0, 0, 150, 1, elem="hires_steps"),
    _f("denoising_strength", "Denoising strength", "slider", 0.7, 0.0, 1.0, 0.01),
    _f("hr_scale", "Upscale by", "slider", 2.0, 1.0, 4.0, 0.05),
    _f("hr_resize_x", "Resize width to", "slider", 0, 0, 2048, 8),
    _f("hr_resize_y", "Resize height to", "slider", 0, 0, 2048, 8),
    _f("hr_checkpoint_name", "Hires checkpoint", "dropdown", SAME_CHECKPOINT, choices="hr_checkpoints",
       elem="hr_checkpoint"),
    _f("hr_sampler_name", "Hires sampling method", "dropdown", SAME_SAMPLER, choices="hr_samplers",
       elem="hr_sampler"),
    _f("hr_scheduler", "Hires schedule type", "dropdown", SAME_SCHEDULER, choices="hr_schedulers"),
    _f("hr_prompt", "Hires prompt", "textbox", "", lines=3),
    _f("hr_negative_prompt", "Hires negative prompt", "textbox", "", lines=3, elem="hr_neg_prompt"),
)
#: A1111's Refiner script (`processing_scripts/refiner.py`): the accordion's checkbox, the checkpoint ("" = none), the
#: fraction of the steps after which the refiner takes over.
REFINER_FIELDS = (
    _f("enable_refiner", "Refiner", "checkbox", False, script="refiner.py", elem="enable"),
    _f("refiner_checkpoint", "Checkpoint", "dropdown", "", choices="refiner_checkpoints", script="refiner.py",
       elem="checkpoint"),
    _f("refiner_switch_at", "Switch at", "slider", 0.8, 0.01, 1.0, 0.01, script="refiner.py", elem="switch_at"),
)
SCRIPT_FIELDS = (
    _f("override_settings", "Override settings", "dropdown", [], choices=(), multiselect=True),
    _f("script_name", "Script", "dropdown", NO_SCRIPT, choices="scripts", elem="script"),
)
IMG2IMG_FIELDS = (
    _f("resize_mode", "Resize mode", "radio", RESIZE_MODES[0], choices=RESIZE_MODES),
    _f("resize_tab", "Resize", "radio", RESIZE_TO, choices=(RESIZE_TO, RESIZE_BY)),
    _f("scale_by", "Scale", "slider", 1.0, 0.05, 4.0, 0.05),
    _f("image_cfg_scale", "Image CFG Scale", "slider", 1.5, 0.0, 3.0, 0.05),
    _f("denoising_strength", "Denoising strength", "slider", 0.75, 0.0, 1.0, 0.01),
    _f("mask_blur", "Mask blur", "slider", 4, 0, 64, 1),
    _f("mask_alpha", "Mask transparency", "slider", 0, 0, 100, 1),
    _f("inpainting_mask_invert", "Mask mode", "radio", MASK_MODES[0], choices=MASK_MODES, elem="mask_mode"),
    _f("inpainting_fill", "Masked content", "radio", MASKED_CONTENT[1], choices=MASKED_CONTENT),
    _f("inpaint_full_res", "Inpaint area", "radio", INPAINT_AREAS[0], choices=INPAINT_AREAS),
    _f("inpaint_full_res_padding", "Only masked padding, pixels", "slider", 32, 0, 256, 4),
)

TXT2IMG = (PROMPT_FIELDS + SAMPLER_FIELDS + HIRES_FIELDS + REFINER_FIELDS + SIZE_FIELDS + BATCH_FIELDS + SEED_FIELDS
           + SCRIPT_FIELDS)
IMG2IMG = (PROMPT_FIELDS + SAMPLER_FIELDS + REFINER_FIELDS + SIZE_FIELDS + BATCH_FIELDS + SEED_FIELDS + IMG2IMG_FIELDS
           + SCRIPT_FIELDS)


def fields_for(kind: str) -> tuple[FieldSpec, ...]:
    if kind == "txt2img":
        return TXT2IMG
    if kind == "img2img":
        return IMG2IMG
    raise ValueError(f"unknown form kind {kind!r} (txt2img or img2img)")


def defaults(kind: str) -> dict[str, Any]:
    return {spec.name: (list(spec.default) if isinstance(spec.default, list) else spec.default)
            for spec in fields_for(kind)}


# -- conversions ------------------------------------------------------------------------------------------------
def number(value: Any, name: str) -> int | float:
    """A slider/number value as int when whole (infotext then says `CFG scale: 7`, like A1111), else float."""
    if isinstance(value, bool) or value is None or value == "":
        raise ValueError(f"{name}: expected a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return int(x) if x.is_integer() else x


def negative_prompt_note(cfg_scale: Any) -> str:
    """The note under the negative prompt: at CFG 1 the engine skips the unconditional pass, so the
    negative prompt has no effect (empty text otherwise)."""
    try:
        inactive = float(cfg_scale) == 1.0
    except (TypeError, ValueError):
        return ""
    return "<span class='atelier-note'>CFG scale 1: the negative prompt is inactive</span>" if inactive else ""


def integer(value: Any, name: str) -> int:
    return int(round(number(value, name)))


def _index(value: Any, choices: Sequence[str], name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(choices):
        return value
    if value in choices:
        return list(choices).index(value)
    raise ValueError(f"{name}: {value!r} is not one of {list(choices)}")


def _layers(value: Any) -> list[int]:
    """The "SLG layers" text ("7, 8, 9") as block numbers; a bad entry is an error naming the field."""
    try:
        return list(parse_layers(value if value is not None else ""))
    except ValueError as exc:
        raise ValueError(f"SLG layers: {str(exc).removeprefix('skip_guidance_layers: ')}") from None


def _same(value: Any, marker: str) -> str:
    return "" if value in (None, "", marker) else str(value)


#: Override entries that travel as request fields (model selection), not as settings overrides.
MODEL_OVERRIDES = {"Clip skip": "clip_skip", "VAE": "vae", "Model": "checkpoint"}


def parse_overrides(entries: Sequence[str] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """"Override settings" entries (`"ENSD: 31337"`, `"Clip skip: 2"`) → `({setting_key: value},
    {params_field: value})`; an unknown key or a bad value raises ValueError naming the entry."""
    by_label = {m.infotext: m for m in SETTING_MAPPINGS}
    settings: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for entry in entries or ():
        label, sep, raw = str(entry).partition(":")
        label, raw = label.strip(), raw.strip()
        mapping = by_label.get(label)
        if not sep or (mapping is None and label not in MODEL_OVERRIDES):
            raise ValueError(f"Override settings: cannot read {entry!r} (expected 'Key: value' with a known key)")
        try:
            if mapping is not None:
                settings[mapping.setting] = mapping.cast(raw)
            elif label == "Clip skip":
                model["clip_skip"] = integer(raw, "Override settings: Clip skip")
            else:
                model[MODEL_OVERRIDES[label]] = raw
        except (TypeError, ValueError):
            raise ValueError(f"Override settings: bad value in {entry!r}") from None
    return settings, model


def format_overrides(overrides: Mapping[str, Any], params: GenerationParams | None = None) -> list[str]:
    """`{setting_key: value}` (+ the model selection of `params`) → "Override settings" entries."""
    by_setting = {m.setting: m.infotext for m in SETTING_MAPPINGS}
    entries = []
    if params is not None:
        entries += [f"{label}: {getattr(params, name)}" for label, name in MODEL_OVERRIDES.items()
                    if getattr(params, name)]
    return entries + [f"{by_setting[k]}: {v}" for k, v in overrides.items() if k in by_setting]


def values_to_params(kind: str, values: Mapping[str, Any]) -> GenerationParams:
    """Form values (by field name; missing ones take the defaults) → GenerationParams. Bad values → ValueError
    naming the field. img2img images are not form values: the caller attaches them to `params.img2img`."""
    v = {**defaults(kind), **{k: val for k, val in values.items() if k in {s.name for s in fields_for(kind)}}}
    extra = bool(v["seed_extra"])
    seed = SeedParams(
        seed=integer(v["seed"], "Seed"),
        subseed=integer(v["subseed"], "Variation seed") if extra else -1,
        subseed_strength=number(v["subseed_strength"], "Variation strength") if extra else 0,
        seed_resize_from_w=integer(v["seed_resize_from_w"], "Resize seed from width") if extra else 0,
        seed_resize_from_h=integer(v["seed_resize_from_h"], "Resize seed from height") if extra else 0,
    )
    params = GenerationParams(
        prompt=str(v["prompt"] or ""),
        negative_prompt=str(v["negative_prompt"] or ""),
        styles=[str(s) for s in (v["styles"] or [])],
        sampler_name=str(v["sampler_name"]),
        scheduler=str(v["scheduler"] or "Automatic"),
        steps=integer(v["steps"], "Sampling steps"),
        cfg_scale=number(v["cfg_scale"], "CFG Scale"),
        width=integer(v["width"], "Width"),
        height=integer(v["height"], "Height"),
        batch_size=integer(v["batch_size"], "Batch size"),
        n_iter=integer(v["n_iter"], "Batch count"),
        seed=seed,
        shift=float(number(v["shift"], "Shift")) or None,
        unconditional_first_steps=integer(v["unconditional_first_steps"], "Unconditional first steps"),
        distilled_cfg_scale=float(number(v["distilled_cfg_scale"], "Distilled CFG Scale")),
        skip_layer_guidance_scale=float(number(v["skip_layer_guidance_scale"], "SLG scale")),
        skip_guidance_layers=_layers(v["skip_guidance_layers"]),
        skip_layer_guidance_start=float(number(v["skip_layer_guidance_start"], "SLG start")),
        skip_layer_guidance_stop=float(number(v["skip_layer_guidance_stop"], "SLG stop")),
    )
    if v["enable_refiner"] and str(v["refiner_checkpoint"] or "") not in ("", "None"):
        params.refiner_checkpoint = str(v["refiner_checkpoint"])
    params.refiner_switch_at = float(number(v["refiner_switch_at"], "Switch at"))
    if not 0.0 <= params.refiner_switch_at <= 1.0:
        raise ValueError(f"Switch at: must be between 0 and 1, got {params.refiner_switch_at}")
    if params.shift is not None and params.shift < 0:
        raise ValueError(f"Shift: must be 0 (the model's default) or positive, got {params.shift}")
    if params.unconditional_first_steps < 0:
        raise ValueError(f"Unconditional first steps: must be 0 or more, got {params.unconditional_first_steps}")
    params.override_settings, model = parse_overrides(v["override_settings"])
    for name, value in model.items():
        setattr(params, name, value)
    if params.steps < 1:
        raise ValueError(f"Sampling steps: must be at least 1, got {params.steps}")
    for label, size in (("Width", params.width), ("Height", params.height)):
        if size < 8 or size % 8:
            raise ValueError(f"{label}: must be a positive multiple of 8, got {size}")
    if params.batch_size < 1 or params.n_iter < 1:
        raise ValueError("Batch count and Batch size must be at least 1")
    script = str(v["script_name"] or NO_SCRIPT)
    if script != NO_SCRIPT:
        params.script = ScriptParams(name=script, args=[])
    if kind == "txt2img":
        params.hires = HiresParams(
            enabled=bool(v["enable_hr"]),
            upscaler=str(v["hr_upscaler"] or "Latent"),
            scale=number(v["hr_scale"], "Upscale by"),
            resize_x=integer(v["hr_resize_x"], "Resize width to"),
            resize_y=integer(v["hr_resize_y"], "Resize height to"),
            steps=integer(v["hr_second_pass_steps"], "Hires steps"),
            denoising_strength=number(v["denoising_strength"], "Denoising strength"),
            checkpoint=_same(v["hr_checkpoint_name"], SAME_CHECKPOINT),
            sampler_name=_same(v["hr_sampler_name"], SAME_SAMPLER),
            scheduler=_same(v["hr_scheduler"], SAME_SCHEDULER),
            prompt=str(v["hr_prompt"] or ""),
            negative_prompt=str(v["hr_negative_prompt"] or ""),
        )
    else:
        blur = integer(v["mask_blur"], "Mask blur")
        params.img2img = Img2ImgParams(
            resize_mode=_index(v["resize_mode"], RESIZE_MODES, "Resize mode"),
            denoising_strength=number(v["denoising_strength"], "Denoising strength"),
            image_cfg_scale=number(v["image_cfg_scale"], "Image CFG Scale"),
            scale_by=number(v["scale_by"], "Scale") if v["resize_tab"] == RESIZE_BY else None,
            mask_blur_x=blur,
            mask_blur_y=blur,
            inpainting_fill=_index(v["inpainting_fill"], MASKED_CONTENT, "Masked content"),
            inpaint_full_res=_index(v["inpaint_full_res"], INPAINT_AREAS, "Inpaint area") == 1,
            inpaint_full_res_padding=integer(v["inpaint_full_res_padding"], "Only masked padding, pixels"),
            inpainting_mask_invert=_index(v["inpainting_mask_invert"], MASK_MODES, "Mask mode"),
        )
    return params


def params_to_values(kind: str, params: GenerationParams, overrides: Mapping[str, Any] | None = None,
                     seed_extra: bool | None = None) -> dict[str, Any]:
    """GenerationParams → form values by field name (the inverse of `values_to_params` for the form's fields)."""
    s = params.seed
    extra = seed_extra if seed_extra is not None else bool(
        s.subseed_strength or s.seed_resize_from_w or s.seed_resize_from_h)
    values: dict[str, Any] = {
        "prompt": params.prompt, "negative_prompt": params.negative_prompt, "styles": list(params.styles),
        "sampler_name": params.sampler_name, "scheduler": params.scheduler, "steps": params.steps,
        "shift": params.shift or 0.0, "unconditional_first_steps": params.unconditional_first_steps,
        "distilled_cfg_scale": 3.5 if params.distilled_cfg_scale is None else params.distilled_cfg_scale,
        "skip_layer_guidance_scale": params.skip_layer_guidance_scale,
        "skip_guidance_layers": format_layers(params.skip_guidance_layers),
        "skip_layer_guidance_start": params.skip_layer_guidance_start,
        "skip_layer_guidance_stop": params.skip_layer_guidance_stop,
        "width": params.width, "height": params.height, "n_iter": params.n_iter, "batch_size": params.batch_size,
        "cfg_scale": params.cfg_scale, "seed": s.seed, "seed_extra": extra, "subseed": s.subseed,
        "subseed_strength": s.subseed_strength, "seed_resize_from_w": s.seed_resize_from_w,
        "seed_resize_from_h": s.seed_resize_from_h,
        "override_settings": format_overrides({**params.override_settings, **(overrides or {})}, params),
        "script_name": params.script.name if params.script else NO_SCRIPT,
        "enable_refiner": bool(params.refiner_checkpoint), "refiner_checkpoint": params.refiner_checkpoint,
        "refiner_switch_at": 0.0 if params.refiner_switch_at is None else params.refiner_switch_at,  # None: from step 1
    }
    if kind == "txt2img":
        h = params.hires
        values.update({
            "enable_hr": h.enabled, "hr_upscaler": h.upscaler, "hr_second_pass_steps": h.steps,
            "denoising_strength": h.denoising_strength, "hr_scale": h.scale, "hr_resize_x": h.resize_x,
            "hr_resize_y": h.resize_y, "hr_checkpoint_name": h.checkpoint or SAME_CHECKPOINT,
            "hr_sampler_name": h.sampler_name or SAME_SAMPLER, "hr_scheduler": h.scheduler or SAME_SCHEDULER,
            "hr_prompt": h.prompt, "hr_negative_prompt": h.negative_prompt,
        })
    elif params.img2img is not None:
        i = params.img2img
        values.update({
            "resize_mode": RESIZE_MODES[i.resize_mode], "denoising_strength": i.denoising_strength,
            "image_cfg_scale": i.image_cfg_scale if i.image_cfg_scale is not None else 1.5,
            "resize_tab": RESIZE_BY if i.scale_by is not None else RESIZE_TO,
            "scale_by": i.scale_by if i.scale_by is not None else 1.0,
            "mask_blur": i.mask_blur_x, "inpainting_mask_invert": MASK_MODES[i.inpainting_mask_invert],
            "inpainting_fill": MASKED_CONTENT[i.inpainting_fill],
            "inpaint_full_res": INPAINT_AREAS[1 if i.inpaint_full_res else 0],
            "inpaint_full_res_padding": i.inpaint_full_res_padding,
        })
    return values


def hires_upscaler_choices(upscaler_names: Sequence[str]) -> list[str]:
    return [*LATENT_UPSCALE_MODES, *[n for n in upscaler_names if n not in LATENT_UPSCALE_MODES]]
