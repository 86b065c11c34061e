"""The axis types of the "X/Y/Z plot" script (A1111 1.10 ``scripts/xyz_grid.py``, spec §8.2), pure: no torch.

``AXES`` is A1111's list in A1111's order. The API sends an axis type as an index into the list of the job's
mode (``axes_for("txt2img")`` leaves out the img2img-only axes and the other way round, exactly as A1111's
``AxisOptionTxt2Img``/``AxisOptionImg2Img`` filter it), so the order here is part of the API. Axes our engine
cannot apply (FP8 mode, token merging, face restoration) keep their place and give a clear error when chosen; our
own axes ("Shift" for flow models) come after A1111's, so A1111's indices stay valid. Axes extensions add through
the A1111 layer (``xyz_grid.axis_options``, ``app.plugins.hooks.xyz_axis_options``) come after ours, in the order
they were added (``from_options``): their indices depend on the extensions installed.

``apply`` changes one cell's ``GenerationParams`` for one axis value; ``label`` is the text on the grid.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

BOTH = ("txt2img", "img2img")
TXT2IMG = ("txt2img",)
IMG2IMG = ("img2img",)


@dataclass(frozen=True)
class Axis:
    """One axis type. ``kind``: how its values are typed (``none``, ``int``, ``float``, ``str``, ``permutations``,
    ``size``); ``target``: what it changes (see ``apply``); ``choices``: the name of its choice list (the values
    dropdown in the UI, validation of typed values), None for free values; ``fmt``: how a value is labelled
    (``label`` = "Label: value", ``value``, ``join``, ``nothing``, ``basename``); ``cost``: how slow changing the
    value is (the most costly axis is the outer loop); ``unavailable``: why our engine cannot apply it; ``ext``: an
    extension's A1111 ``AxisOption`` (target ``extension``; its choices, labels and apply are its own)."""

    label: str
    kind: str
    target: str
    modes: tuple[str, ...] = BOTH
    choices: str | None = None
    fmt: str = "label"
    cost: float = 0.0
    unavailable: str = ""
    ext: Any = field(default=None, compare=False, repr=False)


def _na(label: str, kind: str, why: str, **kw: Any) -> Axis:
    return Axis(label, kind, "", unavailable=why, **kw)


_NO_TOME = "token merging is not implemented in this engine"
AXES: tuple[Axis, ...] = (
    Axis("Nothing", "none", "", fmt="nothing"),
    Axis("Seed", "int", "seed"),
    Axis("Var. seed", "int", "subseed"),
    Axis("Var. strength", "float", "subseed_strength"),
    Axis("Steps", "int", "steps"),
    Axis("Hires steps", "int", "hr_steps", TXT2IMG),
    Axis("CFG Scale", "float", "cfg_scale"),
    Axis("Image CFG Scale", "float", "image_cfg_scale", IMG2IMG),
    Axis("Prompt S/R", "str", "prompt_sr", fmt="value"),
    Axis("Prompt order", "permutations", "prompt_order", fmt="join"),
    Axis("Sampler", "str", "sampler_name", TXT2IMG, choices="samplers", fmt="value"),
    Axis("Hires sampler", "str", "hr_sampler_name", TXT2IMG, choices="samplers"),
    Axis("Sampler", "str", "sampler_name", IMG2IMG, choices="samplers", fmt="value"),
    Axis("Checkpoint name", "str", "checkpoint", choices="checkpoints", fmt="basename", cost=1.0),
    Axis("Negative Guidance minimum sigma", "float", "override:s_min_uncond"),
    Axis("Sigma Churn", "float", "override:s_churn"),
    Axis("Sigma min", "float", "override:s_tmin"),
    Axis("Sigma max", "float", "override:s_tmax"),
    Axis("Sigma noise", "float", "override:s_noise"),
    Axis("Schedule type", "str", "scheduler", choices="schedulers"),
    Axis("Schedule min sigma", "float", "override:sigma_min"),
    Axis("Schedule max sigma", "float", "override:sigma_max"),
    Axis("Schedule rho", "float", "override:rho"),
    Axis("Beta schedule alpha", "float", "override:beta_dist_alpha"),
    Axis("Beta schedule beta", "float", "override:beta_dist_beta"),
    Axis("Eta", "float", "eta"),
    Axis("Clip skip", "int", "clip_skip"),
    Axis("Denoising", "float", "denoising"),
    Axis("Initial noise multiplier", "float", "initial_noise"),
    Axis("Extra noise", "float", "override:img2img_extra_noise"),
    Axis("Hires upscaler", "str", "hr_upscaler", TXT2IMG, choices="hr_upscalers"),
    Axis("Cond. Image Mask Weight", "float", "override:inpainting_mask_weight", IMG2IMG),
    Axis("VAE", "str", "vae", choices="vaes", cost=0.7),
    Axis("Styles", "str", "styles", choices="styles"),
    Axis("UniPC Order", "int", "uni_pc_order", cost=0.5),
    _na("Face restore", "str", "face restoration is not available in this engine", fmt="value"),
    _na("Token merging ratio", "float", _NO_TOME),
    _na("Token merging ratio high-res", "float", _NO_TOME),
    Axis("Always discard next-to-last sigma", "str", "override_bool:always_discard_next_to_last_sigma",
         choices="booleans"),
    Axis("SGM noise multiplier", "str", "override_bool:sgm_noise_multiplier", choices="booleans"),
    Axis("Refiner checkpoint", "str", "field:refiner_checkpoint", choices="checkpoints_or_none", fmt="basename",
         cost=1.0),
    Axis("Refiner switch at", "float", "field:refiner_switch_at"),
    Axis("RNG source", "str", "override:randn_source", choices="rng_sources"),
    _na("FP8 mode", "str", "FP8 weight storage is chosen per file here (no FP8 mode setting)", cost=0.9,
        choices="fp8_modes"),
    Axis("Size", "size", "size"),
    # ours, after A1111's list (its indices unchanged): the time shift of flow models (Z-Image, FLUX, SD3.5)
    Axis("Shift", "float", "shift"),
)

#: Fixed choice lists (the others come from the models, styles and samplers on hand).
STATIC_CHOICES: dict[str, tuple[str, ...]] = {
    "booleans": ("False", "True"),
    "rng_sources": ("GPU", "CPU", "NV"),
    "fp8_modes": ("Disable", "Enable for SDXL", "Enable"),
}


def from_options(options: Sequence[Any]) -> tuple[Axis, ...]:
    """Extensions' A1111 ``AxisOption``s (``app.plugins.hooks.xyz_axis_options``) as axes; an option's
    ``is_img2img`` (``AxisOptionImg2Img`` / ``AxisOptionTxt2Img``) limits it to one mode, as A1111."""
    out = []
    for opt in options:
        only = getattr(opt, "is_img2img", None)
        modes = BOTH if only is None else (IMG2IMG if only else TXT2IMG)
        out.append(Axis(str(opt.label), opt.value_kind, "extension", modes,
                        choices="extension" if getattr(opt, "choices", None) is not None else None,
                        fmt="extension", cost=float(getattr(opt, "cost", 0.0) or 0.0), ext=opt))
    return tuple(out)


def axes_for(kind: str, extra: Sequence[Axis] = ()) -> list[Axis]:
    """The axis list of a mode ("txt2img" or "img2img"): the indices the API and the UI dropdowns use; *extra*
    (``from_options``) are the extensions' axes, after ours."""
    if kind not in BOTH:
        raise ValueError(f"X/Y/Z plot: unknown mode {kind!r}")
    return [a for a in (*AXES, *extra) if kind in a.modes]


def find_axis(kind: str, value: Any, which: str = "X", extra: Sequence[Axis] = ()) -> Axis:
    """The axis a ``*_type`` arg names: its index in ``axes_for(kind, extra)`` (None = Nothing, as A1111) or its
    label."""
    axes = axes_for(kind, extra)
    if value is None or value == "":
        return axes[0]
    if isinstance(value, bool):
        raise ValueError(f"{which} type must be an axis index or name, got {value!r}")
    if isinstance(value, int | float) and float(value).is_integer():
        index = int(value)
        if not 0 <= index < len(axes):
            raise ValueError(f"{which} type: index {index} is out of range for {kind} (0..{len(axes) - 1})")
        return axes[index]
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return find_axis(kind, int(text), which, extra)
        for axis in axes:
            if axis.label.lower() == text.lower():
                return axis
    raise ValueError(f"{which} type: unknown axis {value!r} for {kind}")


def unavailable_reason(axis: Axis, kind: str) -> str:
    """Why *axis* cannot be used for a *kind* job here ("" when it can)."""
    if axis.unavailable:
        return axis.unavailable
    if axis.target == "initial_noise" and kind != "img2img":
        return "only img2img uses the initial noise multiplier"
    return ""


def label(axis: Axis, value: Any) -> str:
    """The grid label of one value (A1111's format_value functions)."""
    if axis.fmt == "nothing":
        return ""
    if axis.ext is not None:
        return axis.ext.label_for(value)
    if isinstance(value, float):
        value = round(value, 8)
    if axis.fmt == "value":
        return str(value)
    if axis.fmt == "join":
        return ", ".join(value)
    if axis.fmt == "basename":
        return os.path.basename(str(value))
    return f"{axis.label}: {value}"


def apply(params: Any, axis: Axis, value: Any, values: Sequence[Any]) -> None:
    """Change *params* (one cell's copy) for *value* of *axis*; *values* are all of the axis's values."""
    target = axis.target
    if axis.kind == "none":
        return
    if target == "extension":
        axis.ext.apply_to_params(params, value, values)
    elif target.startswith("override:"):
        params.override_settings[target.split(":", 1)[1]] = value
    elif target.startswith("override_bool:"):
        params.override_settings[target.split(":", 1)[1]] = str(value).strip().lower() == "true"
    elif target.startswith("field:"):
        setattr(params, target.split(":", 1)[1], "" if value in ("None", "none") else value)  # "" = no refiner
    elif target in _SIMPLE:
        obj, name = _SIMPLE[target](params)
        setattr(obj, name, value)
    elif target == "prompt_sr":
        params.prompt = params.prompt.replace(values[0], value)
        params.negative_prompt = params.negative_prompt.replace(values[0], value)
    elif target == "prompt_order":
        params.prompt = reorder_prompt(params.prompt, value)
    elif target == "denoising":
        (params.img2img if params.img2img is not None else params.hires).denoising_strength = value
    elif target == "styles":
        params.styles = list(params.styles) + [s for s in str(value).split(",") if s]
    elif target == "size":
        params.width, params.height = value
    elif target == "uni_pc_order":  # A1111: at most steps - 1
        params.override_settings["uni_pc_order"] = max(1, min(int(value), int(params.steps) - 1))
    else:
        raise ValueError(f"X/Y/Z plot: the axis {axis.label!r} cannot be applied")


def _img2img(params: Any) -> Any:
    if params.img2img is None:
        raise ValueError("this axis needs an img2img job")
    return params.img2img


_SIMPLE = {
    "seed": lambda p: (p.seed, "seed"),
    "subseed": lambda p: (p.seed, "subseed"),
    "subseed_strength": lambda p: (p.seed, "subseed_strength"),
    "steps": lambda p: (p, "steps"),
    "hr_steps": lambda p: (p.hires, "steps"),
    "cfg_scale": lambda p: (p, "cfg_scale"),
    "image_cfg_scale": lambda p: (_img2img(p), "image_cfg_scale"),
    "sampler_name": lambda p: (p, "sampler_name"),
    "hr_sampler_name": lambda p: (p.hires, "sampler_name"),
    "checkpoint": lambda p: (p, "checkpoint"),
    "scheduler": lambda p: (p, "scheduler"),
    "eta": lambda p: (p, "eta"),
    "clip_skip": lambda p: (p, "clip_skip"),
    "initial_noise": lambda p: (_img2img(p), "initial_noise_multiplier"),
    "hr_upscaler": lambda p: (p.hires, "upscaler"),
    "vae": lambda p: (p, "vae"),
    "shift": lambda p: (p, "shift"),
}


def reorder_prompt(prompt: str, order: Sequence[str]) -> str:
    """*prompt* with the tokens of *order* put in that order, at the places where the tokens were (A1111's
    "Prompt order": the tokens are taken out in order of first appearance and put back in *order*)."""
    found = sorted((prompt.find(token), token) for token in order)
    parts: list[str] = []
    rest = prompt
    for _, token in found:
        at = rest.find(token)
        parts.append(rest[:at])
        rest = rest[at + len(token):]
    return "".join(part + order[i] for i, part in enumerate(parts)) + rest
