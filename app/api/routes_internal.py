"""A1111's `/internal/*` routes that its own page and several API clients poll (spec §10, "Non-API internal routes").

- `POST /internal/progress` `{id_task, id_live_preview, live_preview}` → `{active, queued, completed, progress, eta,
  live_preview (a data: URI), id_live_preview, textinfo}`: the progress of one task by its id. A client names its task
  with the request field `force_task_id` (any job submitted with an id: the API's, the UI's). A live preview is sent
  only when it changed since the `id_live_preview` the client already has.
- `GET /internal/pending-tasks` → `{size, tasks}`: the ids of the queued tasks, oldest first.
- `GET /internal/sysinfo?attachment=false` → A1111's system information JSON (platform, versions, flags with secrets
  masked, settings, extensions, packages) for bug reports; `attachment=true` sends it as a file.

They are mounted with the API (`--api`/`--nowebui`) and, unlike A1111, behind `--api-auth` like `/sdapi/` (sysinfo
shows the settings and the command line).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Response
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field

from app.api.models import _Body

#: Environment variables sysinfo shows (A1111 shows a similar allow-list; others may hold secrets).
SYSINFO_ENV = ("COMMANDLINE_ARGS", "GIT", "INDEX_URL", "WEBUI_LAUNCH_LIVE_OUTPUT", "GRADIO_ANALYTICS_ENABLED",
               "PYTHONPATH", "TORCH_INDEX_URL", "TORCH_COMMAND", "REQS_FILE", "XFORMERS_PACKAGE", "CLIP_PACKAGE",
               "OPENCLIP_PACKAGE", "STABLE_DIFFUSION_REPO", "K_DIFFUSION_REPO", "HF_HUB_OFFLINE", "CUDA_VISIBLE_DEVICES",
               "OMP_NUM_THREADS", "PYTORCH_CUDA_ALLOC_CONF")


class InternalProgressRequest(_Body):
    id_task: str | None = Field(None, description="id of the task (the request's force_task_id)")
    id_live_preview: int = Field(-1, description="id of the live preview the client already has")
    live_preview: bool = Field(True, description="include the live preview image")


class InternalProgressResponse(BaseModel):
    active: bool
    queued: bool
    completed: bool
    progress: float | None = None
    eta: float | None = None
    live_preview: str | None = None
    id_live_preview: int | None = None
    textinfo: str | None = None


def task_progress(runtime: Any, req: InternalProgressRequest) -> InternalProgressResponse:
    """A1111's `progressapi` over the job service (see module doc)."""
    service = getattr(runtime, "service", None)
    job = service.get(req.id_task) if service is not None and req.id_task else None
    state = getattr(getattr(job, "state", None), "value", None)
    active = state == "running"
    queued = state == "queued"
    completed = job is not None and not active and not queued
    if not active:
        textinfo = "Waiting..."
        if queued:
            position = service.position(req.id_task) or 1
            textinfo = f"In queue: {position}/{service.queue_size}"
        return InternalProgressResponse(active=False, queued=queued, completed=completed, id_live_preview=-1,
                                        textinfo=textinfo)
    p = job.progress
    progress = 0.0
    if p.job_count > 0:
        progress += p.job_no / p.job_count
        if p.sampling_steps > 0:
            progress += p.sampling_step / p.sampling_steps / p.job_count
    progress = min(progress, 1.0)
    elapsed = time.time() - (job.started or time.time())
    eta = elapsed / progress - elapsed if progress > 0 else None
    preview, preview_id = None, req.id_live_preview
    settings = runtime.settings
    if req.live_preview and settings.get("live_previews_enable", True) and p.preview is not None \
            and p.preview_id != req.id_live_preview:
        preview, preview_id = _data_uri(p.preview, settings), p.preview_id
    return InternalProgressResponse(active=True, queued=False, completed=False, progress=progress, eta=eta,
                                    live_preview=preview, id_live_preview=preview_id, textinfo=p.textinfo or None)


def _data_uri(image: Any, settings: Any) -> str:
    from app.api.images import encode_image

    fmt = str(settings.get("live_previews_image_format", "png") or "png").lower()
    data = encode_image(image, None, settings, fmt_setting="live_previews_image_format")
    return f"data:image/{'jpeg' if fmt == 'jpg' else fmt};base64,{data}"


def pending_tasks(runtime: Any) -> dict[str, Any]:
    service = getattr(runtime, "service", None)
    jobs = service.jobs_snapshot() if service is not None else []
    tasks = [j["id"] for j in jobs if j.get("state") == "queued"]
    return {"size": len(tasks), "tasks": tasks}


def sysinfo(runtime: Any) -> dict[str, Any]:
    """System information for a bug report: nothing secret (flags redacted, an allow-list of the environment)."""
    import importlib.metadata

    import psutil

    from app import __version__
    from app.cli import redacted_args

    torch = sys.modules.get("torch")  # never imported here: only what the server already uses
    torch_info: dict[str, Any] = {"torch": None}
    if torch is not None:
        torch_info = {"torch": str(torch.__version__), "cuda": torch.version.cuda,
                      "cuda_available": bool(torch.cuda.is_available())}
    paths = getattr(runtime, "paths", None)
    vm = psutil.virtual_memory()
    packages = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()
                      if d.metadata["Name"])
    return jsonable_encoder({
        "Platform": platform.platform(),
        "Python": platform.python_version(),
        "Version": __version__,
        "Script path": str(Path(__file__).resolve().parents[2]),
        "Data path": str(getattr(paths, "data_dir", "") or ""),
        "Extensions dir": str(getattr(paths, "extensions_dir", "") or ""),
        "Commandline": redacted_args(runtime.args),
        "Torch env info": torch_info,
        "Exceptions": [],
        "CPU": {"model": platform.processor(), "count logical": psutil.cpu_count(),
                "count physical": psutil.cpu_count(logical=False)},
        "RAM": {"total": vm.total, "available": vm.available},
        "Extensions": _extension_names(runtime),
        "Environment": {k: os.environ[k] for k in SYSINFO_ENV if k in os.environ},
        "Config": runtime.settings.data,
        "Packages": packages,
    }, custom_encoder={Path: str})


def _extension_names(runtime: Any) -> list[dict[str, Any]]:
    from app.api.routes_info import extensions

    try:
        return [{"name": e.get("name"), "enabled": e.get("enabled"), "version": e.get("version")}
                for e in extensions(runtime)]
    except (OSError, AttributeError):  # no extensions folder in a bare runtime
        return []


def register(router: APIRouter, runtime: Any) -> None:
    """Add the `/internal/*` routes to `router` (which has no prefix)."""

    @router.post("/internal/progress", response_model=InternalProgressResponse)
    def progressapi(req: InternalProgressRequest) -> InternalProgressResponse:  # sync: encoding runs in the pool
        return task_progress(runtime, req)

    @router.get("/internal/pending-tasks")
    async def get_pending_tasks() -> dict[str, Any]:
        return pending_tasks(runtime)

    @router.get("/internal/sysinfo")
    def download_sysinfo(attachment: bool = False) -> Response:
        text = json.dumps(sysinfo(runtime), indent=2)
        headers = {}
        if attachment:
            name = time.strftime("sysinfo-%Y-%m-%d-%H-%M.json")
            headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return Response(text, media_type="application/json", headers=headers)
