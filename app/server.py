"""HTTP glue: one FastAPI app carrying the A1111 API (`app.api`) and the gradio UI (`app.ui`), plus authentication.

Public interface (used by the API, UI and plugin code):

- `require_api_auth(runtime)` → a FastAPI dependency. With `--api-auth u:p[,u2:p2]` it answers 401 with
  `WWW-Authenticate: Basic` and body `{"detail": "Incorrect username or password"}` unless the request carries valid
  HTTP Basic credentials; without `--api-auth` it lets everything through. Use it as
  `APIRouter(dependencies=[Depends(require_api_auth(runtime))])` for routes outside `/sdapi/` (extension routes);
  every `/sdapi/` path is ALSO covered by `ApiAuthMiddleware`, so a route cannot be left open by mistake.
- `parse_credentials(text, flag)` / `read_credentials_file(path)` → `{user: password}`.
- `build_app(runtime)` → the FastAPI app: `/internal/ping`, the API router from `app.api.create_api_router(runtime)`
  (with `--api`/`--nowebui`), and the UI from `app.ui.build_ui(runtime)` mounted at `/` (or `--subpath`) unless
  `--nowebui`. `build_ui` returns a `gr.Blocks`, or `(blocks, mount_kwargs)` where `mount_kwargs` may hold
  `css`, `js`, `head`, `theme`, `css_paths`, `head_paths`, `favicon_path`, `allowed_paths` (gradio 6 takes those at
  mount time, not in `gr.Blocks`).
Passwords are never logged or echoed.
The request guards (gradio's file rules on the mounted UI, `--gradio-auth` on every UI route, no cross-site state
changes) live in `app.web_security`.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request

if TYPE_CHECKING:
    from app.runtime import Runtime

log = logging.getLogger(__name__)

API_PREFIX = "/sdapi/"
AUTH_FAILED_DETAIL = "Incorrect username or password"
GATED_PREFIXES = ("/sdapi/", "/gradio_api/", "/queue/", "/run/", "/call/")
MOUNT_KWARGS = ("css", "js", "head", "theme", "css_paths", "head_paths", "favicon_path", "allowed_paths")


# -- credentials ------------------------------------------------------------------------------------------------------
def parse_credentials(text: str | None, flag: str = "--api-auth") -> dict[str, str]:
    """`"user:password[,user2:password2]"` (newlines also separate entries) → `{user: password}`.

    The password may contain ':' (the first ':' splits). Errors name the flag and the entry number, never the secret.
    """
    creds: dict[str, str] = {}
    if not text:
        return creds
    entries = [e.strip() for line in text.splitlines() for e in line.split(",")]
    for n, entry in enumerate((e for e in entries if e and not e.startswith("#")), start=1):
        user, sep, password = entry.partition(":")
        if not sep or not user.strip() or not password:
            raise ValueError(f"{flag}: entry {n} is not in the form user:password")
        creds[user.strip()] = password
    return creds


def read_credentials_file(path: str | Path, flag: str = "--gradio-auth-path") -> dict[str, str]:
    """Credentials from a file: `user:password` pairs, one per line or comma-separated; `#` lines are comments."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None
    return parse_credentials(text, flag)


def check_basic_auth(header: str | None, credentials: dict[str, str]) -> str | None:
    """The user name if `header` (an Authorization value) holds valid Basic credentials, else None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    expected = credentials.get(user)
    # compare_digest on bytes also when the user is unknown, so timing does not reveal user names
    ok = secrets.compare_digest(password.encode(), (expected if expected is not None else "\0" + password).encode())
    return user if ok and expected is not None else None


def require_api_auth(runtime: Runtime) -> Callable[[Request], str | None]:
    """A FastAPI dependency enforcing `--api-auth` (see module doc). Returns the user name (or None without auth)."""
    def dependency(request: Request) -> str | None:
        credentials = runtime.api_credentials
        if not credentials:
            return None
        user = check_basic_auth(request.headers.get("authorization"), credentials)
        if user is None:
            raise HTTPException(status_code=401, detail=AUTH_FAILED_DETAIL, headers={"WWW-Authenticate": "Basic"})
        return user

    return dependency


class ApiAuthMiddleware:
    """ASGI middleware: every HTTP request under `/sdapi/` needs the `--api-auth` credentials."""

    def __init__(self, app: Any, credentials: dict[str, str], prefix: str = API_PREFIX) -> None:
        self.app = app
        self.credentials = credentials
        self.prefix = prefix

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(self.prefix) and scope.get("method") != "OPTIONS":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            if check_basic_auth(headers.get("authorization"), self.credentials) is None:
                from starlette.responses import JSONResponse

                response = JSONResponse({"detail": AUTH_FAILED_DETAIL}, status_code=401,
                                        headers={"WWW-Authenticate": "Basic"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


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
            import asyncio

            waited = 0.0
            while not self.ready.is_set() and waited < self.timeout:
                await asyncio.sleep(0.05)
                waited += 0.05
        await self.app(scope, receive, send)


class ThemeRedirectMiddleware:
    """With `--theme light|dark`, a browser opening the UI root is redirected to `?__theme=<theme>` (gradio's switch)."""

    def __init__(self, app: Any, theme: str, ui_path: str) -> None:
        self.app = app
        self.theme = theme
        self.ui_paths = {ui_path, ui_path.rstrip("/") + "/"} if ui_path != "/" else {"/"}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if (scope["type"] == "http" and scope.get("method") == "GET" and scope.get("path") in self.ui_paths
                and b"__theme=" not in scope.get("query_string", b"")):
            from starlette.responses import RedirectResponse

            query = scope.get("query_string", b"").decode("latin-1")
            target = f"{scope['path']}?{query + '&' if query else ''}__theme={self.theme}"
            await RedirectResponse(target, status_code=307)(scope, receive, send)
            return
        await self.app(scope, receive, send)


# -- app assembly -----------------------------------------------------------------------------------------------------
def _optional_attr(module_name: str, attr: str) -> Callable | None:
    """`module.attr` if the module imports and has it; None (logged) when the module or attribute is missing."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            log.warning("%s is not installed: %s", module_name, exc)
            return None
        raise
    fn = getattr(module, attr, None)
    if fn is None:
        log.warning("%s.%s is missing", module_name, attr)
    return fn


def _mount_api(app: FastAPI, runtime: Runtime) -> bool:
    create_api_router = _optional_attr("app.api", "create_api_router")
    if create_api_router is None:
        log.warning("the HTTP API is not available (app.api.create_api_router missing): /sdapi/v1 is not served")
        return False
    from fastapi import APIRouter, Depends

    router = create_api_router(runtime)
    if not isinstance(router, APIRouter):
        raise TypeError(f"app.api.create_api_router must return a fastapi.APIRouter, got {type(router).__name__}")
    app.include_router(router, dependencies=[Depends(require_api_auth(runtime))])
    return True


def _fallback_ui(message: str) -> Any:
    import gradio as gr

    with gr.Blocks(title="Atelier") as demo:
        gr.Markdown(f"# Atelier\n\n{message}\n\nThe HTTP API (start with `--api`) is documented at `/docs`.")
    return demo


def _build_blocks(runtime: Runtime) -> tuple[Any, dict[str, Any]]:
    build_ui = _optional_attr("app.ui", "build_ui")
    if build_ui is None:
        return _fallback_ui("The web UI package (`app.ui.build_ui`) is not installed in this copy."), {}
    result = build_ui(runtime)
    blocks, kwargs = result if isinstance(result, tuple) else (result, {})
    unknown = set(kwargs) - set(MOUNT_KWARGS)
    if unknown:
        raise ValueError(f"app.ui.build_ui returned unknown mount options: {sorted(unknown)}")
    runtime.ui_config.save_if_dirty()
    return blocks, dict(kwargs)


def _mount_ui(app: FastAPI, runtime: Runtime, ui_path: str) -> None:
    import gradio as gr

    blocks, kwargs = _build_blocks(runtime)
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
    from app.web_security import enforce_gradio_file_rules

    enforce_gradio_file_rules(blocks)  # mount_gradio_app leaves gradio's allowed-path check off (issue 12, finding 2)


def build_app(runtime: Runtime) -> FastAPI:
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
            from starlette.responses import RedirectResponse

            @app.get("/", include_in_schema=False)
            def to_subpath() -> RedirectResponse:
                return RedirectResponse(ui_path + "/", status_code=307)

        _mount_ui(app, runtime, ui_path)
        if args.theme:
            app.add_middleware(ThemeRedirectMiddleware, theme=args.theme, ui_path=ui_path)
    from app.web_security import install_request_guards

    install_request_guards(app, runtime)  # gradio file inputs, --gradio-auth on every UI route, cross-site requests
    app.add_middleware(ImportGateMiddleware, ready=runtime.imports_ready)
    from app.api.limits import RequestBodyLimitMiddleware

    app.add_middleware(RequestBodyLimitMiddleware, settings=runtime.settings)  # 413 over max_request_body_mb
    if runtime.api_credentials:
        app.add_middleware(ApiAuthMiddleware, credentials=runtime.api_credentials)
    if args.api_log:
        app.add_middleware(ApiLogMiddleware)
    origins = [o.strip() for o in (args.cors_allow_origins or "").split(",") if o.strip()]
    if origins or args.cors_allow_origins_regex:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_origin_regex=args.cors_allow_origins_regex,
                           allow_methods=["*"], allow_headers=["*"], allow_credentials=True)
    return app


def move_ui_mounts_last(app: FastAPI) -> None:
    """Put mounted sub-apps (the gradio UI at "/") after plain routes, so routes added later are not shadowed."""
    from starlette.routing import Mount

    routes = app.router.routes
    routes[:] = [r for r in routes if not isinstance(r, Mount)] + [r for r in routes if isinstance(r, Mount)]


def _version() -> str:
    from app import __version__

    return __version__
