"""Gradio's file rules hold for the mounted UI (rule 1 of `app.web.guards`).

`gr.mount_gradio_app` leaves `blocks.has_launched` False, and gradio skips its allowed-path check for apps that have
not "launched": any `FileData` path a client sent was copied into gradio's cache and could then be downloaded.
`enforce_gradio_file_rules` marks the mounted Blocks as launched (what gradio's own reload mode does when it swaps
Blocks) and probes that gradio now refuses a file outside its upload folder. On top of that, `GradioFileInputGuard`
refuses, before gradio sees it, any call whose JSON carries a `FileData` path that is not in gradio's upload folder
(403 naming the field), so the answer is a clear 4xx and the rule holds even if a gradio release changes its internals.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.web.asgi import GRADIO_API, GRADIO_FORM_ROUTES, UNSAFE_METHODS, content_type, refuse, request_headers

log = logging.getLogger(__name__)

MAX_GRADIO_JSON_BYTES = 16 * 1024 * 1024  # gradio call bodies carry form values and file references, not files


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
        headers = request_headers(scope)
        ctype = content_type(headers)
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
                await refuse(scope, receive, send, 413,
                             f"gradio call body is over {self.max_bytes // (1024 * 1024)} MB (files are uploaded "
                             "separately through /gradio_api/upload)")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        from anyio import to_thread  # deferred like the other server libraries of app.web (import cost at start)

        # parsing a body of up to max_bytes and resolving the paths it names is blocking work: off the event loop
        too_deep, bad = await to_thread.run_sync(self._inspect, body)
        if too_deep:
            await refuse(scope, receive, send, 400, "request body: JSON nested too deeply")
            return
        if bad:
            log.warning("refused a gradio call naming server files it did not receive: %s %s", rel, ", ".join(bad))
            await refuse(scope, receive, send, 403,
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

    def _inspect(self, body: bytes) -> tuple[bool, list[str]]:
        """(nesting too deep to parse, the file inputs refused) of a gradio call body; not JSON → nothing refused
        (gradio answers it with its own validation error)."""
        try:
            data = json.loads(body) if body else None
        except RecursionError:
            return True, []
        except ValueError:
            return False, []
        return False, (refused_file_inputs(data, self.upload_folder(), _gradio_is_static) if data is not None else [])
