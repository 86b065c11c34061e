"""The job API (beyond A1111): submit a generation and return at once, then follow, list, cancel, re-run and
re-order jobs on the same durable queue the UI and A1111's synchronous routes use.

- ``POST /atelier/v1/jobs`` ``{"kind": "txt2img" | "img2img", ...the A1111 request fields...}`` → ``{"id", "state",
  "position"}`` at once. The images are always saved (the client fetches them later), so ``save_images`` is on.
- ``GET /atelier/v1/jobs[?state=queued|running|done|failed|interrupted|cancelled]`` → newest first.
- ``GET /atelier/v1/jobs/{id}`` → state, position, progress, error, params, output files and image URLs.
- ``GET /atelier/v1/jobs/{id}/images/{n}`` → the n-th saved image (PNG with its infotext).
- ``GET /atelier/v1/jobs/{id}/events`` → server-sent events (``queued`` with the position, ``progress`` with the
  fraction, step and ETA, and one final event with the state and the image URLs).
- ``DELETE /atelier/v1/jobs/{id}`` → cancels a queued job, interrupts the running one.
- ``POST /atelier/v1/jobs/{id}/retry`` → the same params as a new job; ``POST /atelier/v1/jobs/{id}/front`` → run
  a queued job next.
- A full queue (setting ``job_queue_max``) answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import ValidationError

from app.api.errors import ApiError, describe_validation, parse_json_body

PREFIX = "/atelier/v1/jobs"
KINDS = ("txt2img", "img2img")
STATES = ("queued", "running", "done", "failed", "interrupted", "cancelled")
FINISHED = ("done", "failed", "interrupted", "cancelled")


def _service(runtime: Any) -> Any:
    service = getattr(runtime, "service", None)
    if service is None:
        raise ApiError(503, "the job service is not running")
    return service


def _job_view(runtime: Any, job_id: str) -> dict[str, Any]:
    """One job as JSON: the live job when the service holds it, else its row in the durable queue."""
    service = _service(runtime)
    job = service.get(job_id)
    row = service.store.get(job_id) if service.store is not None else None
    if job is None and row is None:
        raise ApiError(404, f"job {job_id!r} not found")
    out: dict[str, Any] = row.as_json() if row is not None else {
        "id": job.id, "kind": job.kind, "origin": getattr(job, "origin", ""), "params": None}
    if job is not None:
        state = getattr(job.state, "value", str(job.state))
        result = job.result
        outputs = list(getattr(result, "saved_paths", None) or []) if result is not None else out.get("outputs", [])
        p = job.progress
        out.update(state=state, created=job.created, started=job.started, finished=job.finished, error=job.error,
                   outputs=outputs, progress={"fraction": round(float(p.fraction or 0.0), 4),
                                              "step": int(p.sampling_step), "steps": int(p.sampling_steps),
                                              "eta_seconds": p.eta_seconds})
        if result is not None and getattr(result, "warnings", None):  # what the job left out (as the UI shows)
            out["warnings"] = list(result.warnings)
    out["position"] = service.position(job_id)
    out["images"] = [f"{PREFIX}/{job_id}/images/{i}" for i in range(len(out.get("outputs") or []))]
    return out


def _submit(runtime: Any, body: dict[str, Any]) -> dict[str, Any]:
    service = _service(runtime)
    limit = int(runtime.settings.get("job_queue_max", 0) or 0)
    waiting = service.waiting_generations
    if limit and waiting >= limit:
        raise ApiError(429, f"the queue is full ({waiting} jobs waiting; setting job_queue_max)",
                       headers={"Retry-After": "10"})
    kind, params, warnings = request_params(runtime, body)
    job = service.submit(params, kind=kind, origin="job-api")
    return {"id": job.id, "state": "queued", "position": service.position(job.id), "warnings": warnings}


def request_params(runtime: Any, body: dict[str, Any]) -> tuple[str, Any, list[str]]:
    """A job API body (``kind`` + A1111 request fields) → (kind, GenerationParams with images saved, warnings);
    422 naming the field for bad input. Also used by the generate-forever loops' route."""
    from app.api.models import Img2ImgRequest, Txt2ImgRequest
    from app.api.routes_generate import _context, request_to_job

    kind = str(body.pop("kind", "txt2img"))
    if kind not in KINDS:
        raise ApiError(422, f"kind: {kind!r} is not a job kind; valid: {', '.join(KINDS)}")
    model = Txt2ImgRequest if kind == "txt2img" else Img2ImgRequest
    try:
        req = model(**body)
    except ValidationError as exc:  # the field and the reason, as the A1111 routes answer
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        raise ApiError(422, describe_validation(errors), detail=errors) from None
    ctx = _context(runtime, kind)
    if kind == "img2img":
        from app.api.images import PixelBudget, decode_image

        if not req.init_images:
            raise ApiError(422, "init_images: an img2img job needs at least one image")
        budget = PixelBudget(runtime.settings)
        ctx.init_images = [decode_image(v, f"init_images[{i}]", runtime.settings, budget)
                           for i, v in enumerate(req.init_images)]
        ctx.mask = decode_image(req.mask, "mask", runtime.settings, budget) if req.mask else None
    api_job = request_to_job(req, kind, ctx)
    api_job.params.save_images = True  # the client collects the images later: they must be on disk
    return kind, api_job.params, list(api_job.warnings)


def _image_file(runtime: Any, job_id: str, index: int) -> Path:
    outputs = _job_view(runtime, job_id).get("outputs") or []
    if not 0 <= index < len(outputs):
        raise ApiError(404, f"job {job_id!r} has no image {index} ({len(outputs)} saved)")
    path = Path(outputs[index])
    if not path.is_file():
        raise ApiError(404, f"image {index} of job {job_id!r} is no longer on disk")
    return path


async def _events(runtime: Any, job_id: str, request: Request) -> AsyncIterator[str]:
    last: tuple[Any, ...] | None = None
    while True:
        view = _job_view(runtime, job_id)
        state = view.get("state")
        if state in FINISHED:
            yield _sse(state, {k: view.get(k) for k in ("id", "state", "error", "images", "outputs")})
            return
        progress = view.get("progress") or {}
        now = (state, view.get("position"), progress.get("step"), progress.get("fraction"))
        if now != last:
            event = "queued" if state == "queued" else "progress"
            yield _sse(event, {"id": job_id, "state": state, "position": view.get("position"), **progress})
            last = now
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.25)


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def register(router: APIRouter, runtime: Any) -> None:
    """Add the job routes to `router` (it carries the API's authentication)."""

    @router.post(PREFIX, tags=["jobs"])
    async def submit_job(request: Request) -> dict[str, Any]:
        body = parse_json_body(await request.body())
        if not isinstance(body, dict):
            raise ApiError(422, "the body must be a JSON object with the A1111 request fields and a kind")
        return await asyncio.to_thread(_submit, runtime, body)

    @router.get(PREFIX, tags=["jobs"])
    async def list_jobs(state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if state is not None and state not in STATES:
            raise ApiError(422, f"state: {state!r} is not a job state; valid: {', '.join(STATES)}")
        service = _service(runtime)
        if service.store is None:
            jobs = [j for j in service.jobs_snapshot() if state is None or j.get("state") == state]
            return jobs[: max(1, min(limit, 1000))]
        return [row.as_json() for row in service.store.recent(state, max(1, min(limit, 1000)))]

    @router.get(PREFIX + "/{job_id}", tags=["jobs"])
    async def get_job(job_id: str) -> dict[str, Any]:
        return _job_view(runtime, job_id)

    @router.get(PREFIX + "/{job_id}/images/{index}", tags=["jobs"])
    async def job_image(job_id: str, index: int) -> FileResponse:
        return FileResponse(_image_file(runtime, job_id, index))

    @router.get(PREFIX + "/{job_id}/events", tags=["jobs"])
    async def job_events(job_id: str, request: Request) -> StreamingResponse:
        _job_view(runtime, job_id)  # 404 before the stream starts
        return StreamingResponse(_events(runtime, job_id, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @router.delete(PREFIX + "/{job_id}", tags=["jobs"])
    async def cancel_job(job_id: str) -> dict[str, Any]:
        service = _service(runtime)
        view = _job_view(runtime, job_id)
        if view.get("state") in FINISHED:
            raise ApiError(409, f"job {job_id!r} already finished ({view.get('state')})")
        service.interrupt(job_id)
        return {"id": job_id, "requested": "cancel" if view.get("state") == "queued" else "interrupt",
                "at": time.time()}

    @router.post(PREFIX + "/{job_id}/retry", tags=["jobs"])
    async def retry_job(job_id: str) -> dict[str, Any]:
        service = _service(runtime)
        try:
            job = service.retry(job_id, origin="job-api")
        except KeyError as exc:
            raise ApiError(404, str(exc.args[0]) if exc.args else "job not found") from None
        return {"id": job.id, "state": "queued", "position": service.position(job.id), "retry_of": job_id}

    @router.post(PREFIX + "/{job_id}/front", tags=["jobs"])
    async def move_job_to_front(job_id: str) -> dict[str, Any]:
        service = _service(runtime)
        if not service.move_to_front(job_id):
            raise ApiError(409, f"job {job_id!r} is not queued")
        return {"id": job_id, "position": service.position(job_id)}
