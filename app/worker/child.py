"""The worker process (``python -m app.worker``): runs jobs for the server over its stdin/stdout pipe.

It builds the worker side of a Runtime from the server's flags (settings, paths, extensions with their engine hooks and
A1111 Script process/postprocess hooks, the model manager and upscalers) and runs the engine's runners and the named
model operations (``app.worker.ops``) one job at a time. The protocol is ``app.worker.protocol``. Stdout is moved to
stderr at start (an extension's ``print`` must not corrupt the pipe). The process exits when the pipe closes (the
server stopped or died: a killed server's pipe closes too), so no worker outlives its server. (PR_SET_PDEATHSIG is not
used: Linux ties it to the spawning thread, and the server spawns workers from short-lived threads.)
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import sys
import threading
import time
from typing import Any, BinaryIO

from app.errors import describe_error, is_expected
from app.jobs.job import Job, JobContext, JobResult, Runner
from app.worker.protocol import encode_image, pack_result, read_message, unpack_params, write_message

log = logging.getLogger("atelier.worker")


class Channel:
    """The pipe to the server: one writer at a time."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def send(self, header: dict[str, Any], frames: list[bytes] | None = None) -> None:
        with self._lock:
            write_message(self._out, header, frames or [])


class WorkerHost:
    """What a job context uses of its host in the worker (the ``JobHost`` protocol), and the runtime's ``service``
    there: extensions that call ``interrupt`` or ``runner_for`` reach the job running in this process."""

    def __init__(self, manager: Any, settings: Any, paths: Any, runners: dict[str, Runner]) -> None:
        self.manager = manager
        self.settings = settings
        self.paths = paths
        self._runners = runners
        self.current: Job | None = None

    def interrupt(self, job_id: str | None = None) -> bool:
        job = self.current
        if job is None or (job_id is not None and job.id != job_id):
            return False
        job.interrupt_flag = True
        job._update(interrupted=True)
        return True

    def skip(self) -> bool:
        job = self.current
        if job is None:
            return False
        job.skip_flag = True
        return True

    def runner_for(self, kind: str) -> Runner:
        runner = self._runners.get(kind)
        if runner is None:
            raise ValueError(f"no runner for job kind {kind!r} in the worker (known: {', '.join(sorted(self._runners))})")
        return runner


class WorkerJobContext(JobContext):
    """A job context whose progress and previews go to the server as messages."""

    def __init__(self, job: Job, host: WorkerHost, channel: Channel) -> None:
        self._channel = channel
        super().__init__(job, host, self._forward)

    def _forward(self, event: str, job: Job) -> None:
        p = job.progress
        if event == "progress":
            self._channel.send({"type": "progress", "id": job.id, "job_no": p.job_no, "job_count": p.job_count,
                                "sampling_step": p.sampling_step, "sampling_steps": p.sampling_steps,
                                "fraction": p.fraction, "eta_seconds": p.eta_seconds, "textinfo": p.textinfo})
        elif event == "preview" and p.preview is not None:
            try:
                frame = encode_image(p.preview, "JPEG")
            except Exception:  # noqa: BLE001 - a preview is optional
                log.debug("preview not sent", exc_info=True)
                return
            self._channel.send({"type": "preview", "id": job.id}, [frame])

    def set_textinfo(self, text: str) -> None:
        super().set_textinfo(text)
        self._forward("progress", self.job)

    def clear_skip(self) -> None:
        super().clear_skip()
        self._channel.send({"type": "skip_cleared", "id": self.job.id})


def _apply_settings(settings: Any, values: dict[str, Any]) -> None:
    """The server's effective settings for the next job (only the changed keys travel)."""
    for key, value in values.items():
        try:
            settings.set_quietly(key, value)
        except Exception:  # noqa: BLE001 - an unknown or refused key must not stop the job
            keep = getattr(settings, "keep_unknown", None)
            if keep is not None:
                try:
                    keep({key: value})
                except Exception:  # noqa: BLE001
                    log.debug("setting %s not applied in the worker", key, exc_info=True)


class Worker:
    """The worker's state: runtime, host, the current job, and the pipe."""

    def __init__(self, channel: Channel, init: dict[str, Any]) -> None:
        from app.runtime import Runtime

        self.channel = channel
        args = argparse.Namespace(**init["args"])
        args.worker = "thread"  # inside the worker: nothing is started in another process
        runtime = Runtime(args)
        _apply_settings(runtime.settings, init.get("settings") or {})
        self.runtime = runtime
        from app.plugins import load_extensions

        load_extensions(runtime, registry=runtime.plugins)
        from app.engine.modes.runners import RUNNERS
        from app.worker.ops import MODEL_OPS, model_state

        self._model_state = model_state
        manager = runtime.manager
        self.host = WorkerHost(manager, runtime.settings, runtime.paths, {**RUNNERS, **MODEL_OPS})
        runtime._lazy["service"] = self.host  # compat's `shared.state` and extensions reach this process's job

    def model(self) -> dict[str, Any] | None:
        try:
            return self._model_state(self.host.manager)
        except Exception:  # noqa: BLE001 - a state report never fails a job
            return None

    def control(self, header: dict[str, Any]) -> None:
        """Interrupt / skip from the server (reader thread)."""
        job = self.host.current
        if job is None or header.get("id") not in (None, job.id):
            return
        if header["type"] == "interrupt":
            self.host.interrupt(job.id)
        elif header["type"] == "skip":
            job.skip_flag = True
            job._update(skipped=True)

    def run(self, header: dict[str, Any], frames: list[bytes]) -> None:
        job_id = str(header["id"])
        try:
            _apply_settings(self.host.settings, header.get("settings") or {})
            params = unpack_params(header.get("params") or {}, frames)
        except Exception as exc:  # noqa: BLE001 - bad params fail this job only
            self._failed(job_id, exc)
            return
        job = Job(str(header["kind"]), params, None, job_id)
        job.started = float(header.get("started") or time.time())
        job.origin = str(header.get("origin") or "")
        self.host.current = job
        ctx = WorkerJobContext(job, self.host, self.channel)
        try:
            result = self.host.runner_for(job.kind)(ctx)
            if not isinstance(result, JobResult):
                raise TypeError(f"runner for {job.kind!r} returned {type(result).__name__}, not JobResult")
            for warning in ctx.warnings:
                if warning not in result.warnings:
                    result.warnings.append(warning)
            result.interrupted = bool(job.interrupt_flag or result.interrupted)
            out: list[bytes] = []
            packed = pack_result(result, out)
            self.channel.send({"type": "done", "id": job_id, "result": packed, "model": self.model()}, out)
        except Exception as exc:  # noqa: BLE001 - the worker survives anything a job raises
            self._failed(job_id, exc)
        finally:
            self.host.current = None

    def _failed(self, job_id: str, exc: BaseException) -> None:
        if is_expected(exc):
            log.error("job %s failed: %s", job_id, exc)
        else:
            log.exception("job %s failed", job_id)
        try:
            from app.devices import free_memory

            free_memory()
        except Exception:  # noqa: BLE001
            log.debug("free_memory failed", exc_info=True)
        self.channel.send({"type": "failed", "id": job_id, "error": describe_error(exc), "expected": is_expected(exc),
                           "types": [c.__name__ for c in type(exc).__mro__], "model": self.model()})


def main() -> int:
    """Entry point of ``python -m app.worker`` (started by ``app.worker.supervisor``)."""
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # print() and native writes to stdout now land in the log, not in the pipe
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s worker: %(name)s: %(message)s", datefmt="%H:%M:%S")
    channel = Channel(proto_out)
    try:
        init, _ = read_message(proto_in)
    except (EOFError, ValueError):
        return 0
    if init.get("type") != "init":
        return 2
    try:
        worker = Worker(channel, init)
    except Exception as exc:  # noqa: BLE001 - tell the server why, then exit
        log.exception("the worker could not start")
        channel.send({"type": "fatal", "error": describe_error(exc)})
        return 3
    channel.send({"type": "ready", "pid": os.getpid(), "model": worker.model()})
    jobs: queue.Queue[tuple[dict[str, Any], list[bytes]] | None] = queue.Queue()

    def reader() -> None:
        while True:
            try:
                header, frames = read_message(proto_in)
            except (EOFError, ValueError, OSError):
                os._exit(0)  # the server is gone: no orphan worker
            if header.get("type") in ("interrupt", "skip"):
                worker.control(header)
            elif header.get("type") == "shutdown":
                jobs.put(None)
            elif header.get("type") == "job":
                jobs.put((header, frames))

    threading.Thread(target=reader, name="atelier-worker-pipe", daemon=True).start()
    while True:
        item = jobs.get()
        if item is None:
            return 0
        worker.run(*item)
