"""GenerationParams: the one description of a generation job.

The UI builds it, the API schema maps to it 1:1, infotext formats and parses it, the engine
consumes it and plugins see it. Pure data: no torch, no gradio. Every field has the A1111 UI
default (the API applies its own defaults when it builds params, see app/api).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

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
    # Model selection travels with the request (never mutates global settings):
    checkpoint: str = ""  # title/alias; "" = the current sd_model_checkpoint setting
    vae: str = ""  # "" = the current sd_vae setting; else "Automatic" | "None" | file name
    clip_skip: int = 0  # 0 = the current CLIP_stop_at_last_layers setting
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


def _from_dict(kind: type, data: dict[str, Any]) -> Any:
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
