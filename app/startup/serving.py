"""Serving a `Runtime` over HTTP: uvicorn until stopped, and what happens around it (logging set-up, the loud
warnings when listening on the network without a password, the "running at" line and the browser, then the warm-up:
heavy imports, catalog, job service and the selected checkpoint, as A1111 loads its model at start).

Split out of `app.runtime`, which composes the parts of a running instance; this module is the process's serving
life cycle around it. `runtime` is an `app.runtime.Runtime` (duck-typed: this module never imports it back).
"""

from __future__ import annotations

import logging
import threading
import time
import webbrowser
from typing import Any

from app.cli import server_host

log = logging.getLogger("atelier")


def server_url(args: Any) -> str:
    """The address to open in a browser for the parsed flags (loopback shown for a wildcard host)."""
    host = server_host(args)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    scheme = "https" if args.tls_keyfile and args.tls_certfile else "http"
    return f"{scheme}://{shown}:{args.port}/" + (args.subpath or "").strip("/")


def serve(runtime: Any) -> int:
    """Build the runtime's app and serve it with uvicorn until stopped; returns the process exit code."""
    import uvicorn

    args = runtime.args
    configure_logging(args.log_level)
    warn_about_exposure(runtime)
    app = runtime.build_app()
    config = uvicorn.Config(
        app, host=server_host(args), port=args.port, log_level="warning",
        timeout_keep_alive=args.timeout_keep_alive,
        ssl_keyfile=args.tls_keyfile, ssl_certfile=args.tls_certfile,
    )
    runtime.server = uvicorn.Server(config)
    if not args.test_server:
        runtime.imports_ready.clear()  # API/UI calls wait for the warm-up imports (see ImportGateMiddleware)
    serving = threading.Event()
    serving.set()
    threading.Thread(target=_after_start, args=(runtime, serving), name="atelier-started", daemon=True).start()
    try:
        runtime.server.run()
    except SystemExit as exc:  # uvicorn exits like this when it cannot bind or start
        if not runtime.server.started:
            log.error("could not serve on %s:%s (is the port in use? try --port N)", server_host(args), args.port)
            return int(exc.code) if isinstance(exc.code, int) and exc.code else 1
        raise
    finally:
        serving.clear()
        runtime.shutdown()
    return 0


def _after_start(runtime: Any, serving: threading.Event) -> None:
    """Once uvicorn answers: log where, open the browser if asked, warm up, let API/UI calls through, resume loops."""
    server = runtime.server
    while server is not None and not server.started:
        if server.should_exit or not serving.is_set():
            return
        time.sleep(0.05)
    args = runtime.args
    url = server_url(args)
    log.info("Atelier is running at %s (started in %.1f s)", url, time.time() - runtime.started_at)
    if args.api:
        log.info("HTTP API: %ssdapi/v1 (docs at %sdocs)", url.rstrip("/") + "/", url.rstrip("/") + "/")
    if should_open_browser(runtime):
        webbrowser.open(url)
    if not args.test_server:
        warm_up(runtime)
    runtime.imports_ready.set()
    runtime.resume_loops()


def should_open_browser(runtime: Any) -> bool:
    """`--autolaunch`, or the `auto_launch_browser` setting (Local: only when not on the network; Remote)."""
    if runtime.args.nowebui:
        return False
    mode = runtime.settings.get("auto_launch_browser", "Disable")
    return bool(runtime.args.autolaunch) or mode == "Remote" or (mode == "Local" and not runtime.listening_publicly)


def warm_up(runtime: Any) -> None:
    """In the background: create the catalog and the job service, then load the selected checkpoint (as A1111 does
    at start) so the first generation starts at once. Failures are logged, never fatal."""
    try:
        if runtime.worker_mode == "thread":
            import_heavy_modules()  # the worker process imports its own; the server needs none of them
        _ = runtime.catalog
        service, manager = runtime.service, runtime.manager
    except Exception:
        log.exception("warm-up failed; the server keeps running (generation may not work)")
        return
    finally:
        runtime.imports_ready.set()
    if manager is None or service is None or not runtime.has_checkpoints():
        return
    started = time.time()
    try:
        handle = runtime.load_checkpoint(_ckpt_flag_title(runtime))
        log.info("model %s loaded in %.1f s", getattr(handle, "title", "?"), time.time() - started)
        runtime.note_loaded(handle)  # in memory: --ckpt (or the first checkpoint) is the selection for this run
    except Exception as exc:  # e.g. a broken or missing file: say so, keep serving
        log.warning("could not load the checkpoint at start: %s", exc)


def _ckpt_flag_title(runtime: Any) -> str | None:
    """The catalog title of the `--ckpt FILE` checkpoint (None without the flag)."""
    ckpt_file = runtime.paths.ckpt_file
    if ckpt_file is None:
        return None
    info = runtime.catalog.checkpoint_for_file(ckpt_file)
    if info is None:
        raise FileNotFoundError(f"--ckpt {ckpt_file}: no such checkpoint file")
    return str(info.title)


def warn_about_exposure(runtime: Any) -> None:
    """Loud warnings when the server listens on the network and the web UI or the API has no password."""
    args = runtime.args
    if args.share:
        log.warning("--share is not supported: Atelier does not open public tunnels (ignored)")
    if not runtime.listening_publicly:
        return
    if not args.nowebui and not runtime.gradio_credentials:
        log.warning("!!! The web UI listens on %s WITHOUT a password: anyone on the network can use it. "
                    "Add --gradio-auth user:password.", server_host(args))
    if args.api and not runtime.api_credentials:
        log.warning("!!! The HTTP API listens on %s WITHOUT a password. Add --api-auth user:password.",
                    server_host(args))
    if not runtime.extension_install_allowed:
        log.info("installing extensions from the UI is disabled while listening on the network "
                 "(--enable-insecure-extension-access allows it)")


def import_heavy_modules() -> None:
    """Import the generation stack one module after another (the warm-up thread does this before API/UI calls are
    let through: two threads importing diffusers for the first time at once can fail)."""
    # deferred on purpose: these import torch/diffusers/transformers, which the server must not wait for at start
    import app.engine.modes.runners
    import app.engine.sampling.schedulers
    import app.jobs.service
    import app.models.load.loader
    import app.models.manager
    import app.prompts.encode  # noqa: F401


def configure_logging(level: str) -> None:
    """Log to stderr at *level* (`--log-level`) unless the host process already configured logging."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=getattr(logging, level, logging.INFO),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
