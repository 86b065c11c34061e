"""Named model operations: what the server asks of the model manager, as job kinds that run on the worker in queue
order (``load_model``, ``unload_model``, ``reload_model``, ``model_info``, ``list_embeddings``).

Closures (``run_exclusive``) cannot cross into the worker process, so every model action the server needs is one of
these kinds. They run the same way in both executors: in the worker process, or on the in-process worker thread with
``--worker thread``. Each returns the model state (:func:`model_state`) as the job's ``value``, which the server caches
(``app.worker.remote.RemoteModels``). Engine side: reads the manager's handle (imports no torch itself).
"""

from __future__ import annotations

from typing import Any

from app.jobs.job import JobResult


def model_state(manager: Any) -> dict[str, Any] | None:
    """What the server needs to know about the active model (JSON): title, sha256, family, grid, SDXL flag."""
    handle = getattr(manager, "current", None) if manager is not None else None
    return handle_state(handle)


def handle_state(handle: Any) -> dict[str, Any] | None:
    if handle is None:
        return None
    info = getattr(handle, "info", None)
    loaded = getattr(handle, "loaded", None)
    try:
        multiple = int(handle.size_multiple)
    except Exception:  # noqa: BLE001 - a stand-in handle without a family keeps the default grid
        multiple = 8
    return {
        "title": str(getattr(handle, "title", "") or ""),
        "sha256": getattr(info, "sha256", None) or getattr(handle, "sha256", None),
        "filename": str(getattr(info, "filename", "") or ""),
        "family": str(getattr(loaded, "family", "") or ""),
        "is_sdxl": bool(getattr(loaded, "is_sdxl", False)),
        "size_multiple": multiple,
    }


def _title(ctx: Any) -> str | None:
    params = ctx.params if isinstance(ctx.params, dict) else {}
    title = params.get("title")
    return str(title) if title else None


def run_load_model(ctx: Any) -> JobResult:
    """Load (and activate) a checkpoint: ``{"title": ...}``, empty = the setting, else the first one."""
    handle = ctx.manager.get(_title(ctx))
    return JobResult(value=handle_state(handle))


def run_reload_model(ctx: Any) -> JobResult:
    """Re-read a checkpoint from disk (``/sdapi/v1/reload-checkpoint``)."""
    handle = ctx.manager.reload(_title(ctx))
    return JobResult(value=handle_state(handle))


def run_unload_model(ctx: Any) -> JobResult:
    """Drop every cached model (``/sdapi/v1/unload-checkpoint``)."""
    ctx.manager.unload()
    return JobResult(value=None)


def run_model_info(ctx: Any) -> JobResult:
    """The active model's state, without loading anything."""
    return JobResult(value=model_state(ctx.manager))


def run_list_embeddings(ctx: Any) -> JobResult:
    """The embeddings database's A1111 answer (``/sdapi/v1/embeddings``); ``{"force": true}`` rereads every file."""
    db = getattr(ctx.manager, "embeddings", None)
    if db is None:
        return JobResult(value={"loaded": {}, "skipped": {}})
    params = ctx.params if isinstance(ctx.params, dict) else {}
    if params.get("force"):
        db.load(None, force=True)
    else:
        db.refresh_if_changed()
    return JobResult(value=db.api_response())


#: Job kind → runner of the named model operations.
MODEL_OPS = {
    "load_model": run_load_model,
    "reload_model": run_reload_model,
    "unload_model": run_unload_model,
    "model_info": run_model_info,
    "list_embeddings": run_list_embeddings,
}
