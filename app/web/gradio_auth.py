"""Every UI route is behind `--gradio-auth` (rule 2 of `app.web.guards`): `GradioAuthGuard` answers 401 for every
request routed to the gradio mount without a valid gradio session cookie, except the login page and its static assets
(`PUBLIC_UI_PATHS`, `PUBLIC_UI_PREFIXES`). Gradio itself leaves some routes open (`/gradio_api/cancel`, `/reset`,
`/heartbeat/…`, `/stream/…`, `/startup-events`, …)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from app.web.asgi import gradio_mounts, refuse

if TYPE_CHECKING:
    from fastapi import FastAPI

# what the login page needs before anyone has logged in (relative to the gradio mount); gradio answers "/" and
# "/config" itself with the login page / a 401 when the visitor has no session
PUBLIC_UI_PATHS = frozenset({"", "/", "/login", "/login/", "/logout", "/config", "/config/", "/theme.css",
                             "/gradio_api/theme.css", "/robots.txt", "/favicon.ico", "/manifest.json"})
PUBLIC_UI_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon")
AUTH_REQUIRED_DETAIL = {"error": "Not authenticated", "auth_message": "Log in to the web UI first."}


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
        await refuse(scope, receive, send, 401, AUTH_REQUIRED_DETAIL)
