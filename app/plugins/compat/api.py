"""``modules.api`` with ``modules.api.api`` (this module: base64 image helpers, ``Api``) and
``modules.api.models`` (the request models), for extensions that add API routes in ``on_app_started``."""

from __future__ import annotations

from typing import Any

from PIL import Image


def decode_base64_to_image(encoding: str) -> Image.Image:
    """A PIL image from base64 (a ``data:`` URL prefix is accepted); bad input raises an HTTP 4xx error."""
    from app.api.images import decode_image

    return decode_image(encoding)


def encode_pil_to_base64(image: Image.Image) -> bytes:
    """The image as base64 in the ``samples_format`` setting's format (A1111 returns bytes)."""
    from app.api.images import encode_image

    settings = _settings()
    return encode_image(image, None, settings).encode("ascii")


def _settings() -> Any:
    from app.plugins.compat.current import current

    return current().settings


class Api:
    """A1111's ``Api`` class; extensions only use ``Api.add_api_route`` through ``app`` in ``on_app_started``,
    which Atelier hands them as its FastAPI app."""

    def __init__(self, app: Any, queue_lock: Any = None) -> None:
        self.app = app
        self.queue_lock = queue_lock

    def add_api_route(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        self.app.add_api_route(path, endpoint, **kwargs)
