"""What several route modules take from the runtime: the job service (with the API's 503/501 answers) and the
upscaler registry. A leaf of `app.api`: the route modules import it, it imports none of them."""

from __future__ import annotations

from typing import Any

from app.api.errors import ApiError

#: What each job kind needs installed, for the 501 answer when its runner is missing.
RUNNER_MODULES = {"txt2img": "app/engine/modes/txt2img.py", "img2img": "app/engine/modes/img2img.py",
                  "extras": "app/engine/modes/extras.py"}


def service_for(runtime: Any, kind: str | None = None) -> Any:
    """The runtime's job service; 503 without one, 501 when no runner for `kind` is installed."""
    service = runtime.service
    if service is None:
        raise ApiError(503, "the job service is not available (app.jobs.service failed to load; see the server log)")
    if kind is not None:
        try:
            service.runner_for(kind)
        except (ValueError, ImportError) as exc:
            where = RUNNER_MODULES.get(kind, "a plugin")
            raise ApiError(501, f"{kind} is not available: no '{kind}' job runner is installed ({where}): {exc}") from None
    return service


def upscaler_registry(runtime: Any) -> Any:
    """The runtime's upscaler registry (`runtime.upscalers`, the one its jobs use; None if not installed)."""
    try:  # the registry is built on first use: its module and the device probe import torch
        return getattr(runtime, "upscalers", None)
    except ImportError:
        return None
