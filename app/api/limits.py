"""Request limits: no single request may freeze the server or take all its memory (docs/SECURITY.md §4, §5).

- `RequestBodyLimitMiddleware`: bodies larger than the setting `max_request_body_mb` answer 413 before they are
  read into memory (by Content-Length, and while streaming for chunked bodies). The web UI's file uploads
  (gradio's `/upload`, streamed to disk by gradio) are not counted.
- `limit(settings, key)`: the current value of a limit setting (0 or less = no limit).
- `decode_slot(settings)`: a context manager that bounds how many images are decoded at once
  (`api_image_decode_concurrency`).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException

from app.settings import setting_value
from app.settings.options import builtin_options

LIMIT_KEYS = (
    "max_request_body_mb",
    "api_max_prompt_length",
    "max_infotext_length",
    "api_max_image_megapixels",
    "api_max_request_megapixels",
    "api_image_decode_concurrency",
    "api_max_generation_megapixels",
)
#: The limit settings' defaults, read from their registration in `app.settings.options` (one source).
DEFAULTS: dict[str, float] = {o.key: o.default for o in builtin_options() if o.key in LIMIT_KEYS}

#: Paths whose bodies are streamed to disk by gradio itself and are not counted by the body limit.
UPLOAD_SUFFIXES = ("/upload",)


def limit(settings: Any, key: str) -> float:
    """The current value of limit setting `key` (0 = no limit); the default when unset or unreadable."""
    default = DEFAULTS[key]
    value = setting_value(settings, key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return default
    return max(float(value), 0.0)


# -- request body size ------------------------------------------------------------------------------------------------
class BodyTooLarge(StarletteHTTPException):
    """Raised from `receive` when a streamed body passes the limit: an HTTP 413 wherever it surfaces (the API's
    error JSON, Starlette's exception handler, or this middleware when nothing caught it)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, _too_large_message(max_bytes, None))


class RequestBodyLimitMiddleware:
    """ASGI middleware: 413 for bodies over `max_request_body_mb` (see module doc). `settings` is read on every
    request, so a changed setting applies at once."""

    def __init__(self, app: Any, settings: Any) -> None:
        self.app = app
        self.settings = settings

    def _limit_bytes(self) -> int:
        mb = limit(self.settings, "max_request_body_mb")
        return int(mb * 1024 * 1024) if mb > 0 else 0

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("path", "").rstrip("/").endswith(UPLOAD_SUFFIXES):
            await self.app(scope, receive, send)
            return
        max_bytes = self._limit_bytes()
        if not max_bytes:
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > max_bytes:
            await _too_large(scope, receive, send, max_bytes, length)
            return
        seen = 0
        started = False

        async def counting_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        async def watching_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            if started:
                raise
            await _too_large(scope, receive, send, max_bytes, None)


def _content_length(scope: dict) -> int | None:
    for key, value in scope.get("headers", []):
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large_message(max_bytes: int, length: int | None) -> str:
    size = f"{length} bytes" if length is not None else f"more than {max_bytes} bytes"
    return (f"request body too large: {size}, the limit is {max_bytes / 1024 / 1024:g} MB "
            "(setting max_request_body_mb)")


async def _too_large(scope: dict, receive: Callable, send: Callable, max_bytes: int, length: int | None) -> None:
    from starlette.responses import JSONResponse

    message = _too_large_message(max_bytes, length)
    body = {"error": "RequestTooLarge", "detail": message, "body": "", "errors": message}
    # the client may still be sending: close the connection instead of reading the rest
    await JSONResponse(body, status_code=413, headers={"Connection": "close"})(scope, receive, send)


# -- image decoding concurrency -----------------------------------------------------------------------------------------
class _Slots:
    """A counting limit whose size is read at every acquire (the setting may change while the server runs)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = 0

    @contextlib.contextmanager
    def hold(self, size: int) -> Iterator[None]:
        with self._cond:
            while self._busy >= max(1, size):
                self._cond.wait()
            self._busy += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify()


_DECODE_SLOTS = _Slots()


def decode_slot(settings: Any) -> contextlib.AbstractContextManager[None]:
    """Hold one of the `api_image_decode_concurrency` image-decoding slots (waits for a free one)."""
    return _DECODE_SLOTS.hold(int(limit(settings, "api_image_decode_concurrency")) or 1)
