"""Pydantic request/response bodies of the A1111 HTTP API (spec §10), with A1111's field names and API defaults.

The request fields are the ones A1111 generates from its processing classes (all optional); `app/api/convert.py`
maps each of them onto `GenerationParams` in one table. Ranges come from `app.params.BOUNDS` and are validated
here, so a bad value answers 422 naming the field: steps 1–150, width/height 64–2048 in multiples of 8,
cfg_scale 0–30, batch_size 1–8, n_iter 1–100, denoising_strength 0–1, seed_resize_from_w/h 8–2048 (0/-1 = off);
NaN and Infinity are refused in every float field. `app.api.convert` checks the same table again on the final
params, after a pasted `infotext` is merged.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.params import BOUNDS, IMG2IMG_BOUNDS, MAX_SIZE, MIN_SEED_RESIZE, MIN_SIZE, SIZE_STEP


def _bounded(name: str, default: Any, table: dict[str, Any] = BOUNDS) -> Any:
    """A pydantic Field with the range of `name` in `app.params.BOUNDS` (one table for the request models and
    for the check of the final params, so an infotext cannot get past a limit the request field has)."""
    bound = table[name]
    return Field(default, ge=bound.lo, le=bound.hi)


def _check_size(value: int, allow_zero: bool = False) -> int:
    if allow_zero and value == 0:
        return value
    if value < MIN_SIZE or value > MAX_SIZE:
        raise ValueError(f"must be between {MIN_SIZE} and {MAX_SIZE}")
    if value % SIZE_STEP:
        raise ValueError(f"must be a multiple of {SIZE_STEP}")
    return value


class _Body(BaseModel):
    # A1111 clients send extra keys (e.g. webuiapi's controlnet helpers): keep them out, don't fail.
    # NaN/Infinity (accepted by Python's JSON parser) are refused in every float field, naming it.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class GenerationRequest(_Body):
    """The fields txt2img and img2img share (spec §10.2)."""

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = _bounded("subseed_strength", 0.0)
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = None
    scheduler: str | None = None
    batch_size: int = _bounded("batch_size", 1)
    n_iter: int = _bounded("n_iter", 1)
    steps: int = _bounded("steps", 50)
    cfg_scale: float = _bounded("cfg_scale", 7.0)
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    shift: float | None = _bounded("shift", None)
    unconditional_first_steps: int = _bounded("unconditional_first_steps", 0)
    denoising_strength: float | None = _bounded("denoising_strength", 0.75)
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    comments: dict[str, Any] | None = None
    force_task_id: str | None = None
    sampler_index: str = "Euler"
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    infotext: str | None = None

    @field_validator("width", "height")
    @classmethod
    def _size(cls, value: int) -> int:
        return _check_size(value)

    @field_validator("seed_resize_from_w", "seed_resize_from_h")
    @classmethod
    def _seed_resize(cls, value: int) -> int:
        if value <= 0:  # A1111 uses -1 and 0 for "off"
            return value
        if value < MIN_SEED_RESIZE or value > MAX_SIZE:
            raise ValueError(f"must be between {MIN_SEED_RESIZE} and {MAX_SIZE}, or 0/-1 for off")
        return value

    @field_validator("script_args", mode="before")
    @classmethod
    def _none_args(cls, value: Any) -> Any:
        return [] if value is None else value  # webuiapi sends null

    @field_validator("alwayson_scripts", mode="before")
    @classmethod
    def _none_scripts(cls, value: Any) -> Any:
        return {} if value is None else value


class Txt2ImgRequest(GenerationRequest):
    """`POST /sdapi/v1/txt2img`: the shared fields plus hires fix (`firstphase_*` is the pre-1.0 hires form)."""

    enable_hr: bool = False
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = _bounded("hr_scale", 2.0)
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = _bounded("hr_second_pass_steps", 0)
    hr_resize_x: int = _bounded("hr_resize_x", 0)
    hr_resize_y: int = _bounded("hr_resize_y", 0)
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    firstpass_image: str | None = None

    @field_validator("firstphase_width", "firstphase_height")
    @classmethod
    def _first_size(cls, value: int) -> int:
        return _check_size(value, allow_zero=True)


class Img2ImgRequest(GenerationRequest):
    """`POST /sdapi/v1/img2img`: the shared fields plus the img2img/inpaint ones.

    Note the API defaults differ from the UI's: inpainting_fill 0 (fill), inpaint_full_res true,
    inpaint_full_res_padding 0.
    """

    init_images: list[str] | None = None
    resize_mode: int = _bounded("resize_mode", 0, IMG2IMG_BOUNDS)
    image_cfg_scale: float | None = None
    mask: str | None = None
    mask_blur_x: int = _bounded("mask_blur_x", 4, IMG2IMG_BOUNDS)
    mask_blur_y: int = _bounded("mask_blur_y", 4, IMG2IMG_BOUNDS)
    mask_blur: int | None = Field(None, ge=0, le=256)
    mask_round: bool = True
    inpainting_fill: int = _bounded("inpainting_fill", 0, IMG2IMG_BOUNDS)
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = _bounded("inpaint_full_res_padding", 0, IMG2IMG_BOUNDS)
    inpainting_mask_invert: int = _bounded("inpainting_mask_invert", 0, IMG2IMG_BOUNDS)
    initial_noise_multiplier: float | None = _bounded("initial_noise_multiplier", None, IMG2IMG_BOUNDS)
    latent_mask: str | None = None
    include_init_images: bool = False

    @field_validator("inpaint_full_res", mode="before")
    @classmethod
    def _full_res(cls, value: Any) -> Any:
        return bool(value) if isinstance(value, int) else value  # old clients send 0/1


class GenerationResponse(BaseModel):
    images: list[str] | None = Field(None, description="base64 images (PNG with the infotext)")
    parameters: dict[str, Any]
    info: str = Field(description="JSON string (A1111 Processed.js())")


class ExtrasBaseRequest(_Body):
    resize_mode: int = Field(0, ge=0, le=1, description="0 = scale by upscaling_resize, 1 = scale to w×h")
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(0.0, ge=0.0, le=1.0)
    codeformer_visibility: float = Field(0.0, ge=0.0, le=1.0)
    codeformer_weight: float = Field(0.0, ge=0.0, le=1.0)
    upscaling_resize: float = Field(2.0, ge=1.0, le=8.0)
    upscaling_resize_w: int = Field(512, ge=1, le=8192)
    upscaling_resize_h: int = Field(512, ge=1, le=8192)
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = Field(0.0, ge=0.0, le=1.0)
    upscale_first: bool = False


class ExtrasSingleImageRequest(ExtrasBaseRequest):
    image: str = ""


class FileData(BaseModel):
    data: str
    name: str = ""


class ExtrasBatchImagesRequest(ExtrasBaseRequest):
    imageList: list[FileData] = Field(default_factory=list)  # noqa: N815 - A1111 field name


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: str | None = None


class ExtrasBatchImagesResponse(BaseModel):
    html_info: str
    images: list[str]


class PngInfoRequest(_Body):
    image: str


class PngInfoResponse(BaseModel):
    info: str
    items: dict[str, Any]
    parameters: dict[str, Any]


class InterrogateRequest(_Body):
    image: str = ""
    model: str = "clip"


class ProgressState(BaseModel):
    skipped: bool = False
    interrupted: bool = False
    stopping_generation: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0


class ProgressResponse(BaseModel):
    progress: float
    eta_relative: float
    state: ProgressState
    current_image: str | None = None
    textinfo: str | None = None
    queue_size: int = Field(0, description="jobs waiting behind the running one (Atelier extension)")
