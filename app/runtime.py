"""Runtime: the composition root, the one object that holds a running Atelier (flags, folders, settings, models,
job service, server). `main(argv)` is the process entry point (`python -m app`, the `atelier` script).

    runtime = Runtime(parse_args([...]))   # reads config.json / ui-config.json; no folders created, no torch import
    runtime.serve()                        # creates folders, builds the FastAPI + gradio app, runs uvicorn

Heavy parts are created on first use: `devices` (imports torch), `catalog` (`app.models.catalog.Catalog`),
`manager` (`app.models.manager`) and `service` (`app.jobs.service.JobService`); the server starts and answers
before they exist. The server (`app.server`), the API and the UI get this object and never import it back.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from app.auth import parse_credentials, read_credentials_file
from app.cli import is_listening_publicly, parse_args
from app.firstrun import FirstRunGuide, first_run_guide
from app.models.state import ModelState
from app.paths import Paths, paths_from_args
from app.plugins.registry import PluginRegistry
from app.prompts.extra_networks import ExtraNetworkRegistry
from app.server import build_app, move_ui_mounts_last
from app.settings import Settings
from app.settings.model_choices import connect_model_choices, note_loaded, note_model_hash
from app.settings.ui_config import UiConfig
from app.startup import serving
from app.startup.data_folder import clean_interrupted_writes, has_checkpoints

if TYPE_CHECKING:
    from fastapi import FastAPI

    from app.devices import DevicePolicy

log = logging.getLogger("atelier")

class Runtime:
    """Everything a running instance shares. Public attributes: `args`, `paths`, `settings`, `ui_config`,
    `api_credentials`, `gradio_credentials`, `extra_networks`, `plugins`; lazy properties: `devices`, `catalog`, `upscalers`,
    `manager`, `service`."""

    def __init__(self, args: argparse.Namespace | None = None, *, paths: Paths | None = None,
                 settings: Settings | None = None, ui_config: UiConfig | None = None,
                 default_worker: str = "thread") -> None:
        set_offline_environment()
        #: where worker kinds run when neither `--worker` nor ATELIER_WORKER says: `main()` passes "process"; a
        #: Runtime built in-process (tests, tools) runs them on a thread unless asked
        self._default_worker = default_worker
        self.args = args if args is not None else parse_args([], environ={})
        self.paths = paths or paths_from_args(self.args)
        self.api_credentials: dict[str, str] = parse_credentials(self.args.api_auth, "--api-auth")
        gradio = parse_credentials(self.args.gradio_auth, "--gradio-auth")
        if self.args.gradio_auth_path:
            gradio.update(read_credentials_file(self.args.gradio_auth_path))
        self.gradio_credentials: dict[str, str] = gradio
        self.settings = settings or Settings.load(self.paths.config_file, frozen=self.args.freeze_settings)
        self.ui_config = ui_config or UiConfig.load(self.paths.ui_config_file)
        reason = self.folder_lock_reason
        if reason is not None:
            self.settings.restrict(reason)  # outdir_* and the file name patterns cannot be changed from outside
        self.started_at = time.time()
        self.app: FastAPI | None = None
        self.server: Any = None
        self._lock = threading.RLock()
        self._lazy: dict[str, Any] = {}
        self._app_started_callbacks: list[Callable[[FastAPI], None]] = []
        self._started = False
        #: this runtime's extensions (`app.plugins.registry.PluginRegistry`), loaded into by start(); its model manager
        #: (`manager.plugins`), the UI and the API read it. Empty until then.
        self.plugins = PluginRegistry(self, self.settings)
        #: `<type:...>` prompt-tag handlers of this runtime's model manager (LoRA registers into it with the manager)
        self.extra_networks = ExtraNetworkRegistry()
        #: Set once the heavy modules are imported. Until then `app.server.ImportGateMiddleware` holds API/UI calls,
        #: because concurrent first imports of diffusers from two threads can fail ("cannot import name ...").
        self.imports_ready = threading.Event()
        self.imports_ready.set()
        #: what the generation side knows about models (loaded checkpoint, embeddings), read by the UI and the API
        #: without creating the manager (`app.models.state.ModelState`; a worker process reports into it)
        self.model_state = ModelState(lambda: self._lazy.get("manager"), lambda: self.manager)

    # -- policy ---------------------------------------------------------------------------------------------------
    @property
    def listening_publicly(self) -> bool:
        return is_listening_publicly(self.args)

    @property
    def folder_lock_reason(self) -> str | None:
        """Why the folder settings (outdir_*, file name patterns) are locked for this run, or None.

        Locked with `--hide-ui-dir-config` (as in A1111), and whenever the server listens on the network while the
        API or the web UI it serves has no password: anyone who can reach it must not choose where files go."""
        args = self.args
        if getattr(args, "hide_ui_dir_config", False):
            return "--hide-ui-dir-config"
        if not self.listening_publicly:
            return None
        open_api = bool(getattr(args, "api", False)) and not self.api_credentials
        open_ui = not getattr(args, "nowebui", False) and not self.gradio_credentials
        if open_api or open_ui:
            return ("the server listens on the network without a password: "
                    + " and ".join(flag for flag, missing in (("--api-auth", open_api), ("--gradio-auth", open_ui))
                                   if missing) + " not given")
        return None

    @property
    def worker_mode(self) -> str:
        """"process" (generation in a supervised child process) or "thread" (in this process): `--worker`, else the
        ATELIER_WORKER environment variable, else the default the Runtime was built with."""
        mode = getattr(self.args, "worker", None) or os.environ.get("ATELIER_WORKER") or self._default_worker
        if mode not in ("process", "thread"):
            raise ValueError(f"--worker / ATELIER_WORKER must be 'process' or 'thread', not {mode!r}")
        return mode

    @property
    def extension_install_allowed(self) -> bool:
        """Installing extensions from the UI runs foreign code: only on loopback, or with the explicit flag."""
        return (not self.listening_publicly) or bool(self.args.enable_insecure_extension_access)

    # -- lazy components ------------------------------------------------------------------------------------------
    def _get(self, name: str, factory: Callable[[], Any]) -> Any:
        with self._lock:
            if name not in self._lazy:
                self._lazy[name] = factory()
            return self._lazy[name]

    @property
    def devices(self) -> DevicePolicy:
        """Device and dtypes for the flags (probes torch on first access)."""
        from app.devices import DevicePolicy

        return self._get("devices", lambda: DevicePolicy.from_args(self.args))

    @property
    def catalog(self) -> Any:
        """`app.models.catalog.Catalog(paths, no_hashing=...)`: the checkpoints, VAEs, LoRAs... on disk."""
        def make() -> Any:
            from app.models.catalog.index import Catalog

            return Catalog(self.paths, no_hashing=self.args.no_hashing)

        return self._get("catalog", make)

    @property
    def manager(self) -> Any:
        """The model manager (`app.models.manager.create_manager(runtime)`); with `--worker process` the server's view
        of the worker's (`app.worker.remote.RemoteModels`: cached state, named operations), and no weights here."""
        def make() -> Any:
            if self.worker_mode == "process":
                from app.worker.remote import RemoteModels

                return RemoteModels(lambda: self.service,
                                    on_state=lambda state: note_model_hash(lambda: self.catalog, state))
            # deferred: the model stack imports torch/diffusers; Runtime() and the server start without them
            from app.models.lora import register_lora_handlers
            from app.models.manager import create_manager

            manager = create_manager(self)  # its extra_networks is this runtime's registry
            register_lora_handlers(self.extra_networks)  # <lora:...> / <lyco:...> tags
            return manager

        return self._get("manager", make)

    @property
    def upscalers(self) -> Any:
        """This runtime's upscaler registry (`app.engine.image.upscalers.UpscalerRegistry`: built-ins and the model
        files of the ESRGAN... folders, on the devices' device); its manager, the UI and the API share it."""
        def make() -> Any:
            # deferred: the registry's module loads numpy/PIL; its device comes from probing torch, on the first model
            # load only (listing names must not import torch)
            from app.engine.image.upscalers import UpscalerRegistry

            return UpscalerRegistry(self.paths, self.settings, lambda: self.devices.device)

        return self._get("upscalers", make)

    @property
    def service(self) -> Any:
        """The job service (`app.jobs.service.JobService`) with the engine's runners (job kind → runner,
        `app.engine.modes.runners.RUNNERS`), started."""
        def make() -> Any:
            from app.jobs.service import JobService

            if self.worker_mode == "process":
                from app.worker.supervisor import ProcessExecutor

                models = self.manager
                executor = ProcessExecutor(self.args, self.settings, on_model=models.update)
                service = JobService(manager=models, settings=self.settings, paths=self.paths, runners={},
                                     store=self._job_store(), executor=executor)
            else:
                # deferred: the runners import torch/diffusers; Runtime() and the server start without them
                from app.engine.modes.runners import RUNNERS
                from app.worker.ops import MODEL_OPS

                service = JobService(manager=self.manager, settings=self.settings, paths=self.paths,
                                     runners={**RUNNERS, **MODEL_OPS}, store=self._job_store())
            if not getattr(self.args, "disable_console_progressbars", False):
                from app.jobs.console import ConsoleProgress

                service.add_listener(ConsoleProgress(self.settings))  # tqdm bars while sampling, as in A1111
            service.start()
            service.restore()  # the durable queue: jobs queued before a restart run, a running one is interrupted
            return service

        return self._get("service", make)

    @property
    def loops(self) -> Any:
        """The generate-forever loops (`app.jobs.loops.ForeverLoops`), stored in the job database next to the jobs;
        the UI's tabs, the job API and the Queue tab share them."""
        def make() -> Any:
            from app.jobs.loops import ForeverLoops, LoopStore

            # the job database is checked (a corrupt file set aside) by a JobStore first; not the service's, so that
            # listing or showing loops never creates the service (the server process stays torch-free)
            service = self._lazy.get("service")
            job_store = getattr(service, "store", None) if service is not None else self._job_store()
            loop_store = None
            if job_store is not None:
                try:
                    loop_store = LoopStore(job_store.path)
                except Exception as exc:  # noqa: BLE001 - loops then live in memory only, as the queue would
                    log.error("generate-forever loops are kept in memory only this run: %s", exc)
                if service is None:
                    job_store.close()
            return ForeverLoops(lambda: self.service, loop_store)

        return self._get("loops", make)

    def resume_loops(self) -> list[str]:
        """Resume the generate-forever loops a previous run left running (only then is the job service created:
        a server with no loop to resume stays free of the generation stack)."""
        from app.jobs.loops import has_running_loops
        from app.jobs.store import DB_NAME

        if "loops" not in self._lazy and not has_running_loops(self.paths.data_dir / DB_NAME):
            return []
        try:
            return list(self.loops.resume())
        except Exception:
            log.exception("could not resume the generate-forever loops")
            return []

    def _job_store(self) -> Any:
        """The durable job queue in the data dir (``jobs.sqlite3``), or None when it cannot be opened (logged)."""
        from app.jobs.store import JobStore, StoreError

        try:
            return JobStore(self.paths.data_dir)
        except (StoreError, OSError) as exc:
            log.error("the job queue is kept in memory only this run: %s", exc)
            return None

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Create the standard folders, connect dynamic setting choices, log how to add a model if there is none."""
        with self._lock:
            if self._started:
                return
            self._started = True
        self.paths.ensure_dirs()
        clean_interrupted_writes(self.paths, self.settings)
        from app.plugins import load_extensions

        load_extensions(self, registry=self.plugins)
        connect_model_choices(self.settings, lambda: self.catalog)
        self.settings.on_change("sd_model_checkpoint", self._load_selected_checkpoint)
        if not self.has_checkpoints():
            log.warning("%s", self.first_run_guide().text())

    def first_run_guide(self) -> FirstRunGuide:
        """Where checkpoints go, the supported families and the download command (console, page, errors)."""
        return first_run_guide(self.paths, no_download=bool(self.args.no_download_sd_model))

    def has_checkpoints(self) -> bool:
        """Whether any checkpoint file exists (`app.startup.data_folder.has_checkpoints`: no catalog, no torch)."""
        return has_checkpoints(self.paths)

    def _load_selected_checkpoint(self, key: str, value: Any) -> None:
        """Quicksettings / POST /options: load the chosen checkpoint now, in queue order (A1111 behaviour).

        Raising here makes `Settings.set` roll the value back, so a bad title is reported and not saved."""
        if not value or self.manager is None:
            return
        self.note_loaded(self.load_checkpoint(value))

    def load_checkpoint(self, title: str | None = None) -> Any:
        """Load *title* (empty: the setting, else the first checkpoint) on the worker in queue order; returns its
        state (`app.worker.remote.ModelState`: title, sha256...). Raises the load's error (ValueError: refused)."""
        return self._model_op("load_model", title)

    def reload_checkpoint(self, title: str | None = None) -> Any:
        """Re-read *title* from disk on the worker (`/sdapi/v1/reload-checkpoint`)."""
        return self._model_op("reload_model", title)

    def unload_checkpoint(self) -> None:
        """Drop every loaded model on the worker (`/sdapi/v1/unload-checkpoint`)."""
        self._model_op("unload_model", None)

    def _model_op(self, kind: str, title: str | None) -> Any:
        from app.worker.remote import ModelState

        params = {"title": title or None} if kind != "unload_model" else {}
        value = self.service.model_op(kind, **params)
        state = ModelState.from_dict(value) if isinstance(value, dict) else None
        models = self.manager
        if kind != "model_info" and hasattr(models, "update"):
            models.update(value if isinstance(value, dict) else None)
        return state

    def note_loaded(self, handle: Any) -> None:
        """Record the loaded checkpoint's canonical title and sha256 in the settings (`app.settings.model_choices.note_loaded`)."""
        note_loaded(self.settings, handle)

    def on_app_started(self, callback: Callable[[FastAPI], None]) -> None:
        """Run `callback(app)` once the FastAPI app is built (extensions add routes here; they go before the UI)."""
        self._app_started_callbacks.append(callback)

    def build_app(self) -> FastAPI:
        """Start the runtime and assemble the HTTP app (API + UI per flags); also used in-process by tests."""
        self.start()
        app = build_app(self)
        for callback in self._app_started_callbacks:
            callback(app)
        move_ui_mounts_last(app)
        self.app = app
        return app

    def url(self) -> str:
        """The address to open in a browser (`app.startup.serving.server_url`)."""
        return serving.server_url(self.args)

    def serve(self) -> int:
        """Build the app and serve it with uvicorn until stopped; returns the process exit code (`app.startup.serving`)."""
        return serving.serve(self)

    def stop(self) -> None:
        """Ask the server to stop (e.g. from `/sdapi/v1/server-stop`); `serve()` then returns."""
        if self.server is not None:
            self.server.should_exit = True

    def shutdown(self) -> None:
        """Stop the job service (interrupting the running job); waits up to 10 s for the worker. Generate-forever
        loops stay stored as running and resume at the next start."""
        loops = self._lazy.get("loops")
        if loops is not None:
            loops.suspend_all()
        service = self._lazy.get("service")
        if service is not None and hasattr(service, "shutdown"):
            service.shutdown(wait=True, timeout=10)

    def busy_threads(self) -> list[str]:
        """Names of Atelier threads still running (e.g. a model load that cannot be interrupted)."""
        return [t.name for t in threading.enumerate()
                if t.is_alive() and t.name.startswith("atelier-") and t is not threading.current_thread()]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m app` and `atelier`: parse flags, build the Runtime, serve until stopped."""
    runtime = Runtime(parse_args(argv), default_worker="process")
    code = runtime.serve()
    if any(name.startswith("atelier-worker") for name in runtime.busy_threads()):
        # A job or model load is still running on the worker: do not let interpreter shutdown wait on it.
        log.warning("exiting while a job is still running")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def set_offline_environment() -> None:
    """Keep gradio's analytics and the Hugging Face hub offline (must run before gradio/diffusers are imported)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
