"""`GET <ui>/sd_extra_networks/thumb?filename=<path>`: an Extra Networks card's preview image (A1111's route name).

Only image files (png, jpg, jpeg, webp, gif) inside the model folders the cards come from (checkpoints, LoRA,
embeddings, hypernetworks) are served; anything else, model files included, is a 404. With `--gradio-auth` the route
needs a logged-in gradio session, like the UI itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from app.models.catalog.cards import allowed_preview
from app.web.asgi import gradio_mounts
from app.web.gradio_auth import AUTH_REQUIRED_DETAIL, gradio_user

if TYPE_CHECKING:
    from fastapi import FastAPI

MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
               ".gif": "image/gif"}


def preview_roots(paths: Any) -> list[Path]:
    """The folders whose images the route serves."""
    return [Path(p) for attr in ("ckpt_dirs", "lora_dirs", "embeddings_dirs", "hypernetwork_dirs")
            for p in getattr(paths, attr, ())]


def add_preview_route(app: FastAPI, ui_path: str, roots: Callable[[], Iterable[Path]], *,
                      login_required: bool) -> None:
    """Add the thumbnail route for a UI mounted at `ui_path` (before the UI mount)."""
    base = "/" + ui_path.strip("/")
    route = ("" if base == "/" else base) + "/sd_extra_networks/thumb"

    async def thumb(request: Request) -> Response:
        if login_required and not any(gradio_user(m.app, request.scope) is not None for m in gradio_mounts(app)):
            return JSONResponse({"detail": AUTH_REQUIRED_DETAIL}, status_code=401)
        raw = request.query_params.get("filename", "")
        path = allowed_preview(raw, roots())
        if path is None:
            return JSONResponse({"detail": "not a preview image in a model folder"}, status_code=404)
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix.lower()),
                            headers={"cache-control": "no-cache"})

    app.add_api_route(route, thumb, methods=["GET", "HEAD"], include_in_schema=False)
