"""GenerationParams: the one description of a generation job.

The UI builds it, the API schema maps to it 1:1, infotext formats and parses it, the engine
consumes it and plugins see it. Pure data: no torch, no gradio. Every field has the A1111 UI
default (the API applies its own defaults when it builds params, see app/api).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance  # typing only: the protocol `dataclasses.fields` accepts

_D = TypeVar("_D", bound="DataclassInstance")

#: Names of the latent upscale modes, in A1111's order (hires fix upscaler choices).
LATENT_UPSCALE_MODES: tuple[str, ...] = (
    "Latent",
    "Latent (antialiased)",
    "Latent (bicubic)",
    "Latent (bicubic antialiased)",
    "Latent (nearest)",
    "Latent (nearest-exact)",
)

RESIZE_MODES: tuple[str, ...] = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
MASK_MODES: tuple[str, ...] = ("Inpaint masked", "Inpaint not masked")
MASKED_CONTENT: tuple[str, ...] = ("fill", "original", "latent noise", "latent nothing")
INPAINT_AREAS: tuple[str, ...] = ("Whole picture", "Only masked")
#: Built-in selectable scripts (spec §8) the engine runs, title → the job kinds that offer them. The UI and the API
#: list exactly these; A1111's "Prompt matrix", "Prompts from file or textbox" and "X/Y/Z plot" join this table
#: when a runner handles them (`app.engine.modes.runners` dispatches by title).
RUNNABLE_SCRIPTS: dict[str, tuple[str, ...]] = {"SD upscale": ("img2img",)}
RUNNABLE_SCRIPTS.update({  # app.engine.scripts
    "Prompt matrix": ("txt2img", "img2img"), "Prompts from file or textbox": ("txt2img", "img2img"),
    "Loopback": ("img2img",), "Outpainting mk2": ("img2img",), "Poor man's outpainting": ("img2img",),
})
RUNNABLE_SCRIPTS["X/Y/Z plot"] = ("txt2img", "img2img")  # app.engine.scripts.xyz_plot


@dataclass
class SeedParams:
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_w: int = 0
    seed_resize_from_h: int = 0


@dataclass
class HiresParams:
    enabled: bool = False
    upscaler: str = "Latent"
    scale: float = 2.0
    resize_x: int = 0
    resize_y: int = 0
    steps: int = 0  # 0 = same as the first pass
    denoising_strength: float = 0.7
    checkpoint: str = ""  # "" = use same checkpoint
    sampler_name: str = ""  # "" = use same sampler
    scheduler: str = ""  # "" = use same scheduler
    prompt: str = ""
    negative_prompt: str = ""


@dataclass
class Img2ImgParams:
    """Present (not None) on a GenerationParams only for img2img / inpaint jobs.

    Images are PIL images in memory; the API and UI decode their inputs into PIL first.
    """

    init_images: list[Any] = field(default_factory=list)
    resize_mode: int = 0  # index into RESIZE_MODES
    denoising_strength: float = 0.75
    image_cfg_scale: float | None = None
    scale_by: float | None = None  # "Resize by" tab; None = "Resize to" (width/height)
    mask: Any = None  # PIL image or None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_round: bool = True
    inpainting_fill: int = 1  # index into MASKED_CONTENT (UI default "original")
    inpaint_full_res: bool = False  # "Only masked"
    inpaint_full_res_padding: int = 32
    inpainting_mask_invert: int = 0  # index into MASK_MODES
    initial_noise_multiplier: float = 1.0


@dataclass
class ScriptParams:
    """A selectable script (e.g. "SD upscale") with its positional args."""

    name: str = ""
    args: list[Any] = field(default_factory=list)


@dataclass
class GenerationParams:
    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] = field(default_factory=list)
    sampler_name: str = "DPM++ 2M"
    scheduler: str = "Automatic"
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    batch_size: int = 1
    n_iter: int = 1  # batch count
    seed: SeedParams = field(default_factory=SeedParams)
    hires: HiresParams = field(default_factory=HiresParams)
    img2img: Img2ImgParams | None = None
    tiling: bool = False
    eta: float | None = None
    #: Flow models' time shift (ComfyUI's ModelSamplingAuraFlow value); None = the model's default.
    shift: float | None = None
    #: The first N steps run with the empty prompt's conditioning, then the prompt takes over ("variety").
    unconditional_first_steps: int = 0
    #: FLUX.1 dev's distilled guidance ("Distilled CFG Scale", Forge's name); None = the family's default (3.5).
    distilled_cfg_scale: float | None = None
    #: SD3.5 skip-layer guidance (diffusers' names; ``app.engine.sampling.skip_layers``): scale 0 = off; the joint
    #: blocks to skip (SD3.5 medium's 7, 8, 9) and the fractions of the steps where it applies.
    skip_layer_guidance_scale: float = 0.0
    skip_guidance_layers: list[int] = field(default_factory=lambda: [7, 8, 9])
    skip_layer_guidance_start: float = 0.01
    skip_layer_guidance_stop: float = 0.2
    # Model selection travels with the request (never mutates global settings):
    checkpoint: str = ""  # title/alias; "" = the current sd_model_checkpoint setting
    vae: str = ""  # "" = the current sd_vae setting; else "Automatic" | "None" | file name
    clip_skip: int = 0  # 0 = the current CLIP_stop_at_last_layers setting
    #: Refiner (A1111 1.6+): this checkpoint (title/alias) takes over a pass at ``refiner_switch_at`` of it; "" = none.
    #: None (A1111's API default) switches at the first step: the refiner runs the whole pass.
    refiner_checkpoint: str = ""
    refiner_switch_at: float | None = 0.8
    override_settings: dict[str, Any] = field(default_factory=dict)
    # Output handling:
    save_images: bool = True
    save_grid: bool = True
    outpath_samples: str = ""  # "" = the outdir_* setting for the job kind
    script: ScriptParams | None = None
    #: Named values for plugins/extensions ("alwayson_scripts" args, declared extra fields).
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def is_img2img(self) -> bool:
        return self.img2img is not None

    @property
    def n_images(self) -> int:
        return self.batch_size * self.n_iter

    def copy(self) -> GenerationParams:
        """A deep copy (images inside img2img are copied by reference)."""
        img = self.img2img
        self.img2img = None
        try:
            clone = copy.deepcopy(self)
        finally:
            self.img2img = img
        if img is not None:
            clone.img2img = copy.copy(img)
            clone.img2img.init_images = list(img.init_images)
        return clone

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (images are left out)."""
        data = asdict(self.copy_without_images())
        return data

    def copy_without_images(self) -> GenerationParams:
        clone = self.copy()
        if clone.img2img is not None:
            clone.img2img.init_images = []
            clone.img2img.mask = None
        return clone

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationParams:
        """Build from a dict as produced by to_dict (unknown keys are rejected)."""
        return _from_dict(cls, data)


def _from_dict(kind: type[_D], data: dict[str, Any]) -> _D:
    names = {f.name: f for f in fields(kind)}
    unknown = set(data) - set(names)
    if unknown:
        raise ValueError(f"unknown {kind.__name__} fields: {', '.join(sorted(unknown))}")
    sub_types = {"seed": SeedParams, "hires": HiresParams, "img2img": Img2ImgParams, "script": ScriptParams}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        sub = sub_types.get(key) if kind is GenerationParams else None
        if sub is not None and isinstance(value, dict):
            kwargs[key] = _from_dict(sub, value)
        else:
            kwargs[key] = value
    return kind(**kwargs)


def replace_nested(obj: Any, **changes: Any) -> Any:
    """dataclasses.replace that also accepts dotted keys (``{"seed.seed": 5}``) via kwargs dict."""
    clone = obj.copy() if isinstance(obj, GenerationParams) else copy.copy(obj)
    for dotted, value in changes.items():
        target = clone
        *parents, last = dotted.split("__")
        for name in parents:
            target = getattr(target, name)
        if not hasattr(target, last) or not is_dataclass(target):
            raise AttributeError(f"no field {dotted!r}")
        setattr(target, last, value)
    return clone


def parse_layers(value: Any) -> tuple[int, ...]:
    """Skip-layer guidance's block indices from a list of ints or a text like ``"7, 8, 9"`` (the UI field, the
    infotext value); each once, in the given order. Negative or non-integer entries are a ValueError."""
    parts: list[Any]
    if isinstance(value, str):
        parts = [p for p in value.replace(",", " ").replace("[", " ").replace("]", " ").split() if p]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        raise ValueError(f"skip_guidance_layers: expected a list of block numbers, got {value!r}")
    layers: list[int] = []
    for part in parts:
        if isinstance(part, bool) or isinstance(part, float) and not part.is_integer():
            raise ValueError(f"skip_guidance_layers: {part!r} is not a block number")
        try:
            number = int(part)
        except (TypeError, ValueError):
            raise ValueError(f"skip_guidance_layers: {part!r} is not a block number") from None
        if number < 0:
            raise ValueError(f"skip_guidance_layers: {number} is negative")
        if number not in layers:
            layers.append(number)
    return tuple(layers)


def format_layers(layers: Iterable[int]) -> str:
    """The layer list as the infotext and the UI field write it: "7, 8, 9"."""
    return ", ".join(str(int(i)) for i in layers)


# -- validation of a finished GenerationParams (the API checks the params after the infotext is merged) ----------------
#: The latent grid of the Stable Diffusion families: one latent pixel is 8 image pixels, so image sizes are floored to a
#: multiple of 8 (as A1111 does). A family with another grid (Z-Image: 16) declares it as `size_multiple` on its loaded
#: model; `size_multiple(model)` is the one place that reads it.
DEFAULT_SIZE_MULTIPLE = 8
#: Smallest width/height (one latent pixel); 0 and negative sizes are impossible. There is no upper bound: the API's
#: memory limit is the setting `api_max_generation_megapixels` (app.api.convert), the UI's are its sliders.
MIN_SIZE = DEFAULT_SIZE_MULTIPLE
#: Smallest "Resize seed from" size the RNG can use (one latent pixel); 0 turns the option off.
MIN_SEED_RESIZE = 8


def size_multiple(model: Any = None) -> int:
    """The size grid of `model` (a loaded model or family adapter with a positive int `size_multiple`), else 8."""
    try:
        value = getattr(model, "size_multiple", None)
    except Exception:  # noqa: BLE001 - a handle whose attribute lookup fails has no grid of its own
        value = None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else DEFAULT_SIZE_MULTIPLE


def floor_to_grid(value: int, multiple: int = DEFAULT_SIZE_MULTIPLE) -> int:
    """`value` floored to a multiple of `multiple` (A1111 floors sizes to the latent grid: 100 → 96)."""
    return int(value) // multiple * multiple


@dataclass(frozen=True)
class Bound:
    """The allowed range of one numeric field: `field` is its A1111 API name, `path` where it lives in
    GenerationParams (dotted), `lo`/`hi` inclusive bounds (None = open), `off` a value that means "off" and is
    always allowed, `step` a required multiple."""

    field: str
    path: str
    lo: float | None = None
    hi: float | None = None
    off: float | None = None
    step: int | None = None

    def problem(self, value: Any) -> str | None:
        """Why `value` is not allowed (None when it is)."""
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return f"{value!r} is not a finite number"
        if self.off is not None and value == self.off:
            return None
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            lo = "" if self.lo is None else _num(self.lo)
            hi = "" if self.hi is None else _num(self.hi)
            extra = f" (or {_num(self.off)} for off)" if self.off is not None else ""
            return f"{_num(value)} is outside {lo}..{hi}{extra}"
        if self.step and value % self.step:
            return f"{_num(value)} is not a multiple of {self.step}"
        return None


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


#: Every bounded numeric field, shared by the API's request models (`app.api.models`) and `check_params`. Only
#: impossible values are refused (A1111's API has no ranges): counts and sizes below 1 (or one latent pixel), and
#: fractions outside 0..1; sizes and batch sizes have no upper bound here (memory: `api_max_generation_megapixels`).
BOUNDS: dict[str, Bound] = {b.field: b for b in (
    Bound("steps", "steps", 1),
    Bound("cfg_scale", "cfg_scale"),
    Bound("width", "width", MIN_SIZE),
    Bound("height", "height", MIN_SIZE),
    Bound("batch_size", "batch_size", 1),
    Bound("n_iter", "n_iter", 1),
    Bound("subseed_strength", "seed.subseed_strength", 0.0, 1.0),
    Bound("seed_resize_from_w", "seed.seed_resize_from_w", MIN_SEED_RESIZE, off=0),
    Bound("seed_resize_from_h", "seed.seed_resize_from_h", MIN_SEED_RESIZE, off=0),
    Bound("eta", "eta"),
    Bound("shift", "shift", 0.0),
    Bound("unconditional_first_steps", "unconditional_first_steps", 0),
    Bound("distilled_cfg_scale", "distilled_cfg_scale", 0.0),
    Bound("refiner_switch_at", "refiner_switch_at", 0.0, 1.0),
    Bound("skip_layer_guidance_scale", "skip_layer_guidance_scale"),
    Bound("skip_layer_guidance_start", "skip_layer_guidance_start", 0.0, 1.0),
    Bound("skip_layer_guidance_stop", "skip_layer_guidance_stop", 0.0, 1.0),
    Bound("hr_scale", "hires.scale", 0.0),
    Bound("denoising_strength", "hires.denoising_strength", 0.0, 1.0),
    Bound("hr_second_pass_steps", "hires.steps", 0),
    Bound("hr_resize_x", "hires.resize_x", 0),
    Bound("hr_resize_y", "hires.resize_y", 0),
)}

#: The img2img fields (checked only for img2img params). Indexes into a list of choices keep their range.
IMG2IMG_BOUNDS: dict[str, Bound] = {b.field: b for b in (
    Bound("denoising_strength", "img2img.denoising_strength", 0.0, 1.0),
    Bound("resize_mode", "img2img.resize_mode", 0, len(RESIZE_MODES) - 1),
    Bound("image_cfg_scale", "img2img.image_cfg_scale"),
    Bound("mask_blur_x", "img2img.mask_blur_x", 0),
    Bound("mask_blur_y", "img2img.mask_blur_y", 0),
    Bound("inpainting_fill", "img2img.inpainting_fill", 0, len(MASKED_CONTENT) - 1),
    Bound("inpaint_full_res_padding", "img2img.inpaint_full_res_padding", 0),
    Bound("inpainting_mask_invert", "img2img.inpainting_mask_invert", 0, len(MASK_MODES) - 1),
    Bound("initial_noise_multiplier", "img2img.initial_noise_multiplier"),
)}

#: Text fields (A1111 API name → path) checked for length and for text that cannot be saved.
TEXT_FIELDS: dict[str, str] = {
    "prompt": "prompt", "negative_prompt": "negative_prompt",
    "hr_prompt": "hires.prompt", "hr_negative_prompt": "hires.negative_prompt",
}

_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidParams(ValueError):
    """A GenerationParams value outside its range; `field` is the A1111 API name of the offending field."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


def _get(params: Any, path: str) -> Any:
    target = params
    for name in path.split("."):
        target = getattr(target, name, None)
        if target is None:
            return None
    return target


def text_problem(text: str, max_length: int | None = None) -> str | None:
    """Why `text` cannot be used as a prompt (too long, or a lone UTF-16 surrogate that no file can store)."""
    if max_length and len(text) > max_length:
        return f"{len(text)} characters, more than the limit of {max_length} (setting api_max_prompt_length)"
    bad = _SURROGATE.search(text)
    if bad is not None:
        return (f"contains a lone UTF-16 surrogate (\\u{ord(bad.group()):04x} at character {bad.start()}), "
                "which is not valid Unicode and cannot be saved with the image")
    return None


def check_params(params: GenerationParams, max_prompt_length: int | None = None) -> None:
    """Raise `InvalidParams` naming the first field of `params` that is out of range (`BOUNDS`), not finite,
    or a prompt that is too long or not valid Unicode. Used on the final params, after an infotext is merged."""
    bounds = list(BOUNDS.values())
    if params.img2img is not None:
        bounds = [b for b in bounds if b.path != "hires.denoising_strength"] + list(IMG2IMG_BOUNDS.values())
    elif not params.hires.enabled:
        bounds = [b for b in bounds if not b.path.startswith("hires.")]
    for bound in bounds:
        problem = bound.problem(_get(params, bound.path))
        if problem is not None:
            raise InvalidParams(bound.field, problem)
    check_text(params, max_prompt_length)


def check_text(params: GenerationParams, max_prompt_length: int | None = None) -> None:
    """Raise `InvalidParams` for a prompt, hires prompt or style name that is too long or not valid Unicode
    (a lone surrogate cannot be written into a PNG's infotext). The web UI checks this before it queues a job."""
    for name, path in TEXT_FIELDS.items():
        value = _get(params, path)
        if isinstance(value, str):
            problem = text_problem(value, max_prompt_length)
            if problem is not None:
                raise InvalidParams(name, problem)
    for i, style in enumerate(params.styles or []):
        problem = text_problem(str(style), max_prompt_length)
        if problem is not None:
            raise InvalidParams(f"styles[{i}]", problem)
