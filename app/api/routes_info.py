"""Information and control routes: options, cmd-flags, model/sampler/upscaler lists, refresh, memory, scripts,
styles, extensions, model (un)loading and the optional server-stop routes (spec §10.1).

A checkpoint switch (`POST /options` with `sd_model_checkpoint`, `/reload-checkpoint`) runs as a queued job
(a named model operation, `runtime.load_checkpoint`, run by the worker in queue order), so it never overlaps a generation and `/progress` shows it (job_count ≥ 1).
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body
from fastapi.encoders import jsonable_encoder

from app.api.convert import ConvertContext, validate_overrides
from app.api.deps import service_for, upscaler_registry
from app.api.errors import ApiError
from app.api.scripts import available_scripts, scripts_for
from app.models.catalog.file_info import model_file_info
from app.params import LATENT_UPSCALE_MODES
from app.settings.schema import SettingLockedError, SettingsSaveError

log = logging.getLogger(__name__)


# -- options ----------------------------------------------------------------------------------------------------------
def current_checkpoint(runtime: Any) -> tuple[str | None, str | None]:
    """(title, sha256) of the configured checkpoint (a job's override may have another model loaded meanwhile),
    else of the loaded model, else of the first listed checkpoint (what the next job would load)."""
    catalog = runtime.catalog
    configured = runtime.settings.get("sd_model_checkpoint")
    info = catalog.find_checkpoint(configured) if configured else None
    if info is None:
        loaded = _model_state(runtime).loaded()  # never creates the model manager (torch-free server)
        info = loaded.info if loaded is not None and loaded.info is not None else loaded
    if info is None:
        listed = catalog.checkpoints()
        info = listed[0] if listed else None
    if info is None:
        return configured, None
    return str(info.title), getattr(info, "sha256", None)


def get_options(runtime: Any) -> dict[str, Any]:
    data = runtime.settings.data
    title, sha256 = current_checkpoint(runtime)
    data["sd_model_checkpoint"] = title
    if sha256:
        data["sd_checkpoint_hash"] = sha256
    return jsonable_encoder(data, custom_encoder={Path: str})


def switch_checkpoint(runtime: Any, title: str) -> Any:
    """Load `title` on the worker, in queue order; returns the loaded model's handle."""
    manager = runtime.manager
    if manager is None:
        raise ApiError(503, "the model manager is not available (see the server log)")
    load = getattr(runtime, "load_checkpoint", None)  # a Runtime: a named operation, run by the worker in queue order
    try:
        if load is not None:
            return load(title)
        return service_for(runtime).run_exclusive(lambda: manager.get(title))  # a duck-typed host with a local manager
    except ValueError as exc:  # the file was refused (unsafe, corrupt, NaN weights): the message names it
        raise ApiError(422, str(exc), error=type(exc).__name__) from None


def set_options(runtime: Any, body: dict[str, Any]) -> None:
    """Apply `body` (A1111's `POST /options`). Keys no setting is registered for (`return_grid`, `sd_lora`, an
    uninstalled extension's) do not fail the request: they are kept in config.json for extensions installed later, as
    A1111 does, and logged. While folder settings are locked they are only logged (an extension installed later may
    register such a key as a locked setting). Known keys are validated all or nothing (a bad value is a 422)."""
    settings = runtime.settings
    if settings.frozen:
        raise ApiError(403, "settings are frozen (--freeze-settings): changing them is disabled")
    _refuse_locked_folder_settings(settings, body)
    unknown = {key: value for key, value in body.items() if key not in settings}
    known = {key: value for key, value in body.items() if key in settings}
    checked = validate_overrides(known, ConvertContext(settings=settings, catalog=runtime.catalog), where="options")
    title = checked.get("sd_model_checkpoint")
    if title:
        handle = switch_checkpoint(runtime, title)
        checked["sd_model_checkpoint"] = handle.title
        if "sd_checkpoint_hash" in settings:
            checked["sd_checkpoint_hash"] = handle.sha256 or ""
    try:
        settings.set_many(checked)
        _keep_unknown(settings, unknown)
    except SettingsSaveError as exc:  # config.json was not written: nothing changed, in memory either
        status = 507 if exc.cause.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)) else 500
        raise ApiError(status, str(exc), error="SettingsSaveError") from exc


def _keep_unknown(settings: Any, unknown: dict[str, Any]) -> None:
    if not unknown:
        return
    names = ", ".join(sorted(unknown))
    if settings.restricted_reason is not None:
        log.warning("POST /options: ignored settings that do not exist here: %s (not kept: settings are locked, %s)",
                    names, settings.restricted_reason)
        return
    settings.keep_unknown(unknown)
    log.warning("POST /options: ignored settings that do not exist here: %s (kept in config.json for extensions "
                "installed later)", names)


def _refuse_locked_folder_settings(settings: Any, body: dict[str, Any]) -> None:
    """403 naming every folder setting the request would change while they are locked (the whole request is
    refused, nothing is applied); posting a locked setting's current value back is allowed, as in A1111."""
    locked = []
    for key, value in body.items():
        try:
            settings.validate(key, value)
        except SettingLockedError as exc:
            locked.append(exc)
        except (KeyError, ValueError):
            continue  # reported by validate_overrides as a 422
    if locked:
        names = ", ".join(exc.key for exc in locked)
        raise ApiError(403, f"options: {names}: locked ({locked[0].reason}); folder settings, file name "
                            f"patterns and server limits can only be changed in config.json on the server; "
                            f"nothing was changed",
                       error="SettingLockedError")


# -- lists ------------------------------------------------------------------------------------------------------------
def upscalers(runtime: Any) -> list[dict[str, Any]]:
    """From the upscaler registry when installed, else None/Lanczos/Nearest plus the catalog's model files."""
    registry = upscaler_registry(runtime)
    if registry is not None:
        return [{"name": u.name, "model_name": u.model_name, "model_path": str(u.model_path) if u.model_path else None,
                 "model_url": None, "scale": u.scale} for u in registry.list()]
    base = [{"name": n, "model_name": None, "model_path": None, "model_url": None, "scale": 4}
            for n in ("None", "Lanczos", "Nearest")]
    files = [{"name": f.name, "model_name": f.kind, "model_path": str(f.path), "model_url": None, "scale": 4}
             for f in runtime.catalog.upscaler_files()]
    return base + files


def realesrgan_models(runtime: Any) -> list[dict[str, Any]]:
    return [{"name": u["name"], "path": u["model_path"], "scale": u["scale"]}
            for u in upscalers(runtime) if u["model_name"] == "RealESRGAN"]


def prompt_styles(runtime: Any) -> list[dict[str, Any]]:
    """The styles of styles.csv (`app.prompts.styles.StyleDatabase`, read fresh so edits on disk show at once)."""
    from app.prompts.styles import StyleDatabase

    db = StyleDatabase(list(getattr(runtime.paths, "styles_files", ()) or [runtime.paths.styles_file]))
    if db.errors and not db.styles:
        raise ApiError(500, "; ".join(db.errors))
    return [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt} for s in db.styles.values()]


def _git_info(folder: Path) -> dict[str, Any]:
    git = folder / ".git"
    info: dict[str, Any] = {"remote": None, "branch": None, "commit_hash": None, "commit_date": None}
    try:
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
        if head.startswith("ref: "):
            ref = head[5:]
            info["branch"] = ref.rsplit("/", 1)[-1]
            ref_file = git / ref
            info["commit_hash"] = ref_file.read_text(encoding="utf-8").strip() if ref_file.is_file() else None
            info["commit_date"] = int(ref_file.stat().st_mtime) if ref_file.is_file() else None
        else:
            info["commit_hash"] = head
        for line in (git / "config").read_text(encoding="utf-8").splitlines():
            if line.strip().startswith("url ="):
                info["remote"] = line.split("=", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def extensions(runtime: Any) -> list[dict[str, Any]]:
    """`app.plugins.list_extensions` (loaded, disabled and broken folders, with git metadata); a plain folder
    scan when the plugin package is not installed."""
    try:
        from app.plugins import list_extensions
    except ImportError:
        list_extensions = None
    if list_extensions is not None:
        return jsonable_encoder(list_extensions(runtime))
    folder = Path(runtime.paths.extensions_dir)
    if not folder.is_dir():
        return []
    disabled = set(runtime.settings.get("disabled_extensions") or [])
    all_off = runtime.settings.get("disable_all_extensions", "none") in ("all", "extra") or bool(
        getattr(runtime.args, "disable_all_extensions", False) or getattr(runtime.args, "disable_extra_extensions", False))
    out = []
    for ext in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        git = _git_info(ext)
        version = (git["commit_hash"] or "")[:8]
        out.append({"name": ext.name, **git, "version": version,
                    "enabled": ext.name not in disabled and not all_off})
    return out


def memory() -> dict[str, Any]:
    import psutil

    process = psutil.Process(os.getpid())
    rss = process.memory_info().rss
    vm = psutil.virtual_memory()
    ram = {"free": vm.available, "used": rss, "total": vm.total}
    try:
        torch = sys.modules.get("torch")  # GPU memory is the generation side's: never import torch for it here
        if torch is None:
            return {"ram": ram, "cuda": {"error": "torch is not loaded in the server process"}}
        if not torch.cuda.is_available():
            return {"ram": ram, "cuda": {"error": "CUDA is not available"}}
        free, total = torch.cuda.mem_get_info()
        s = torch.cuda.memory_stats()

        def pair(key: str) -> dict[str, int]:
            return {"current": s.get(f"{key}.all.current", 0), "peak": s.get(f"{key}.all.peak", 0)}

        cuda = {"system": {"free": free, "used": total - free, "total": total},
                "active": pair("active_bytes"), "allocated": pair("allocated_bytes"),
                "reserved": pair("reserved_bytes"), "inactive": pair("inactive_split_bytes"),
                "events": {"retries": s.get("num_alloc_retries", 0), "oom": s.get("num_ooms", 0)}}
    except Exception as exc:  # noqa: BLE001 - reported like A1111 does
        cuda = {"error": f"{exc}"}
    return {"ram": ram, "cuda": cuda}


def _model_state(runtime: Any) -> Any:
    """The runtime's `app.models.state.ModelState` (a stand-in runtime without one: a state over its manager)."""
    state = getattr(runtime, "model_state", None)
    if state is None:
        from app.models.state import ModelState

        state = ModelState(lambda: getattr(runtime, "manager", None))
    return state


def _after_response(action: Any, delay: float = 0.5) -> None:
    """Run `action` shortly after the current response went out."""
    threading.Timer(delay, action).start()


def register(router: APIRouter, runtime: Any) -> None:  # noqa: C901 - a flat list of small routes
    """Add the information and control routes to `router`."""

    @router.get("/options")
    def get_config() -> dict[str, Any]:
        return get_options(runtime)

    @router.post("/options")
    def set_config(req: dict[str, Any] = Body(...)) -> None:  # noqa: B008 - FastAPI idiom
        set_options(runtime, req)

    @router.get("/cmd-flags")
    def get_cmd_flags() -> dict[str, Any]:
        from app.cli import redacted_args

        flags = redacted_args(runtime.args)
        for key in ("gradio_auth_path",):
            if flags.get(key):
                flags[key] = "***"
        return jsonable_encoder(flags, custom_encoder={Path: str})

    @router.get("/samplers")
    def get_samplers() -> list[dict[str, Any]]:
        from app.engine.sampling.names import api_samplers

        return api_samplers()

    @router.get("/schedulers")
    def get_schedulers() -> list[dict[str, Any]]:
        from app.engine.sampling.names import api_schedulers

        return api_schedulers()

    @router.get("/upscalers")
    def get_upscalers() -> list[dict[str, Any]]:
        return upscalers(runtime)

    @router.get("/latent-upscale-modes")
    def get_latent_upscale_modes() -> list[dict[str, Any]]:
        return [{"name": name} for name in LATENT_UPSCALE_MODES]

    @router.get("/sd-models")
    def get_sd_models() -> list[dict[str, Any]]:
        # A1111's fields plus Atelier's family / format / quant / size_bytes (clients ignore unknown keys)
        return [{**c.as_api(), **model_file_info(c.filename)} for c in runtime.catalog.checkpoints()]

    @router.get("/sd-vae")
    def get_sd_vaes() -> list[dict[str, Any]]:
        return [v.as_api() for v in runtime.catalog.vaes()]

    @router.get("/sd-modules")
    def get_sd_modules() -> list[dict[str, Any]]:
        """Forge's list of text encoder and VAE files (``forge_additional_modules`` takes their filenames)."""
        return [m.as_api() for m in runtime.catalog.modules()]

    @router.get("/loras")
    def get_loras() -> list[dict[str, Any]]:
        return jsonable_encoder([lora.as_api() for lora in runtime.catalog.loras()], custom_encoder={Path: str})

    @router.get("/embeddings")
    def get_embeddings() -> dict[str, Any]:
        return jsonable_encoder(_model_state(runtime).embeddings())

    @router.get("/hypernetworks")
    def get_hypernetworks() -> list[dict[str, Any]]:
        return []  # hypernetworks are not supported

    @router.get("/face-restorers")
    def get_face_restorers() -> list[dict[str, Any]]:
        return []  # face restoration is not supported

    @router.get("/realesrgan-models")
    def get_realesrgan_models() -> list[dict[str, Any]]:
        return realesrgan_models(runtime)

    @router.get("/prompt-styles")
    def get_prompt_styles() -> list[dict[str, Any]]:
        return prompt_styles(runtime)

    @router.post("/refresh-checkpoints")
    def refresh_checkpoints() -> None:
        runtime.catalog.refresh_checkpoints()

    @router.post("/refresh-vae")
    def refresh_vae() -> None:
        runtime.catalog.refresh_vaes()
        if hasattr(runtime.catalog, "refresh_modules"):
            runtime.catalog.refresh_modules()  # text encoders and VAEs of split-file models (/sd-modules)

    @router.post("/refresh-loras")
    def refresh_loras() -> None:
        runtime.catalog.refresh_loras()

    @router.post("/refresh-embeddings")
    def refresh_embeddings() -> None:
        runtime.catalog.refresh_embeddings()
        db = _model_state(runtime).embedding_database(create=True)
        if db is not None:
            db.load(None, force=True)

    @router.post("/unload-checkpoint")
    def unload_checkpoint() -> None:
        manager = runtime.manager
        if manager is not None:
            unload = getattr(runtime, "unload_checkpoint", None)  # a Runtime: the named operation
            if unload is not None:
                unload()
            else:
                service_for(runtime).run_exclusive(manager.unload)

    @router.post("/reload-checkpoint")
    def reload_checkpoint() -> None:
        manager = runtime.manager
        if manager is None:
            raise ApiError(503, "the model manager is not available (see the server log)")
        title = runtime.settings.get("sd_model_checkpoint") or None
        reload = getattr(runtime, "reload_checkpoint", None)  # a Runtime: the named operation
        if reload is not None:
            reload(title)
        else:
            service_for(runtime).run_exclusive(lambda: manager.reload(title))

    @router.get("/memory")
    def get_memory() -> dict[str, Any]:
        return memory()

    @router.get("/scripts")
    def get_scripts_list() -> dict[str, list[str]]:
        """A1111 lists every script of the tab with a UI (lower-cased titles): selectable and always-on alike."""
        return {kind: sorted(set(scripts_for(kind, runtime)) | set(scripts_for(kind, runtime, alwayson=True)))
                for kind in ("txt2img", "img2img")}

    @router.get("/script-info")
    def get_script_info() -> list[dict[str, Any]]:
        out = []
        for script in available_scripts(runtime):
            for is_img2img, wanted in ((False, script.is_txt2img), (True, script.is_img2img)):
                if wanted:
                    out.append(script.info(is_img2img))
        return jsonable_encoder(out)

    @router.get("/extensions")
    def get_extensions_list() -> list[dict[str, Any]]:
        return extensions(runtime)

    if getattr(runtime.args, "api_server_stop", False):
        _register_server_control(router, runtime)


def _register_server_control(router: APIRouter, runtime: Any) -> None:
    @router.post("/server-kill")
    def kill_webui() -> dict[str, Any]:
        _after_response(lambda: os._exit(0))
        return {}

    @router.post("/server-restart")
    def restart_webui() -> dict[str, Any]:
        def restart() -> None:
            runtime.stop()
            time.sleep(1.0)
            runtime.shutdown()
            argv = list(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
            log.info("restarting: %s", " ".join(argv))
            os.execv(sys.executable, [sys.executable, *argv[1:]])

        _after_response(restart)
        return {}

    @router.post("/server-stop")
    def stop_webui() -> dict[str, Any]:
        _after_response(runtime.stop)
        return {}
