"""No cross-site state changes (rule 3 of `app.web.guards`): `OriginPolicy` decides which `Origin` may change
state, `CrossSiteGuard` refuses the others (403) and refuses the content types an HTML form can send on the JSON
routes (415)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from app.auth import API_PREFIX
from app.web.asgi import (
    GRADIO_API,
    GRADIO_FORM_ROUTES,
    UNSAFE_METHODS,
    content_type,
    refuse,
    request_headers,
)

log = logging.getLogger(__name__)

# the content types an HTML form (or a no-cors fetch) can send cross-site without a CORS preflight
FORM_CONTENT_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})


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
        headers = request_headers(scope)
        origin = self.policy.foreign(scope, headers)
        if origin is not None:
            log.warning("refused a cross-site %s %s from origin %r", scope.get("method"), scope.get("path"),
                        origin[:200])
            await refuse(scope, receive, send, 403,
                         f"cross-site request refused: origin {origin[:200]!r} may not change this server's state "
                         "(allow it with --cors-allow-origins)")
            return
        if content_type(headers) in FORM_CONTENT_TYPES and self.json_only(scope):
            await refuse(scope, receive, send, 415,
                         f"Content-Type {content_type(headers)!r} is not accepted here: send JSON "
                         "(Content-Type: application/json), or no body")
            return
        await self.app(scope, receive, send)
