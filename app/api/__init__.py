"""The A1111-compatible HTTP API (`/sdapi/v1/*`, spec §10), mounted by `app.server` with `--api`/`--nowebui`.

    router = create_api_router(runtime)   # fastapi.APIRouter; app.server adds the --api-auth dependency

Modules: `models` (pydantic bodies with A1111 names and API defaults), `convert` (request → GenerationParams),
`checks` (overrides, size grid, memory limit), `images` (base64/URL in, encoded images out), `errors` (error JSON +
`X-Process-Time`), `scripts` (script registry), `routes_generate` (txt2img, img2img, extras, png-info, progress,
interrupt, skip), `routes_info` (options, lists, refresh, memory, scripts, extensions, server control) and
`routes_internal` (A1111's `/internal/progress`, `/internal/pending-tasks`, `/internal/sysinfo`, outside the
`/sdapi/v1` prefix but in the same router, so behind the same `--api-auth`). Generation runs on `runtime.service`,
the FIFO job queue the UI uses too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

API_PREFIX = "/sdapi/v1"


def create_api_router(runtime: Any) -> APIRouter:
    """All `/sdapi/v1` routes for `runtime` (no import-time side effects; nothing is loaded until a request).

    `runtime` is the composition root's `app.runtime.Runtime` (duck-typed: the API never imports it back); the
    routes read `args`, `paths`, `settings`, `catalog`, `manager`, `service`, `plugins` from it per request."""
    from fastapi import APIRouter

    from app.api import routes_generate, routes_info, routes_internal, routes_jobs, routes_loops
    from app.api.errors import ApiRoute

    api = APIRouter(prefix=API_PREFIX, route_class=ApiRoute, tags=["sdapi"])
    routes_generate.register(api, runtime)
    routes_info.register(api, runtime)
    router = APIRouter(route_class=ApiRoute)
    router.routes.extend(api.routes)  # the /sdapi/v1 routes as they are (include_router would wrap them lazily)
    routes_internal.register(router, runtime)
    routes_jobs.register(router, runtime)  # /atelier/v1/jobs: the job API on the same queue
    routes_loops.register(router, runtime)  # /atelier/v1/loops: durable generate-forever loops
    if hasattr(runtime, "on_app_started"):
        runtime.on_app_started(_add_process_time_middleware)
    return router


def _add_process_time_middleware(app: FastAPI) -> None:
    from app.api.errors import ProcessTimeMiddleware

    if any(m.cls is ProcessTimeMiddleware for m in app.user_middleware):
        return  # one per app, however often the router was created
    app.add_middleware(ProcessTimeMiddleware, prefix=API_PREFIX + "/")
