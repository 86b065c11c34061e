"""Generate-forever loops in the job API (beyond A1111): a loop submits the same params again and again (seed -1:
a new random seed each time) as ordinary jobs of the durable queue (origin ``forever``), survives a restart and
runs until it is stopped. The UI's "Generate forever" buttons start the same kind of loop.

- ``POST /atelier/v1/loops`` ``{"kind": "txt2img" | "img2img", ...the A1111 request fields...}`` → ``{"id", "state"}``.
- ``GET /atelier/v1/loops[?state=running|stopped]`` → newest first: id, kind, origin, state, ``generation`` (jobs
  finished), ``last_job`` (its id: ``/atelier/v1/jobs/{last_job}`` has the images), how and when it stopped.
- ``GET /atelier/v1/loops/{id}`` → one loop.
- ``DELETE /atelier/v1/loops/{id}`` → stop after the running job (A1111's "Cancel generate forever");
  ``?now=true`` interrupts the running job too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from app.api.errors import ApiError, parse_json_body
from app.api.routes_jobs import request_params

PREFIX = "/atelier/v1/loops"
LOOP_STATES = ("running", "stopped")


def _loops(runtime: Any) -> Any:
    loops = getattr(runtime, "loops", None)
    if loops is None:
        raise ApiError(503, "generate-forever loops are not available")
    return loops


def _start(runtime: Any, body: dict[str, Any]) -> dict[str, Any]:
    kind, params, warnings = request_params(runtime, body)
    loop = _loops(runtime).start(params, kind, origin="job-api")
    return {"id": loop.loop_id, "state": "running", "kind": kind, "warnings": warnings}


def _get(runtime: Any, loop_id: str) -> dict[str, Any]:
    row = _loops(runtime).get(loop_id)
    if row is None:
        raise ApiError(404, f"loop {loop_id!r} not found")
    return dict(row)


def register(router: APIRouter, runtime: Any) -> None:
    """Add the loop routes to `router` (it carries the API's authentication)."""

    @router.post(PREFIX, tags=["jobs"])
    async def start_loop(request: Request) -> dict[str, Any]:
        body = parse_json_body(await request.body())
        if not isinstance(body, dict):
            raise ApiError(422, "the body must be a JSON object with the A1111 request fields and a kind")
        return await asyncio.to_thread(_start, runtime, body)

    @router.get(PREFIX, tags=["jobs"])
    async def list_loops(state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if state is not None and state not in LOOP_STATES:
            raise ApiError(422, f"state: {state!r} is not a loop state; valid: {', '.join(LOOP_STATES)}")
        return await asyncio.to_thread(_loops(runtime).list, state, max(1, min(limit, 1000)))

    @router.get(PREFIX + "/{loop_id}", tags=["jobs"])
    async def get_loop(loop_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(_get, runtime, loop_id)

    @router.delete(PREFIX + "/{loop_id}", tags=["jobs"])
    async def stop_loop(loop_id: str, now: bool = False) -> dict[str, Any]:
        row = await asyncio.to_thread(_get, runtime, loop_id)
        if row.get("state") != "running":
            raise ApiError(409, f"loop {loop_id!r} is not running (stopped by {row.get('stopped_by') or '?'})")
        await asyncio.to_thread(_loops(runtime).stop, loop_id, now)
        return {"id": loop_id, "requested": "interrupt" if now else "cancel"}
