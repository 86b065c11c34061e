"""Credentials and the `--api-auth` check (HTTP Basic).

- `parse_credentials(text, flag)` / `read_credentials_file(path)` → `{user: password}` (the Runtime parses
  `--api-auth`, `--gradio-auth` and `--gradio-auth-path` with them at start; errors name the flag, never the secret).
- `check_basic_auth(header, credentials)` → the user name, or None.
- `require_api_auth(holder)` → a FastAPI dependency. With `--api-auth u:p[,u2:p2]` it answers 401 with
  `WWW-Authenticate: Basic` and body `{"detail": "Incorrect username or password"}` unless the request carries valid
  HTTP Basic credentials; without `--api-auth` it lets everything through. `holder` is anything with an
  `api_credentials` mapping (the Runtime), read per request. Use it as
  `APIRouter(dependencies=[Depends(require_api_auth(runtime))])` for routes outside `/sdapi/` (extension routes);
  every `/sdapi/` path is ALSO covered by `ApiAuthMiddleware`, so a route cannot be left open by mistake.

Passwords are never logged or echoed. The web UI's `--gradio-auth` guard lives in `app.web.gradio_auth`.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from fastapi import HTTPException, Request
from starlette.responses import JSONResponse

API_PREFIX = "/sdapi/"
AUTH_FAILED_DETAIL = "Incorrect username or password"


class HasApiCredentials(Protocol):
    """What `require_api_auth` reads: the `--api-auth` credentials (empty = no password)."""

    api_credentials: Mapping[str, str]


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


def check_basic_auth(header: str | None, credentials: Mapping[str, str]) -> str | None:
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


def require_api_auth(holder: HasApiCredentials) -> Callable[[Request], str | None]:
    """A FastAPI dependency enforcing `--api-auth` (see module doc). Returns the user name (or None without auth)."""
    def dependency(request: Request) -> str | None:
        credentials = holder.api_credentials
        if not credentials:
            return None
        user = check_basic_auth(request.headers.get("authorization"), credentials)
        if user is None:
            raise HTTPException(status_code=401, detail=AUTH_FAILED_DETAIL, headers={"WWW-Authenticate": "Basic"})
        return user

    return dependency


class ApiAuthMiddleware:
    """ASGI middleware: every HTTP request under `/sdapi/` needs the `--api-auth` credentials."""

    def __init__(self, app: Any, credentials: Mapping[str, str], prefix: str = API_PREFIX) -> None:
        self.app = app
        self.credentials = credentials
        self.prefix = prefix

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(self.prefix) and scope.get("method") != "OPTIONS":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            if check_basic_auth(headers.get("authorization"), self.credentials) is None:
                response = JSONResponse({"detail": AUTH_FAILED_DETAIL}, status_code=401,
                                        headers={"WWW-Authenticate": "Basic"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
