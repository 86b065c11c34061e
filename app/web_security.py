"""Request guards for the web server: what the mounted gradio UI may read, who may call it, and which sites may
change state. Installed by `app.server.build_app` through `install_request_guards(app, args, ui_login=...)`;
the gradio mount calls `enforce_gradio_file_rules(blocks)` right after `gr.mount_gradio_app`.

1. **Gradio's file rules hold for the mounted UI** (`enforce_gradio_file_rules`). `gr.mount_gradio_app` leaves
   `blocks.has_launched` False, and gradio skips its allowed-path check for apps that have not "launched": any
   `FileData` path a client sent was copied into gradio's cache and could then be downloaded. We mark the mounted
   Blocks as launched (what gradio's own reload mode does when it swaps Blocks) and probe that gradio now refuses a
   file outside its upload folder. On top of that, `GradioFileInputGuard` refuses, before gradio sees it, any call
   whose JSON carries a `FileData` path that is not in gradio's upload folder (403 naming the field), so the answer
   is a clear 4xx and the rule holds even if a gradio release changes its internals. `/gradio_api/file=` serves
   only gradio's upload/cache folder, the `allowed_paths` given at mount (the output and log folders) and static
   files registered with gradio.
2. **Every UI route is behind `--gradio-auth`** (`GradioAuthGuard`). Gradio itself leaves some routes open
   (`/gradio_api/cancel`, `/reset`, `/heartbeat/…`, `/stream/…`, `/startup-events`, …); the guard answers 401 for
   every request to the gradio mount without a valid gradio session cookie, except the login page and its static
   assets (`PUBLIC_UI_PATHS`, `PUBLIC_UI_PREFIXES`). `/sdapi/` stays under `--api-auth` (`app.auth`).
3. **No cross-site state changes** (`CrossSiteGuard`). A POST/PUT/PATCH/DELETE to any route is refused (403) when
   its `Origin` (or, without one, its `Referer`) names another site than the one addressed (the `Host`, or
   `X-Forwarded-Host` behind a proxy), unless `--cors-allow-origins`/`--cors-allow-origins-regex` allow it. A request
   with neither header (scripts, webuiapi, server-side clients) is not a browser's cross-site request and passes.
   On the JSON routes (`/sdapi/`, gradio's `/gradio_api/` except uploads) the three content types a cross-site
   HTML form can send (`application/x-www-form-urlencoded`, `multipart/form-data`, `text/plain`) are refused with
   415, whatever the headers, so a form post cannot reach them even from a browser that omits `Origin`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import argparse

    from fastapi import FastAPI

log = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# the content types an HTML form (or a no-cors fetch) can send cross-site without a CORS preflight
FORM_CONTENT_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
API_PREFIX = "/sdapi/"
GRADIO_API = "/gradio_api/"
# gradio routes (relative to the mount) that take form data rather than JSON
GRADIO_FORM_ROUTES = frozenset({"/gradio_api/upload", "/gradio_api/upload/", "/gradio_api/process_recording",
                                "/gradio_api/process_recording/"})
# what the login page needs before anyone has logged in (relative to the gradio mount); gradio answers "/" and
# "/config" itself with the login page / a 401 when the visitor has no session
PUBLIC_UI_PATHS = frozenset({"", "/", "/login", "/login/", "/logout", "/config", "/config/", "/theme.css",
                             "/gradio_api/theme.css", "/robots.txt", "/favicon.ico", "/manifest.json"})
PUBLIC_UI_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon")
MAX_GRADIO_JSON_BYTES = 16 * 1024 * 1024  # gradio call bodies carry form values and file references, not files
AUTH_REQUIRED_DETAIL = {"error": "Not authenticated", "auth_message": "Log in to the web UI first."}


# -- small helpers ----------------------------------------------------------------------------------------------------
def _headers(scope: dict) -> dict[str, str]:
    """Request headers, lower-case names; a repeated header keeps its first value."""
    out: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        out.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
    return out


def _content_type(headers: dict[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _reply(scope: dict, receive: Callable, send: Callable, status: int, detail: Any,
                 headers: dict[str, str] | None = None) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    from starlette.responses import JSONResponse

    await JSONResponse({"detail": detail}, status_code=status, headers=headers)(scope, receive, send)


def _netloc(scheme: str, host: str | None, port: int | None) -> str | None:
    if not host:
        return None
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(scheme)
    host = host.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return host if port is None or port == default else f"{host}:{port}"


def _origin_netloc(origin: str) -> tuple[str, str | None]:
    """`(scheme, host[:port])` of an Origin or Referer value; host None when it is not a URL (e.g. "null")."""
    try:
        parts = urlsplit(origin.strip())
        return parts.scheme.lower(), _netloc(parts.scheme.lower(), parts.hostname, parts.port)
    except ValueError:
        return "", None


def _host_netloc(host_header: str, scheme: str) -> str | None:
    try:
        parts = urlsplit(f"//{host_header.strip()}")
        return _netloc(scheme, parts.hostname, parts.port)
    except ValueError:
        return None


# -- 1. gradio's file rules -------------------------------------------------------------------------------------------
def gradio_upload_folder() -> Path:
    """The folder gradio saves uploads and its cache in (`GRADIO_TEMP_DIR`, else `<tmp>/gradio`)."""
    from gradio import utils as gr_utils

    return Path(gr_utils.get_upload_folder())


def enforce_gradio_file_rules(blocks: Any) -> None:
    """Make the mounted `blocks` apply gradio's allowed-path check to every file a client sends, then verify it.

    Raises RuntimeError when the installed gradio still accepts a file outside its upload folder (the UI would
    otherwise serve any file); `GradioFileInputGuard` keeps refusing such calls at the HTTP level either way.
    """
    blocks.has_launched = True
    try:
        from gradio import processing_utils
        from gradio.context import LocalContext
        from gradio.exceptions import InvalidPathError
    except ImportError as exc:  # a gradio release that moved these: the HTTP guard still holds
        log.warning("cannot verify gradio's file access rules (%s); relying on Atelier's request guard", exc)
        return
    check = getattr(processing_utils, "_check_allowed", None)
    if check is None:
        log.warning("cannot verify gradio's file access rules (no processing_utils._check_allowed); "
                    "relying on Atelier's request guard")
        return

    def probe() -> bool:
        LocalContext.blocks.set(blocks)
        try:
            check(__file__, True)  # as for a client's input: only files in the upload folder are accepted
        except InvalidPathError:
            return True
        return False

    if not contextvars.copy_context().run(probe):
        raise RuntimeError("the installed gradio does not refuse client file paths outside its upload folder in a "
                           "mounted app; refusing to serve the web UI (install a gradio release that does)")


def refused_file_inputs(data: Any, upload_folder: Path, is_static: Callable[[str], bool] | None = None,
                        limit: int = 10) -> list[str]:
    """Where `data` (a gradio call's JSON) holds a `FileData` whose path is not a file in `upload_folder`.

    Mirrors gradio's rule for client inputs (only files it received are accepted) and also refuses URLs, which our
    UI never sends (gradio would download them on the server). Returns JSON paths like `data[0].path`.
    """
    root = upload_folder.resolve()
    bad: list[str] = []
    stack: list[tuple[str, Any]] = [("", data)]
    while stack and len(bad) < limit:
        where, value = stack.pop()
        if isinstance(value, dict):
            meta = value.get("meta")
            if isinstance(value.get("path"), str) and isinstance(meta, dict) and meta.get("_type") == "gradio.FileData":
                if not _inside(value["path"], root) and not (is_static is not None and is_static(value["path"])):
                    bad.append(f"{where}.path" if where else "path")
                continue
            stack.extend((f"{where}.{k}" if where else str(k), v) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(value))))
    return bad


def _inside(path: str, root: Path) -> bool:
    if "://" in path or path.startswith("data:"):
        return False
    try:
        Path(path).resolve().relative_to(root)
        return True
    except (ValueError, OSError, RuntimeError):
        return False


def _gradio_is_static(path: str) -> bool:
    try:
        from gradio import utils as gr_utils

        return bool(gr_utils.is_static_file(path))
    except Exception:  # noqa: BLE001 - unknown gradio internals: not static
        return False


class GradioFileInputGuard:
    """ASGI: a JSON POST to gradio's `/gradio_api/…` naming a server file it did not receive from a client → 403."""

    def __init__(self, app: Any, is_gradio: Callable[[dict], str | None],
                 upload_folder: Callable[[], Path] = gradio_upload_folder,
                 max_bytes: int = MAX_GRADIO_JSON_BYTES) -> None:
        self.app = app
        self.is_gradio = is_gradio
        self.upload_folder = upload_folder
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") not in UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        rel = self.is_gradio(scope)
        headers = _headers(scope)
        ctype = _content_type(headers)
        if (rel is None or not rel.startswith(GRADIO_API) or rel in GRADIO_FORM_ROUTES
                or not (ctype == "application/json" or ctype.endswith("+json"))):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _reply(scope, receive, send, 413,
                             f"gradio call body is over {self.max_bytes // (1024 * 1024)} MB (files are uploaded "
                             "separately through /gradio_api/upload)")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            data = json.loads(body) if body else None
        except RecursionError:
            await _reply(scope, receive, send, 400, "request body: JSON nested too deeply")
            return
        except ValueError:
            data = None  # not JSON: gradio answers with its own validation error
        bad = refused_file_inputs(data, self.upload_folder(), _gradio_is_static) if data is not None else []
        if bad:
            log.warning("refused a gradio call naming server files it did not receive: %s %s", rel, ", ".join(bad))
            await _reply(scope, receive, send, 403,
                         f"file input refused ({', '.join(bad)}): only files uploaded through this web UI "
                         "(POST /gradio_api/upload) can be passed to it")
            return
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# -- 2. gradio login on every UI route -------------------------------------------------------------------------------
def gradio_mounts(app: FastAPI) -> list[Any]:
    """The Mount routes of `app` that serve a gradio app."""
    from starlette.routing import Mount

    out = []
    for route in app.router.routes:
        if isinstance(route, Mount) and hasattr(route.app, "get_blocks") and hasattr(route.app, "tokens"):
            out.append(route)
    return out


def gradio_route_matcher(app: FastAPI) -> Callable[[dict], str | None]:
    """`matcher(scope)` → the path relative to the gradio mount when `app` routes the request to gradio, else None.

    Routing is resolved as Starlette does (first full match wins), so routes added before the mount (the API,
    extension routes) are not taken for gradio's even when the UI is mounted at "/".
    """
    from starlette.routing import Match

    def matcher(scope: dict) -> str | None:
        if scope.get("path", "").startswith(API_PREFIX):
            return None  # the A1111 API (under --api-auth), also when no route matches
        mounts = gradio_mounts(app)
        if not mounts:
            return None
        partial = None
        for route in app.router.routes:
            try:
                match, _child = route.matches(scope)
            except Exception:  # noqa: BLE001 - a route that cannot judge this scope does not take it
                continue
            if match is Match.FULL:
                partial = route
                break
            if match is Match.PARTIAL and partial is None:
                partial = route
        if partial is None or partial not in mounts:
            return None
        path = scope.get("path", "")
        return path[len(partial.path):] if partial.path and path.startswith(partial.path) else path

    return matcher


def gradio_user(gradio_app: Any, scope: dict) -> str | None:
    """The user name of the gradio session cookie the request carries (None without a valid session)."""
    from starlette.requests import HTTPConnection

    tokens = getattr(gradio_app, "tokens", None)
    cookie_id = getattr(gradio_app, "cookie_id", None)
    if not isinstance(tokens, dict) or cookie_id is None:
        return None  # unknown gradio internals: fail closed
    cookies = HTTPConnection(scope).cookies
    for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
        token = cookies.get(name)
        if token and token in tokens:
            return tokens[token]
    return None


def is_public_ui_path(rel: str) -> bool:
    return rel in PUBLIC_UI_PATHS or rel.startswith(PUBLIC_UI_PREFIXES)


class GradioAuthGuard:
    """ASGI: with `--gradio-auth`, every request routed to the gradio app needs a logged-in gradio session."""

    def __init__(self, app: Any, fastapi_app: FastAPI, is_gradio: Callable[[dict], str | None]) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self.is_gradio = is_gradio

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        rel = self.is_gradio(scope)
        if rel is None or is_public_ui_path(rel):
            await self.app(scope, receive, send)
            return
        mounts = gradio_mounts(self.fastapi_app)
        if any(gradio_user(m.app, scope) is not None for m in mounts):
            await self.app(scope, receive, send)
            return
        await _reply(scope, receive, send, 401, AUTH_REQUIRED_DETAIL)


# -- 3. cross-site requests ------------------------------------------------------------------------------------------
class OriginPolicy:
    """Which `Origin` values may change state: the addressed site itself, plus the `--cors-allow-origins*` ones."""

    def __init__(self, allowed: Iterable[str] = (), allowed_regex: str | None = None) -> None:
        self.any = False
        self.allowed: set[str] = set()
        for origin in allowed:
            origin = origin.strip()
            if origin == "*":
                self.any = True
            elif origin:
                self.allowed.add(origin.rstrip("/").lower())
        self.regex = re.compile(allowed_regex) if allowed_regex else None

    def foreign(self, scope: dict, headers: dict[str, str]) -> str | None:
        """The offending origin when the request comes from a site other than the one addressed, else None."""
        origin = headers.get("origin")
        if origin is None:
            referer = headers.get("referer")
            if not referer:
                return None  # not sent by a browser on behalf of a page (or the page asked for no referrer)
            parts = urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "null"
        if self.any or origin.rstrip("/").lower() in self.allowed:
            return None
        if self.regex is not None and self.regex.fullmatch(origin):
            return None
        scheme, netloc = _origin_netloc(origin)
        if netloc is None:
            return origin  # "null" (sandboxed frame, file: page, redirect) or garbage
        request_scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
        hosts = [headers.get("host", "")]
        forwarded = headers.get("x-forwarded-host")
        if forwarded:  # a browser cannot add this header to a simple cross-site request
            hosts.append(forwarded.split(",", 1)[0])
        for host in hosts:
            for candidate_scheme in {scheme or request_scheme, request_scheme}:
                if host and _host_netloc(host, candidate_scheme) == netloc:
                    return None
        return origin


class CrossSiteGuard:
    """ASGI: refuse state-changing requests sent by another site (see the module doc, point 3)."""

    def __init__(self, app: Any, policy: OriginPolicy, is_gradio: Callable[[dict], str | None]) -> None:
        self.app = app
        self.policy = policy
        self.is_gradio = is_gradio

    def json_only(self, scope: dict) -> bool:
        path = scope.get("path", "")
        if path.startswith(API_PREFIX):
            return True
        rel = self.is_gradio(scope)
        return rel is not None and rel.startswith(GRADIO_API) and rel not in GRADIO_FORM_ROUTES

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") not in UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        origin = self.policy.foreign(scope, headers)
        if origin is not None:
            log.warning("refused a cross-site %s %s from origin %r", scope.get("method"), scope.get("path"),
                        origin[:200])
            await _reply(scope, receive, send, 403,
                         f"cross-site request refused: origin {origin[:200]!r} may not change this server's state "
                         "(allow it with --cors-allow-origins)")
            return
        if _content_type(headers) in FORM_CONTENT_TYPES and self.json_only(scope):
            await _reply(scope, receive, send, 415,
                         f"Content-Type {_content_type(headers)!r} is not accepted here: send JSON "
                         "(Content-Type: application/json), or no body")
            return
        await self.app(scope, receive, send)


# -- assembly ---------------------------------------------------------------------------------------------------------
def install_request_guards(app: FastAPI, args: argparse.Namespace, *, ui_login: bool) -> None:
    """Add the guards to `app` (call after the UI is mounted; the guards find the gradio mount at request time).

    `args` are the flags (`--cors-allow-origins`, `--cors-allow-origins-regex`); `ui_login` is True when the web UI
    has `--gradio-auth` credentials (then every UI route needs a session)."""
    matcher = gradio_route_matcher(app)
    origins = [o for o in (getattr(args, "cors_allow_origins", None) or "").split(",") if o.strip()]
    policy = OriginPolicy(origins, getattr(args, "cors_allow_origins_regex", None))
    app.add_middleware(GradioFileInputGuard, is_gradio=matcher)
    if ui_login:
        app.add_middleware(GradioAuthGuard, fastapi_app=app, is_gradio=matcher)
    app.add_middleware(CrossSiteGuard, policy=policy, is_gradio=matcher)
