"""ASGI helpers shared by the request guards: request headers, the error reply, the route prefixes, and which
requests Starlette routes to the mounted gradio app (`gradio_route_matcher`, resolved at request time)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from app.auth import API_PREFIX  # the A1111 API's prefix, under --api-auth

if TYPE_CHECKING:
    from fastapi import FastAPI

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
GRADIO_API = "/gradio_api/"
# gradio routes (relative to the mount) that take form data rather than JSON
GRADIO_FORM_ROUTES = frozenset({"/gradio_api/upload", "/gradio_api/upload/", "/gradio_api/process_recording",
                                "/gradio_api/process_recording/"})


def request_headers(scope: dict) -> dict[str, str]:
    """Request headers, lower-case names; a repeated header keeps its first value."""
    out: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        out.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
    return out


def content_type(headers: dict[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def refuse(scope: dict, receive: Callable, send: Callable, status: int, detail: Any,
                 headers: dict[str, str] | None = None) -> None:
    """Answer the request with `{"detail": detail}` and `status` (a websocket is closed with 1008 instead)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    from starlette.responses import JSONResponse

    await JSONResponse({"detail": detail}, status_code=status, headers=headers)(scope, receive, send)


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
