"""The page as A1111 extensions expect it: extra HTML inside the UI's own page, and `file=<path>` for their files.

- `PageInjectMiddleware` inserts `head()` before `</head>` and `body_end()` before `</body>` of the HTML gradio
  answers for the UI root (GET only; any other response passes untouched). A1111 does the same to gradio's page so
  extension scripts are real `<script src>` tags that run while the page is parsed (gradio 6's own `head` option is
  added by its JavaScript after start-up, after `DOMContentLoaded`, which State and Aspect Ratio Helper wait for).
- `add_file_route` answers `GET <ui>/file=<path>` (A1111's gradio 3 route, gone from gradio 6) with the file
  `resolve(path)` allows (None: 404); with `--gradio-auth` it needs a logged-in gradio session, like the UI.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from app.web.asgi import gradio_mounts
from app.web.gradio_auth import AUTH_REQUIRED_DETAIL, gradio_user

if TYPE_CHECKING:
    from fastapi import FastAPI

MAX_PAGE_BYTES = 32 * 1024 * 1024  # gradio's page embeds its config; anything larger is passed on unchanged


def ui_root_paths(ui_path: str) -> frozenset[str]:
    """The request paths that answer the UI page for a mount at `ui_path` ("/" or "/sub")."""
    base = "/" + ui_path.strip("/")
    return frozenset({"/"}) if base == "/" else frozenset({base, base + "/"})


class PageInjectMiddleware:
    """ASGI: add `head()` / `body_end()` to the UI page's HTML (computed per request, so `opts` are current)."""

    def __init__(self, app: Any, ui_path: str, head: Callable[[], str], body_end: Callable[[], str]) -> None:
        self.app = app
        self.paths = ui_root_paths(ui_path)
        self.head = head
        self.body_end = body_end

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        chunks: list[bytes] = []
        size = 0
        passing = False

        async def capture(message: dict) -> None:
            nonlocal start, size, passing
            if passing:
                await send(message)
                return
            if message["type"] == "http.response.start":
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message.get("headers", [])}
                html = headers.get("content-type", "").startswith("text/html")
                if message.get("status") != 200 or not html or headers.get("content-encoding"):
                    passing = True
                    await send(message)
                    return
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > MAX_PAGE_BYTES:  # not a page we know: give it back as it came
                passing = True
                await send(start)
                await send({"type": "http.response.body", "body": b"".join(chunks),
                            "more_body": message.get("more_body", False)})
                return
            if message.get("more_body"):
                return
            body = inject(b"".join(chunks), self.head(), self.body_end())
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)


def inject(page: bytes, head: str, body_end: str) -> bytes:
    """`head` before the first `</head>`, `body_end` before the last `</body>` (a page without them is unchanged)."""
    if head and b"</head>" in page:
        page = page.replace(b"</head>", head.encode("utf-8") + b"</head>", 1)
    if body_end and b"</body>" in page:
        at = page.rfind(b"</body>")
        page = page[:at] + body_end.encode("utf-8") + page[at:]
    return page


def add_file_route(app: FastAPI, ui_path: str, resolve: Callable[[str], Path | None],
                   media_types: dict[str, str], *, login_required: bool) -> None:
    """`GET <ui_path>/file=<path>`: the file `resolve(path)` returns, else 404. Add it before the UI is mounted."""
    base = "/" + ui_path.strip("/")
    route = ("" if base == "/" else base) + "/file={path:path}"

    async def serve_file(request: Request) -> Response:
        if login_required and not any(gradio_user(m.app, request.scope) is not None for m in gradio_mounts(app)):
            return JSONResponse({"detail": AUTH_REQUIRED_DETAIL}, status_code=401)
        raw = request.path_params.get("path", "")
        file = resolve(raw)
        if file is None:
            return JSONResponse({"detail": f"file={raw}: not an extension file"}, status_code=404)
        media = media_types.get(file.suffix.lower())
        return FileResponse(file, media_type=media, headers={"cache-control": "no-cache"})

    app.add_api_route(route, serve_file, methods=["GET", "HEAD"], include_in_schema=False)

