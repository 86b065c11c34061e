"""HTTP glue: one FastAPI app carrying the A1111 API (`app.api`) and the gradio UI (`app.ui`), behind the guards.

- `build_app(runtime)` → the FastAPI app: `/internal/ping`, the API router from `app.api.create_api_router(runtime)`
  (with `--api`/`--nowebui`), and the UI from `app.ui.build_ui(runtime)` mounted at `/` (or `--subpath`) unless
  `--nowebui`. `build_ui` returns a `gr.Blocks`, or `(blocks, mount_kwargs)` where `mount_kwargs` may hold
  `css`, `js`, `head`, `theme`, `css_paths`, `head_paths`, `favicon_path`, `allowed_paths` (gradio 6 takes those at
  mount time, not in `gr.Blocks`) and `page` (not gradio's: the HTML `app.web.page` adds to the UI's page, atelier.js
  and the extensions' JavaScript/CSS, and the `file=` route for their files).
- `runtime` is the composition root's `app.runtime.Runtime`; this module only needs what `ServedRuntime` names
  (and passes the object on to the API and the UI), so it never imports the runtime back.

`--api-auth` (`require_api_auth`, `ApiAuthMiddleware`) lives in `app.auth`. The request guards (gradio's file rules
on the mounted UI, `--gradio-auth` on every UI route, no cross-site state changes) live in the `app.web` package.
Passwords are never logged or echoed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.responses import RedirectResponse
from starlette.routing import Mount

from app import __version__
from app.api import create_api_router
from app.api.limits import RequestBodyLimitMiddleware
from app.auth import API_PREFIX, ApiAuthMiddleware, require_api_auth
from app.ui import build_ui
from app.web.gradio_files import enforce_gradio_file_rules
from app.web.guards import install_request_guards
from app.web.page import PageInjectMiddleware, add_file_route
from app.web.previews import add_preview_route, preview_roots

log = logging.getLogger(__name__)

GATED_PREFIXES = ("/sdapi/", "/gradio_api/", "/queue/", "/run/", "/call/")
MOUNT_KWARGS = ("css", "js", "head", "theme", "css_paths", "head_paths", "favicon_path", "allowed_paths")
#: not gradio's: what `app.web.page` adds to the UI's HTML and serves as `file=` (`app.ui.page_assets.PageSource`)
PAGE_KWARG = "page"


class ServedRuntime(Protocol):
    """What `build_app` reads from the runtime it serves (`app.runtime.Runtime` provides it; the API and the UI
    receive the same object and read more)."""

    args: argparse.Namespace
    paths: Any
    settings: Any
    ui_config: Any
    api_credentials: Mapping[str, str]
    gradio_credentials: Mapping[str, str]
    imports_ready: threading.Event


# -- middleware -------------------------------------------------------------------------------------------------------
class ApiLogMiddleware:
    """`--api-log`: one log line per API request (method, path, status, duration, client); bodies are not logged."""

    def __init__(self, app: Any, prefix: str = API_PREFIX) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 0}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            client = (scope.get("client") or ("?",))[0]
            log.info("API %s %s %s %.3fs %s", scope.get("method"), scope.get("path"), status["code"] or "-",
                     time.perf_counter() - started, client)


class ImportGateMiddleware:
    """Hold requests that run code (`/sdapi/`, gradio calls) until `ready` is set by the warm-up thread.

    The server answers at once (`/internal/ping`, the UI page) while torch/diffusers are imported in the background;
    calls arriving meanwhile wait instead of importing the same modules concurrently.
    """

    def __init__(self, app: Any, ready: Any, prefixes: tuple[str, ...] = GATED_PREFIXES, timeout: float = 600) -> None:
        self.app = app
        self.ready = ready
        self.prefixes = prefixes
        self.timeout = timeout

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if (not self.ready.is_set() and scope["type"] in ("http", "websocket")
                and any(p in scope.get("path", "") for p in self.prefixes)):
            waited = 0.0
            while not self.ready.is_set() and waited < self.timeout:
                await asyncio.sleep(0.05)
                waited += 0.05
        await self.app(scope, receive, send)


# -- app assembly -----------------------------------------------------------------------------------------------------
def _mount_api(app: FastAPI, runtime: ServedRuntime) -> None:
    router = create_api_router(runtime)
    if not isinstance(router, APIRouter):
        raise TypeError(f"app.api.create_api_router must return a fastapi.APIRouter, got {type(router).__name__}")
    app.include_router(router, dependencies=[Depends(require_api_auth(runtime))])


def _build_blocks(runtime: ServedRuntime) -> tuple[Any, dict[str, Any]]:
    result = build_ui(runtime)
    blocks, kwargs = result if isinstance(result, tuple) else (result, {})
    unknown = set(kwargs) - set(MOUNT_KWARGS) - {PAGE_KWARG}
    if unknown:
        raise ValueError(f"app.ui.build_ui returned unknown mount options: {sorted(unknown)}")
    runtime.ui_config.save_if_dirty()
    return blocks, dict(kwargs)


def _mount_ui(app: FastAPI, runtime: ServedRuntime, ui_path: str) -> None:
    import gradio as gr  # deferred: gradio is imported only when the web UI is served (not with --nowebui)

    blocks, kwargs = _build_blocks(runtime)
    page = kwargs.pop(PAGE_KWARG, None)
    if page is not None:  # extension JS/CSS in the page and their files, as A1111 serves them (before the mount)
        add_file_route(app, ui_path, page.resolve, page.media_types, login_required=bool(runtime.gradio_credentials))
        app.add_middleware(PageInjectMiddleware, ui_path=ui_path, head=page.head, body_end=page.body_end)
    add_preview_route(app, ui_path, lambda: preview_roots(runtime.paths), login_required=bool(runtime.gradio_credentials))
    allowed = [str(runtime.paths.outputs_dir), str(runtime.paths.log_dir)] + list(kwargs.pop("allowed_paths", []) or [])
    creds = runtime.gradio_credentials
    gr.mount_gradio_app(
        app, blocks, path=ui_path,
        auth=list(creds.items()) or None,
        auth_message="Atelier: please log in" if creds else None,
        allowed_paths=allowed,
        show_error=True,
        ssr_mode=False,
        **kwargs,
    )
    enforce_gradio_file_rules(blocks)  # mount_gradio_app leaves gradio's allowed-path check off (issue 12, finding 2)


def build_app(runtime: ServedRuntime) -> FastAPI:
    """Assemble the FastAPI app for the runtime's flags (imports gradio only when the UI is served)."""
    args = runtime.args
    app = FastAPI(title="Atelier", version=_version(),
                  docs_url="/docs" if args.api else None, redoc_url="/redoc" if args.api else None,
                  openapi_url="/openapi.json" if args.api else None)
    app.state.runtime = runtime

    @app.get("/internal/ping", include_in_schema=False)
    def ping() -> dict[str, Any]:
        return {}

    if args.api:
        _mount_api(app, runtime)
    if not args.nowebui:
        ui_path = "/" + (args.subpath or "").strip("/")
        if ui_path != "/":
            @app.get("/", include_in_schema=False)
            def to_subpath() -> RedirectResponse:
                return RedirectResponse(ui_path + "/", status_code=307)

        _mount_ui(app, runtime, ui_path)  # --theme is applied by the page itself (app.ui.mount_kwargs): `/` stays a 200
    # gradio file inputs, --gradio-auth on every UI route, cross-site requests
    install_request_guards(app, args, ui_login=bool(runtime.gradio_credentials))
    app.add_middleware(ImportGateMiddleware, ready=runtime.imports_ready)
    app.add_middleware(RequestBodyLimitMiddleware, settings=runtime.settings)  # 413 over max_request_body_mb
    if runtime.api_credentials:
        app.add_middleware(ApiAuthMiddleware, credentials=runtime.api_credentials)
    if args.api_log:
        app.add_middleware(ApiLogMiddleware)
    origins = [o.strip() for o in (args.cors_allow_origins or "").split(",") if o.strip()]
    if origins or args.cors_allow_origins_regex:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_origin_regex=args.cors_allow_origins_regex,
                           allow_methods=["*"], allow_headers=["*"], allow_credentials=True)
    return app


def move_ui_mounts_last(app: FastAPI) -> None:
    """Put mounted sub-apps (the gradio UI at "/") after plain routes, so routes added later are not shadowed."""
    routes = app.router.routes
    routes[:] = [r for r in routes if not isinstance(r, Mount)] + [r for r in routes if isinstance(r, Mount)]


def _version() -> str:
    return __version__
