"""Generation routes: txt2img, img2img, extras, png-info, progress, interrupt, skip, interrogate.

Synchronous endpoints are "submit and wait" on the shared FIFO `JobService` (the same queue the UI uses).
Each generation request runs in a thread of its own (`in_own_thread`), not in FastAPI's shared pool: any
number of clients can wait for their turn without blocking the event loop or starving quick requests.
`/progress`, `/interrupt` and `/skip` are async and answer at once while jobs run.

A client that goes away does not keep its job: while a generation request waits, the route polls for the
client's disconnect (`run_for_client`) and then cancels the job if it is still queued, or interrupts it if it
runs (`ClientWatch`). Only these submit-and-wait requests are watched; generate-forever and other queued work
are not tied to an HTTP connection.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import APIRouter, Request

from app.api.convert import ApiJob, ConvertContext, request_to_job, validate_overrides
from app.api.deps import service_for, upscaler_registry
from app.api.errors import ApiError
from app.api.images import PixelBudget, decode_image, encode_image
from app.api.limits import limit
from app.api.models import (
    ExtrasBatchImagesRequest,
    ExtrasBatchImagesResponse,
    ExtrasSingleImageRequest,
    ExtrasSingleImageResponse,
    GenerationResponse,
    Img2ImgRequest,
    InterrogateRequest,
    PngInfoRequest,
    PngInfoResponse,
    ProgressResponse,
    ProgressState,
    Txt2ImgRequest,
)
from app.api.scripts import plugin_fields, scripts_for
from app.jobs.info import eta_relative as job_eta_relative

log = logging.getLogger(__name__)

#: How often a waiting generation request checks whether its client is still connected (seconds).
DISCONNECT_POLL_S = 0.5


def wait_for(job: Any) -> Any:
    """`job.wait()`, with a failed job turned into an API error that keeps the job's exception class."""
    from app.jobs.job import JobCancelled, JobFailed

    try:
        return job.wait()
    except JobCancelled as exc:
        raise ApiError(409, f"the job was cancelled before it ran: {exc}", error="JobCancelled") from None
    except JobFailed as exc:
        cause = job.exception or exc
        if isinstance(cause, ApiError):
            raise cause from None
        # the engine reports bad input as ValueError (sizes, images, samplers) and a missing model as LookupError;
        # KeyError/IndexError are programming errors, not "not found"
        not_found = isinstance(cause, LookupError) and not isinstance(cause, (KeyError, IndexError))
        status = 404 if not_found else 422 if isinstance(cause, ValueError) else 500
        raise ApiError(status, job.error or str(exc), error=type(cause).__name__) from None


class ClientWatch:
    """Ties one submitted job to its HTTP client: `client_gone()` cancels the job if it is still queued and
    interrupts it if it runs (a job submitted after the client left is stopped as soon as it is attached)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._service: Any = None
        self._job: Any = None
        self.gone = False

    def attach(self, service: Any, job: Any) -> None:
        with self._lock:
            self._service, self._job = service, job
            gone = self.gone
        if gone:
            self._stop()

    def client_gone(self) -> None:
        with self._lock:
            self.gone = True
        self._stop()

    def _stop(self) -> None:
        with self._lock:
            service, job = self._service, self._job
        if service is None or job is None or job.done:
            return
        log.info("the client of job %s disconnected: %s it", job.id,
                 "interrupting" if job.started else "cancelling")
        # interrupt(id) cancels a queued job and interrupts the running one; a second try covers the moment the
        # worker takes the job off the queue between the two checks
        if not service.interrupt(job.id) and not job.done:
            service.interrupt(job.id)


def _submit(service: Any, watch: ClientWatch | None, params: Any, kind: str, job_id: str | None = None) -> Any:
    if watch is not None and watch.gone:
        raise ApiError(499, "the client disconnected before the job was queued", error="ClientDisconnected")
    job = service.submit(params, kind=kind, job_id=job_id, origin="api")
    if watch is not None:
        watch.attach(service, job)
    return job


def _info_string(result: Any, api_job: ApiJob) -> str:
    from app.jobs.info import info_json, info_to_string

    info = result.info
    if not info:  # e.g. interrupted before the first image: still the documented keys
        info = info_json(api_job.params, all_prompts=result.all_prompts, all_negative_prompts=result.all_negative_prompts,
                         all_seeds=result.seeds, all_subseeds=result.subseeds, infotexts=result.infotexts)
    return info_to_string(info)


def _run_generation(runtime: Any, api_job: ApiJob, echo: dict[str, Any],
                    watch: ClientWatch | None = None) -> GenerationResponse:
    service = service_for(runtime, api_job.kind)
    job = _submit(service, watch, api_job.params, api_job.kind, api_job.job_id)
    result = wait_for(job)
    images_out, texts = list(result.images), list(result.infotexts)  # before the service recycles old results
    settings = runtime.settings
    settings_error = None
    if not api_job.restore_settings and api_job.params.override_settings:
        try:
            settings.set_many(dict(api_job.params.override_settings))
        except OSError as exc:  # SettingsSaveError: config.json not written, nothing changed; keep the images
            settings_error = f"override_settings not kept: {exc}"
    images: list[str] = []
    if api_job.send_images:
        for i, image in enumerate(images_out):
            text = texts[i] if i < len(texts) else image.info.get("parameters")
            images.append(encode_image(image, text, settings))
    info = _info_string(result, api_job)
    # what the request asked for that the job did not do: the request's own (a missing model, restore_faces), then
    # the job's (SD3 without T5, a LoRA skipped, SLG on a model without joint blocks), as the UI shows them
    warnings = list(dict.fromkeys([*api_job.warnings, *(getattr(result, "warnings", None) or [])]))
    if settings_error is not None or warnings:
        parsed = json.loads(info)
        if settings_error is not None:  # the client reads it next to the images' own save errors
            parsed["save_errors"] = [*parsed.get("save_errors", []), settings_error]
        if warnings:
            parsed["warnings"] = list(dict.fromkeys([*parsed.get("warnings", []), *warnings]))
        info = json.dumps(parsed)
    return GenerationResponse(images=images, parameters=echo, info=info)


def _context(runtime: Any, kind: str) -> ConvertContext:
    from app.params import size_multiple

    state = getattr(runtime, "model_state", None)  # the loaded model's size grid, without creating the manager
    loaded = state.loaded_handle() if state is not None else getattr(getattr(runtime, "manager", None), "current", None)
    return ConvertContext(
        settings=runtime.settings,
        catalog=runtime.catalog,
        selectable_scripts=scripts_for(kind, runtime),
        alwayson_scripts=scripts_for(kind, runtime, alwayson=True),
        alwayson_fields=plugin_fields(kind, runtime),
        size_multiple=size_multiple(loaded),
    )


def _progress(runtime: Any, skip_current_image: bool) -> ProgressResponse:
    service = runtime.service
    job = service.current if service is not None else None
    queued = service.queue_size if service is not None else 0
    if job is None:
        state = ProgressState(job_count=1 if queued else 0)
        return ProgressResponse(progress=0.0, eta_relative=0.0, state=state, queue_size=queued)
    p = job.progress
    job_count = max(int(p.job_count), 1)
    progress = 0.01 + p.job_no / job_count
    if p.sampling_steps:
        progress += (1 / job_count) * p.sampling_step / p.sampling_steps
    started = job.started or time.time()
    elapsed = max(time.time() - started, 0.0)
    eta_relative = job_eta_relative(elapsed, progress)  # never negative (progress can pass 1 in a hires pass)
    state = ProgressState(
        skipped=bool(p.skipped), interrupted=bool(p.interrupted or job.interrupt_flag),
        job=str(job.id), job_count=job_count, job_timestamp=time.strftime("%Y%m%d%H%M%S", time.localtime(started)),
        job_no=int(p.job_no), sampling_step=int(p.sampling_step), sampling_steps=int(p.sampling_steps),
    )
    image = None
    if not skip_current_image and p.preview is not None:
        image = encode_image(p.preview, None, runtime.settings, fmt_setting="live_previews_image_format")
    return ProgressResponse(progress=min(progress, 1.0), eta_relative=eta_relative, state=state,
                            current_image=image, textinfo=p.textinfo or None, queue_size=queued)


def _extras(runtime: Any, params: dict[str, Any], watch: ClientWatch | None = None) -> Any:
    service = service_for(runtime, "extras")
    registry = upscaler_registry(runtime)
    if registry is not None:
        for key in ("upscaler_1", "upscaler_2"):
            try:
                registry.find(params.get(key) or "None")
            except ValueError as exc:
                raise ApiError(422, f"{key}: {exc}") from None
    return wait_for(_submit(service, watch, params, "extras"))


def _extras_params(req: Any, images: list[Any], names: list[str]) -> dict[str, Any]:
    fields = req.model_dump(exclude={"image", "imageList"})
    if req.gfpgan_visibility or req.codeformer_visibility:
        raise ApiError(422, "gfpgan_visibility/codeformer_visibility: face restoration is not available")
    # the API returns the images and writes nothing to disk (A1111 runs extras with save_output=False)
    return {**fields, "images": images, "names": names, "save_output": False}


def _html_info(result: Any) -> str:
    value = getattr(result, "value", None)
    if isinstance(value, dict) and "html_info" in value:
        return str(value["html_info"])
    return "<br>".join(getattr(result, "infotexts", []) or [])


async def in_own_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking request body (submit, wait for the job, encode) in a thread of its own instead of the
    shared pool: a wait can take minutes, and the pool must stay free for quick requests and the auth check."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=anyio.CapacityLimiter(1))


async def run_for_client(request: Request, fn: Callable[..., Any], *args: Any) -> Any:
    """`in_own_thread(fn, *args, watch)` while watching `request`'s client: when it disconnects, the job the
    call submitted is cancelled (queued) or interrupted (running), see `ClientWatch`."""
    watch = ClientWatch()

    async def watch_client() -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(DISCONNECT_POLL_S)
        watch.client_gone()

    watcher = asyncio.ensure_future(watch_client())
    try:
        return await in_own_thread(fn, *args, watch)
    finally:
        watcher.cancel()


def _txt2img(runtime: Any, req: Txt2ImgRequest, watch: ClientWatch | None = None) -> GenerationResponse:
    api_job = request_to_job(req, "txt2img", _context(runtime, "txt2img"))
    return _run_generation(runtime, api_job, req.model_dump(), watch)


def _img2img(runtime: Any, req: Img2ImgRequest, watch: ClientWatch | None = None) -> GenerationResponse:
    if not req.init_images:
        raise ApiError(404, "Init image not found")
    # any number of init images, as in A1111: together they stay within api_max_request_megapixels (PixelBudget)
    ctx = _context(runtime, "img2img")
    budget = PixelBudget(runtime.settings)
    ctx.init_images = [decode_image(v, f"init_images[{i}]", runtime.settings, budget)
                       for i, v in enumerate(req.init_images)]
    ctx.mask = decode_image(req.mask, "mask", runtime.settings, budget) if req.mask else None
    api_job = request_to_job(req, "img2img", ctx)
    echo = req.model_dump()
    if not req.include_init_images:
        echo["init_images"] = None
        echo["mask"] = None
    return _run_generation(runtime, api_job, echo, watch)


def _extras_single(runtime: Any, req: ExtrasSingleImageRequest,
                   watch: ClientWatch | None = None) -> ExtrasSingleImageResponse:
    image = decode_image(req.image, "image", runtime.settings, PixelBudget(runtime.settings))
    result = _extras(runtime, _extras_params(req, [image], [""]), watch)
    if not result.images:
        raise ApiError(500, "the extras job returned no image")
    text = result.infotexts[0] if result.infotexts else None
    return ExtrasSingleImageResponse(html_info=_html_info(result),
                                     image=encode_image(result.images[0], text, runtime.settings))


def _extras_batch(runtime: Any, req: ExtrasBatchImagesRequest,
                  watch: ClientWatch | None = None) -> ExtrasBatchImagesResponse:
    budget = PixelBudget(runtime.settings)
    images = [decode_image(f.data, f"imageList[{i}].data", runtime.settings, budget)
              for i, f in enumerate(req.imageList)]
    if not images:
        raise ApiError(422, "imageList: no images given")
    result = _extras(runtime, _extras_params(req, images, [f.name for f in req.imageList]), watch)
    texts = list(result.infotexts) + [None] * len(result.images)
    encoded = [encode_image(im, texts[i], runtime.settings) for i, im in enumerate(result.images)]
    return ExtrasBatchImagesResponse(html_info=_html_info(result), images=encoded)


def _png_info(runtime: Any, req: PngInfoRequest) -> PngInfoResponse:
    from app.infotext.parse import InfotextTooLong, parse_generation_parameters
    from app.infotext.storage import read_info_from_image

    if not req.image.strip():
        return PngInfoResponse(info="", items={}, parameters={})
    image = decode_image(req.image, "image", runtime.settings, PixelBudget(runtime.settings))
    geninfo, items = read_info_from_image(image)
    if not geninfo:
        return PngInfoResponse(info="", items=items, parameters={})
    try:
        parsed = parse_generation_parameters(geninfo, max_length=int(limit(runtime.settings, "max_infotext_length")))
    except InfotextTooLong as exc:
        raise ApiError(422, f"image: the image's parameters text is too long to read: {exc}") from None
    parsed = json.loads(json.dumps(parsed, default=str))
    return PngInfoResponse(info=geninfo, items=items, parameters=parsed)


def register(router: APIRouter, runtime: Any) -> None:
    """Add the generation routes to `router`."""

    @router.post("/txt2img", response_model=GenerationResponse)
    async def text2imgapi(req: Txt2ImgRequest, request: Request) -> GenerationResponse:
        return await run_for_client(request, _txt2img, runtime, req)

    @router.post("/img2img", response_model=GenerationResponse)
    async def img2imgapi(req: Img2ImgRequest, request: Request) -> GenerationResponse:
        return await run_for_client(request, _img2img, runtime, req)

    @router.post("/extra-single-image", response_model=ExtrasSingleImageResponse)
    async def extras_single_image_api(req: ExtrasSingleImageRequest, request: Request) -> ExtrasSingleImageResponse:
        return await run_for_client(request, _extras_single, runtime, req)

    @router.post("/extra-batch-images", response_model=ExtrasBatchImagesResponse)
    async def extras_batch_images_api(req: ExtrasBatchImagesRequest, request: Request) -> ExtrasBatchImagesResponse:
        return await run_for_client(request, _extras_batch, runtime, req)

    @router.post("/png-info", response_model=PngInfoResponse)
    def pnginfoapi(req: PngInfoRequest) -> PngInfoResponse:  # sync: decoding and parsing run in the thread pool
        return _png_info(runtime, req)

    # The control routes are async (cheap, non-blocking work on the event loop, no pool thread of their own).
    @router.get("/progress", response_model=ProgressResponse)
    async def progressapi(skip_current_image: bool = False) -> ProgressResponse:
        return _progress(runtime, skip_current_image)

    @router.post("/interrupt")
    async def interruptapi() -> dict[str, Any]:
        service = runtime.service
        if service is not None:
            service.interrupt()
        return {}

    @router.post("/skip")
    async def skip() -> None:
        service = runtime.service
        if service is not None:
            service.skip()

    @router.post("/interrogate")
    def interrogateapi(req: InterrogateRequest) -> dict[str, Any]:
        decode_image(req.image, "image", runtime.settings)
        model = (req.model or "clip").lower()
        if model == "clip":
            raise ApiError(501, "CLIP interrogator model is not available offline (interrogation is not supported)")
        if model == "deepdanbooru":
            raise ApiError(501, "DeepDanbooru model is not available offline (interrogation is not supported)")
        raise ApiError(404, f"Model not found: {req.model!r} (known: clip, deepdanbooru)")


__all__ = ["register", "validate_overrides", "wait_for"]
