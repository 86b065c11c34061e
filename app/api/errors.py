"""API errors and the route class every `/sdapi/v1` route uses.

- `ApiError(status, message)` is raised by endpoint code for bad input (4xx) or missing features (501).
- `ApiRoute` wraps each endpoint: it times the call (`X-Process-Time` header on every response, errors
  included) and turns any exception into A1111's error JSON
  `{"error": "<ExceptionClass>", "detail": ..., "body": "", "errors": "<str>"}` with the exception's status
  (500 by default), so one bad request never takes the server down. Request validation errors answer 422
  with `detail` = pydantic's error list (field and reason, never the value sent) and `errors` = a sentence naming
  the offending fields. `body` stays empty: the request is never echoed (it can hold megabytes of base64 images
  and the client has it anyway); the key is kept for clients that read A1111's shape.
- Before the endpoint runs, a JSON body is parsed off the event loop by `parse_json_body` (strict JSON: beyond
  `json.loads` it refuses, naming the field, nesting deeper than `MAX_JSON_DEPTH`, NaN/Infinity (Python's parser
  accepts them, JSON cannot answer them) and lone UTF-16 surrogates in any text (no file can store them) → 422),
  so a big body never stalls other requests. The error answer is made JSON-safe (NaN → "NaN", surrogates replaced),
  so building it can never fail itself.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("atelier.api")

_SURROGATE = re.compile("[\ud800-\udfff]")

#: Deepest JSON nesting the API accepts (A1111 clients nest script args a few levels; 100k levels crash parsers).
MAX_JSON_DEPTH = 64


class ApiError(Exception):
    """An error with an HTTP status and a message for the client (the message names the offending field)."""

    def __init__(self, status_code: int, message: str, detail: Any = None, error: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.headers = headers  # e.g. Retry-After on a 429
        self.detail = detail if detail is not None else message
        #: the `error` field of the response (default "ApiError"; e.g. the class of a failed job's exception)
        self.error = error


def describe_validation(errors: list[dict[str, Any]]) -> str:
    """`"width: Value error, must be a multiple of 8; steps: ..."` from pydantic's error list."""
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        where = ".".join(loc) or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid value')}")
    return "; ".join(parts) or "invalid request"


# -- strict JSON --------------------------------------------------------------------------------------------------------
def _where(path: list[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def check_json_value(value: Any, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise `ApiError(422)` naming the first place in `value` (parsed JSON) that is nested deeper than
    `max_depth`, holds NaN/Infinity, or text (a key or a value) with a lone UTF-16 surrogate."""
    stack: list[tuple[Any, list[Any]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if len(path) > max_depth:
            raise ApiError(422, f"{_where(path[:3])}: JSON nested more than {max_depth} levels deep")
        if isinstance(item, float):
            if not math.isfinite(item):
                raise ApiError(422, f"{_where(path)}: {item!r} is not a finite number (NaN and Infinity are refused)")
        elif isinstance(item, str):
            bad = _SURROGATE.search(item)
            if bad is not None:
                raise ApiError(422, f"{_where(path)}: text contains a lone UTF-16 surrogate "
                                    f"(\\u{ord(bad.group()):04x} at character {bad.start()}), which is not valid "
                                    "Unicode and cannot be saved")
        elif isinstance(item, dict):
            for key, sub in item.items():
                if _SURROGATE.search(key):
                    raise ApiError(422, f"{_where(path)}: a key contains a lone UTF-16 surrogate")
                stack.append((sub, [*path, key]))
        elif isinstance(item, list):
            stack.extend((sub, [*path, i]) for i, sub in enumerate(item))


def parse_json_body(body: bytes) -> Any:
    """Parse a JSON request body strictly (see module doc). `json.JSONDecodeError` passes through (FastAPI
    answers it with its usual 422); too deep nesting, NaN/Infinity and lone surrogates raise `ApiError(422)`."""
    try:
        value = json.loads(body)
    except RecursionError:
        raise ApiError(422, f"body: JSON nested more than {MAX_JSON_DEPTH} levels deep") from None
    check_json_value(value)
    return value



def _json_safe(value: Any, depth: int = 0) -> Any:
    """`value` with what JSON cannot carry replaced: NaN/Infinity become their names, lone surrogates U+FFFD,
    anything nested deeper than 32 levels "..." (an error answer must always encode)."""
    if depth > 32:
        return "..."
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_json_safe(str(k), depth + 1): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, depth + 1) for v in value]
    return value


def error_response(exc: BaseException) -> JSONResponse:
    """The A1111 error JSON for `exc` (status from the exception, 500 for unexpected ones); the request body is
    not echoed (see module doc)."""
    status = 500
    detail: Any = ""
    headers = None
    if isinstance(exc, RequestValidationError):
        status = 422
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        detail, message = errors, describe_validation(errors)
    elif isinstance(exc, ApiError):
        status, detail, message, headers = exc.status_code, exc.detail, str(exc), exc.headers
    elif isinstance(exc, (HTTPException, StarletteHTTPException)):
        status, detail, message, headers = exc.status_code, exc.detail, str(exc.detail), exc.headers
    elif isinstance(exc, RecursionError):  # e.g. a nested value deeper than Python's recursion limit
        status, detail, message = 422, "input nested too deeply", "body: input nested too deeply"
    else:
        message = f"{type(exc).__name__}: {exc}"
        detail = str(exc)
        log.error("API error: %s", message, exc_info=exc)
    name = getattr(exc, "error", None) if isinstance(exc, ApiError) else None
    content = {"error": name or type(exc).__name__, "detail": detail, "body": "", "errors": message}
    try:
        return JSONResponse(_json_safe(jsonable_encoder(content)), status_code=status, headers=headers)
    except (ValueError, TypeError, RecursionError):  # a detail JSON cannot carry: still answer, without it
        content = {"error": content["error"], "detail": _json_safe(str(message)), "body": "",
                   "errors": _json_safe(str(message))}
        return JSONResponse(content, status_code=status, headers=headers)


class ApiRoute(APIRoute):
    """APIRoute with A1111 error JSON and an `X-Process-Time` header (see module doc)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def timed_handler(request: Request) -> Response:
            started = time.perf_counter()
            try:
                await _parse_body_off_loop(request)
                response = await handler(request)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error, the server keeps serving
                response = error_response(exc)
            response.headers["X-Process-Time"] = f"{time.perf_counter() - started:.4f}"
            return response  # --api-log is app.server's ApiLogMiddleware

        return timed_handler


class ProcessTimeMiddleware:
    """ASGI middleware: `X-Process-Time` on every response under `prefix`, also those answered before a route
    runs (401 from the auth middleware, 404 for unknown paths). Routes of `ApiRoute` already set it."""

    def __init__(self, app: Any, prefix: str = "/sdapi/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        from starlette.datastructures import MutableHeaders

        started = time.perf_counter()

        async def timed_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "x-process-time" not in headers:
                    headers.append("X-Process-Time", f"{time.perf_counter() - started:.4f}")
            await send(message)

        await self.app(scope, receive, timed_send)


async def _parse_body_off_loop(request: Request) -> None:
    """Parse a JSON body in a worker thread with `parse_json_body` and leave the result where
    FastAPI looks for it (`Request.json()` caches it), so FastAPI does not parse it again on the event loop.
    Invalid JSON is left for FastAPI to report as usual."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    content_type = request.headers.get("content-type", "")
    if content_type and "json" not in content_type.split(";", 1)[0].lower():
        return
    body = await request.body()
    if not body:
        return
    try:
        request._json = await run_in_threadpool(parse_json_body, body)  # noqa: SLF001 - Starlette's cache
    except (json.JSONDecodeError, UnicodeDecodeError):
        return
