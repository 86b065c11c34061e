"""Pydantic request/response bodies of the A1111 HTTP API (spec §10), with A1111's field names and API defaults.

The request fields are the ones A1111 generates from its processing classes (all optional); `app/api/convert.py`
maps each of them onto `GenerationParams` in one table. As in A1111, only impossible values are refused (422 naming
the field, from `app.params.BOUNDS`): steps, batch_size, n_iter below 1, width/height below 8 (other sizes are floored
to the latent grid by `app.api.convert`), fractions (denoising_strength, subseed_strength) outside 0–1, indexes into a
list of choices out of range, seed_resize_from_w/h below 8 (0/-1 = off); NaN and Infinity are refused in every float
field. `null` for a field with a default means that default (A1111 clients send `null` for "not set").
`app.api.convert` checks the same table again on the final params, after a pasted `infotext` is merged.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.params import BOUNDS, IMG2IMG_BOUNDS, MIN_SEED_RESIZE, parse_layers


def _bounded(name: str, default: Any, table: dict[str, Any] = BOUNDS) -> Any:
    """A pydantic Field with the range of `name` in `app.params.BOUNDS` (one table for the request models and
    for the check of the final params, so an infotext cannot get past a limit the request field has)."""
    bound = table[name]
    return Field(default, ge=bound.lo, le=bound.hi)


class _Body(BaseModel):
    # A1111 clients send extra keys (e.g. webuiapi's controlnet helpers): keep them out, don't fail.
    # NaN/Infinity (accepted by Python's JSON parser) are refused in every float field, naming it.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        """Drop `null` for fields whose default is not null: the field keeps its default and does not count as set
        (so a pasted infotext can still fill it). Open WebUI, SillyTavern and webuiapi send `null` for "not set"."""
        if not isinstance(data, dict):
            return data
        keep = {}
        for key, value in data.items():
            info = cls.model_fields.get(key)
            if value is None and info is not None and (info.default is not None or info.default_factory is not None):
                continue
            keep[key] = value
        return keep


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
    width: int = _bounded("width", 512)
    height: int = _bounded("height", 512)
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    shift: float | None = _bounded("shift", None)
    unconditional_first_steps: int = _bounded("unconditional_first_steps", 0)
    distilled_cfg_scale: float | None = _bounded("distilled_cfg_scale", None)  # FLUX.1 dev (Forge's field)
    # SD3.5 skip-layer guidance (Atelier extension, diffusers' names; scale 0 = off; docs/api.md)
    skip_layer_guidance_scale: float = _bounded("skip_layer_guidance_scale", 0.0)
    skip_guidance_layers: list[int] = Field(default_factory=lambda: [7, 8, 9])
    skip_layer_guidance_start: float = _bounded("skip_layer_guidance_start", 0.01)
    skip_layer_guidance_stop: float = _bounded("skip_layer_guidance_stop", 0.2)
    denoising_strength: float | None = _bounded("denoising_strength", 0.75)
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = _bounded("refiner_switch_at", None)
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

    @field_validator("skip_guidance_layers", mode="before")
    @classmethod
    def _skip_layers(cls, value: Any) -> list[int]:
        """Block numbers (a list, or a text such as "7, 8, 9" as the infotext writes it); negatives are refused."""
        return list(parse_layers(value))

    @field_validator("seed_resize_from_w", "seed_resize_from_h")
    @classmethod
    def _seed_resize(cls, value: int) -> int:
        if value <= 0:  # A1111 uses -1 and 0 for "off"
            return value
        if value < MIN_SEED_RESIZE:
            raise ValueError(f"must be at least {MIN_SEED_RESIZE}, or 0/-1 for off")
        return value


class Txt2ImgRequest(GenerationRequest):
    """`POST /sdapi/v1/txt2img`: the shared fields plus hires fix (`firstphase_*` is the pre-1.0 hires form)."""

    enable_hr: bool = False
    firstphase_width: int = Field(0, ge=0)
    firstphase_height: int = Field(0, ge=0)
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
    mask_blur: int | None = Field(None, ge=0)
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
