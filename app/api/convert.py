"""Request body → `GenerationParams`: the one place that maps A1111 API fields onto our params.

`FIELD_SETTERS` holds one setter per plain A1111 field; the fields that depend on each other (sampler
name/index/scheduler, the save flags, firstphase back-compat, mask blur, hires denoising) are handled in
`_apply_linked`. With `infotext`, the request's defaults are applied first, then the pasted infotext
(`app.infotext.paste.infotext_to_params`), then the fields the client set explicitly, so an explicit field
always wins (A1111 semantics). The merged params are then checked against the same ranges as the request
fields (`app.params.check_params`), so an infotext cannot get past a limit (`Steps: 0` is a 422 naming steps); the
infotext itself is refused unparsed when longer than `max_infotext_length`.

Leniency where A1111 is lenient (real clients rely on it): sizes are floored to the latent grid
(`app.params.size_multiple`, 8 px for SD: 100 → 96); any batch size runs, within the memory limit
`api_max_generation_megapixels` (a setting, 413 naming it); a checkpoint or VAE in `override_settings` (or an
infotext's model hash) that does not exist falls back to the current one, and `restore_faces` without a face
restorer returns the images unrestored: both are said in the response's `info` (key `warnings`) and the log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.api.builtin_alwayson import BUILTIN_TITLES, check_builtin
from app.api.checks import check_checkpoint, check_final, missing_model, validate_overrides, warn
from app.api.errors import ApiError
from app.api.models import GenerationRequest, Img2ImgRequest, Txt2ImgRequest
from app.params import DEFAULT_SIZE_MULTIPLE, GenerationParams, Img2ImgParams, ScriptParams

Setter = Callable[[GenerationParams, Any], None]

#: Sampler options that A1111 keeps on the processing object but we keep as settings (per-job overrides).
SAMPLER_OPTION_SETTINGS = ("s_min_uncond", "s_churn", "s_tmax", "s_tmin", "s_noise")


def _attr(path: str, cast: Callable[[Any], Any] | None = None) -> Setter:
    """A setter for a dotted attribute path of GenerationParams (`seed.subseed`, `img2img.resize_mode`)."""
    *parents, last = path.split(".")

    def setter(params: GenerationParams, value: Any) -> None:
        target: Any = params
        for name in parents:
            target = getattr(target, name)
        setattr(target, last, cast(value) if cast is not None else value)

    return setter


def _nonneg(value: int) -> int:
    return max(0, int(value))


def _extra_flag(key: str) -> Setter:
    """A boolean kept in `params.extras` (read by the engine, e.g. `disable_extra_networks`)."""

    def setter(params: GenerationParams, value: Any) -> None:
        if value:
            params.extras[key] = True
        else:
            params.extras.pop(key, None)

    return setter


#: A1111 field → how it lands in GenerationParams (fields shared by txt2img and img2img).
FIELD_SETTERS: dict[str, Setter] = {
    "prompt": _attr("prompt"),
    "negative_prompt": _attr("negative_prompt"),
    "styles": _attr("styles", lambda v: list(v or [])),
    "seed": _attr("seed.seed"),
    "subseed": _attr("seed.subseed"),
    "subseed_strength": _attr("seed.subseed_strength"),
    "seed_resize_from_h": _attr("seed.seed_resize_from_h", _nonneg),  # A1111 uses -1 and 0 for "off"
    "seed_resize_from_w": _attr("seed.seed_resize_from_w", _nonneg),
    "batch_size": _attr("batch_size"),
    "n_iter": _attr("n_iter"),
    "steps": _attr("steps"),
    "cfg_scale": _attr("cfg_scale"),
    "width": _attr("width"),
    "height": _attr("height"),
    "tiling": _attr("tiling", bool),
    "eta": _attr("eta"),
    "shift": _attr("shift", lambda v: None if v is None else float(v)),
    "unconditional_first_steps": _attr("unconditional_first_steps", int),
    "distilled_cfg_scale": _attr("distilled_cfg_scale", lambda v: None if v is None else float(v)),
    "skip_layer_guidance_scale": _attr("skip_layer_guidance_scale", float),
    "skip_guidance_layers": _attr("skip_guidance_layers", lambda v: [int(i) for i in v]),
    "skip_layer_guidance_start": _attr("skip_layer_guidance_start", float),
    "skip_layer_guidance_stop": _attr("skip_layer_guidance_stop", float),
    "disable_extra_networks": _extra_flag("disable_extra_networks"),
}

#: txt2img-only fields (hires fix).
HIRES_SETTERS: dict[str, Setter] = {
    "enable_hr": _attr("hires.enabled", bool),
    "hr_scale": _attr("hires.scale", float),
    "hr_upscaler": _attr("hires.upscaler", lambda v: v or "Latent"),
    "hr_second_pass_steps": _attr("hires.steps"),
    "hr_resize_x": _attr("hires.resize_x"),
    "hr_resize_y": _attr("hires.resize_y"),
    "hr_checkpoint_name": _attr("hires.checkpoint", lambda v: v or ""),
    "hr_sampler_name": _attr("hires.sampler_name", lambda v: v or ""),
    "hr_scheduler": _attr("hires.scheduler", lambda v: v or ""),
    "hr_prompt": _attr("hires.prompt"),
    "hr_negative_prompt": _attr("hires.negative_prompt"),
}

#: img2img-only fields (the images themselves are decoded by the route and passed in).
IMG2IMG_SETTERS: dict[str, Setter] = {
    "resize_mode": _attr("img2img.resize_mode"),
    "denoising_strength": _attr("img2img.denoising_strength", lambda v: 0.75 if v is None else float(v)),
    "image_cfg_scale": _attr("img2img.image_cfg_scale"),
    "mask_blur_x": _attr("img2img.mask_blur_x"),
    "mask_blur_y": _attr("img2img.mask_blur_y"),
    "mask_round": _attr("img2img.mask_round", bool),
    "inpainting_fill": _attr("img2img.inpainting_fill"),
    "inpaint_full_res": _attr("img2img.inpaint_full_res", bool),
    "inpaint_full_res_padding": _attr("img2img.inpaint_full_res_padding"),
    "inpainting_mask_invert": _attr("img2img.inpainting_mask_invert"),
    "initial_noise_multiplier": _attr("img2img.initial_noise_multiplier", lambda v: 1.0 if v is None else float(v)),
}


#: Request fields that are not in the setter tables, and where they are handled. A test checks that every
#: request field is either set by a table or listed here, so no field is silently dropped.
OTHER_FIELDS: dict[str, str] = {
    "sampler_name": "_apply_linked (sampler_name or sampler_index, with scheduler)",
    "sampler_index": "_apply_linked",
    "scheduler": "_apply_linked",
    "save_images": "_apply_linked (params.save_images / save_grid; wins over do_not_save_*, as in A1111)",
    "do_not_save_samples": "_apply_linked",
    "do_not_save_grid": "_apply_linked",
    "denoising_strength": "_apply_linked for txt2img (hires); IMG2IMG_SETTERS for img2img",
    "firstphase_width": "_apply_linked (pre-1.0 hires)",
    "firstphase_height": "_apply_linked",
    "mask_blur": "_apply_linked (sets mask_blur_x and mask_blur_y)",
    "override_settings": "request_to_job (validated, params.override_settings)",
    "override_settings_restore_afterwards": "ApiJob.restore_settings",
    "s_min_uncond": "request_to_job (per-job setting override)",
    "s_churn": "request_to_job",
    "s_tmax": "request_to_job",
    "s_tmin": "request_to_job",
    "s_noise": "request_to_job",
    "script_name": "_scripts (params.script)",
    "script_args": "_scripts",
    "alwayson_scripts": "_scripts (params.extras['alwayson_scripts']; A1111's built-in ones: app.api.builtin_alwayson)",
    "infotext": "request_to_job (pasted, explicit fields win)",
    "send_images": "ApiJob.send_images",
    "force_task_id": "ApiJob.job_id",
    "restore_faces": "_unsupported (a warning in info when true: no face restorer yet)",
    "refiner_checkpoint": "_refiner (params.refiner_checkpoint: a checkpoint title, name or hash; 422 when unknown)",
    "refiner_switch_at": "_refiner (params.refiner_switch_at; None = A1111's default: the refiner runs every step)",
    "firstpass_image": "_unsupported (422 when set)",
    "latent_mask": "_unsupported (422 when set)",
    "comments": "ignored: A1111 only shows them in the UI",
    "init_images": "decoded by the route (ConvertContext.init_images)",
    "mask": "decoded by the route (ConvertContext.mask)",
    "include_init_images": "the route (response echo)",
}


@dataclass
class ConvertContext:
    """What the converter needs from the running app (all optional, for unit tests)."""

    settings: Any = None
    catalog: Any = None
    #: title (lower case) → canonical title, per kind, of the selectable / always-on scripts.
    selectable_scripts: dict[str, str] = field(default_factory=dict)
    alwayson_scripts: dict[str, str] = field(default_factory=dict)
    #: always-on plugin title → its declared ExtraFields (`name`, `coerce(value)`), filled from the script args.
    alwayson_fields: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    init_images: list[Any] = field(default_factory=list)
    mask: Any = None
    #: The latent grid sizes are floored to (`app.params.size_multiple` of the model the job will use).
    size_multiple: int = DEFAULT_SIZE_MULTIPLE


@dataclass
class ApiJob:
    """A converted request: the params plus what only the API response needs."""

    params: GenerationParams
    kind: str
    send_images: bool = True
    restore_settings: bool = True
    job_id: str | None = None
    #: What the request asked for that this job does not do (a missing checkpoint, face restoration): the response's
    #: `info` lists them under `warnings`, and each was logged.
    warnings: list[str] = field(default_factory=list)


def _setters(kind: str) -> dict[str, Setter]:
    extra = HIRES_SETTERS if kind == "txt2img" else IMG2IMG_SETTERS
    return {**FIELD_SETTERS, **extra}


def _apply(req: GenerationRequest, params: GenerationParams, kind: str, only: set[str] | None) -> None:
    for name, setter in _setters(kind).items():
        if only is None or name in only:
            setter(params, getattr(req, name))
    _apply_linked(req, params, kind, only)


def _given(name: str, only: set[str] | None) -> bool:
    return only is None or name in only


def _apply_linked(req: GenerationRequest, params: GenerationParams, kind: str, only: set[str] | None) -> None:
    # 1. sampler: `sampler_name or sampler_index` (API default "Euler"), with the scheduler
    if _given("sampler_name", only) or _given("sampler_index", only) or _given("scheduler", only):
        name = req.sampler_name or (req.sampler_index if _given("sampler_index", only) else params.sampler_name)
        params.sampler_name, params.scheduler = resolve_sampler_names(name, req.scheduler or "Automatic")
    # 2. saving: save_images alone decides (A1111's API sets both do_not_save_* to `not save_images`)
    if _given("save_images", only) or _given("do_not_save_samples", only) or _given("do_not_save_grid", only):
        params.save_images = params.save_grid = bool(req.save_images)
    if isinstance(req, Txt2ImgRequest):
        # 3. hires denoising strength is the request's denoising_strength
        if _given("denoising_strength", only) and req.denoising_strength is not None:
            params.hires.denoising_strength = float(req.denoising_strength)
        # 4. pre-1.0 hires: firstphase_* is the first pass, width/height the target
        if req.firstphase_width or req.firstphase_height:
            if _given("firstphase_width", only) or _given("firstphase_height", only):
                params.hires.resize_x, params.hires.resize_y = req.width, req.height
                params.width = req.firstphase_width or req.width
                params.height = req.firstphase_height or req.height
    if isinstance(req, Img2ImgRequest) and req.mask_blur is not None and _given("mask_blur", only):
        assert params.img2img is not None
        params.img2img.mask_blur_x = params.img2img.mask_blur_y = req.mask_blur


def resolve_sampler_names(name: str | None, scheduler: str | None) -> tuple[str, str]:
    """(canonical sampler name, schedule label); unknown sampler → 404 listing the valid names (as A1111)."""
    from app.engine.sampling import names  # pure table: no torch

    try:
        sampler, schedule = names.resolve_names(name or "Euler", scheduler or "Automatic")
    except names.UnknownSamplerError as exc:
        raise ApiError(404, f"Sampler not found: {exc}") from None
    except ValueError as exc:  # unknown or unsupported schedule type
        raise ApiError(422, f"scheduler: {exc}") from None
    return sampler.name, schedule.label


def _unsupported(req: GenerationRequest, warnings: list[str]) -> None:
    if req.restore_faces:  # A1111 without a restorer model returns the images as they are
        warn(warnings, "restore_faces: face restoration is not available yet (no GFPGAN/CodeFormer); "
                        "the images are returned without it")
    if getattr(req, "firstpass_image", None):
        raise ApiError(422, "firstpass_image: starting hires fix from a given image is not supported")
    if isinstance(req, Img2ImgRequest) and req.latent_mask:
        raise ApiError(422, "latent_mask: a separate latent mask is not supported")


def _refiner(req: GenerationRequest, params: GenerationParams, ctx: ConvertContext, warnings: list[str]) -> None:
    """`refiner_checkpoint` / `refiner_switch_at` (A1111 1.6+), matched like `sd_model_checkpoint` (title, name or
    hash); "" / "None" = no refiner. An infotext's `Refiner:` fills them when the request does not. A switch point
    left null stays None, as in A1111: the refiner takes over at the first step (`app.engine.refiner`)."""
    if "refiner_checkpoint" in req.model_fields_set or not params.refiner_checkpoint:
        name = (req.refiner_checkpoint or "").strip()
        params.refiner_checkpoint = "" if name in ("", "None") else name
    if req.refiner_switch_at is not None:
        params.refiner_switch_at = float(req.refiner_switch_at)
    if not params.refiner_checkpoint:
        return
    if "refiner_checkpoint" in req.model_fields_set:
        params.refiner_checkpoint = check_checkpoint(params.refiner_checkpoint, "refiner_checkpoint", ctx.catalog)
    elif ctx.catalog is not None:  # from a pasted infotext: A1111 pastes the closest match's title, or no refiner
        found = ctx.catalog.find_checkpoint(params.refiner_checkpoint)
        if found is None:
            warn(warnings, f"infotext: refiner {params.refiner_checkpoint!r} not found; no refiner used")
        params.refiner_checkpoint = "" if found is None else str(found.title)


def _scripts(req: GenerationRequest, params: GenerationParams, ctx: ConvertContext, warnings: list[str]) -> None:
    if req.script_name:
        title = ctx.selectable_scripts.get(req.script_name.strip().lower())
        if title is None:
            known = ", ".join(sorted(ctx.selectable_scripts.values())) or "(none)"
            raise ApiError(422, f"Script '{req.script_name}' not found; available: {known}")
        params.script = ScriptParams(name=title, args=list(req.script_args))
    alwayson: dict[str, Any] = {}
    for name, value in req.alwayson_scripts.items():
        title = ctx.alwayson_scripts.get(name.strip().lower())
        if title is None:
            known = ", ".join(sorted(ctx.alwayson_scripts.values())) or "(none)"
            raise ApiError(422, f"alwayson_scripts: script '{name}' not found; available: {known}")
        args = value.get("args", []) if isinstance(value, dict) else value
        if not isinstance(args, (list, dict)):
            raise ApiError(422, f"alwayson_scripts.{name}.args: expected a list or an object")
        if title in BUILTIN_TITLES.values():  # A1111's Refiner/Seed/Sampler/Extra options: not applied by its API
            check_builtin(name, title, args, params, warnings, ctx.catalog)
            continue
        alwayson[title] = args
        _fill_plugin_fields(params, f"alwayson_scripts.{name}.args", args, ctx.alwayson_fields.get(title, ()))
    if alwayson:
        params.extras["alwayson_scripts"] = alwayson


def _fill_plugin_fields(params: GenerationParams, where: str, args: Any, fields: tuple[Any, ...]) -> None:
    """A plugin's args (positional list or `{field name: value}`) → `params.extras[field.name]`, coerced."""
    if not fields:
        return
    by_name = {f.name: f for f in fields}
    if isinstance(args, dict):
        unknown = sorted(set(args) - set(by_name))
        if unknown:
            raise ApiError(422, f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
        pairs = [(by_name[k], v) for k, v in args.items()]
    else:
        if len(args) > len(fields):
            raise ApiError(422, f"{where}: {len(args)} values for {len(fields)} fields ({', '.join(by_name)})")
        pairs = list(zip(fields[: len(args)], args, strict=True))  # missing trailing values keep defaults
    for f, value in pairs:
        try:
            params.extras[f.name] = f.coerce(value)
        except ValueError as exc:
            raise ApiError(422, f"{where}: {exc}") from None


def _base_params(kind: str) -> GenerationParams:
    params = GenerationParams(refiner_switch_at=None)  # A1111's API default (a pasted infotext can fill it)
    if kind == "img2img":
        params.img2img = Img2ImgParams()
    return params


def _paste_infotext(
    text: str, params: GenerationParams, kind: str, ctx: ConvertContext
) -> tuple[GenerationParams, dict[str, Any]]:
    from app.api.limits import limit
    from app.infotext.parse import InfotextTooLong, parse_generation_parameters
    from app.infotext.paste import infotext_to_params

    try:
        parsed = parse_generation_parameters(text, max_length=int(limit(ctx.settings, "max_infotext_length")))
    except InfotextTooLong as exc:
        raise ApiError(422, f"infotext: {exc}") from None
    current = ctx.settings.data if ctx.settings is not None else None
    return infotext_to_params(parsed, base=params, kind=kind, current_settings=current)


def request_to_job(req: GenerationRequest, kind: str, ctx: ConvertContext | None = None) -> ApiJob:
    """Convert a txt2img/img2img request (see module doc); raises `ApiError` naming the bad field."""
    ctx = ctx or ConvertContext()
    warnings: list[str] = []
    _unsupported(req, warnings)
    # 1. API defaults and every request field
    params = _base_params(kind)
    _apply(req, params, kind, None)
    overrides: dict[str, Any] = {}
    # 2. a pasted infotext fills the fields the client did not set
    if req.infotext:
        params, pasted = _paste_infotext(req.infotext, params, kind, ctx)
        overrides.update(pasted)
        _apply(req, params, kind, set(req.model_fields_set))
    # 3. per-job settings (explicit override_settings win over the infotext's)
    for key in SAMPLER_OPTION_SETTINGS:
        value = getattr(req, key)
        if value is not None and ctx.settings is not None and key in ctx.settings:
            overrides[key] = value
    overrides.update(req.override_settings or {})
    params.override_settings = validate_overrides(overrides, ctx, warnings=warnings)
    if params.checkpoint and missing_model("sd_model_checkpoint", params.checkpoint, ctx):
        warn(warnings, f"infotext: model {params.checkpoint!r} not found; using the current checkpoint instead")
        params.checkpoint = ""
    elif params.checkpoint:
        params.checkpoint = check_checkpoint(params.checkpoint, "infotext Model hash", ctx.catalog)
    _refiner(req, params, ctx, warnings)
    if isinstance(req, Txt2ImgRequest) and params.hires.checkpoint not in ("", "Use same checkpoint"):
        params.hires.checkpoint = check_checkpoint(params.hires.checkpoint, "hr_checkpoint_name", ctx.catalog)
    # 4. the final params obey the request fields' limits, whichever way a value came in
    check_final(params, ctx, pasted=bool(req.infotext))
    # 5. scripts and images
    _scripts(req, params, ctx, warnings)
    if kind == "img2img":
        assert params.img2img is not None
        params.img2img.init_images = list(ctx.init_images)
        params.img2img.mask = ctx.mask
    return ApiJob(
        params=params,
        kind=kind,
        send_images=req.send_images,
        restore_settings=req.override_settings_restore_afterwards,
        job_id=req.force_task_id or None,
        warnings=warnings,
    )
