"""``ProcessExecutor``: runs the jobs of the server's ``JobService`` in a supervised worker process.

The service keeps the queue, the durable store, listeners and the interrupt/skip API; for the kinds in
:data:`WORKER_KINDS` it calls ``executor.run(ctx)`` on its worker thread, which sends the job to the child and turns
the child's events into the same ``Job`` updates and ``JobResult`` (PIL images) an in-process runner produces.

Supervision:
- The child is started at once (``start``) and again whenever it is gone; each start sends the server's flags and
  settings (``init``), and each job the settings that changed since the last one.
- If the child dies while running a job (kill -9, segfault, the OOM killer, a CUDA error that kills it), the job fails
  with the cause ("the worker process was killed (signal 9, SIGKILL) while running job ...") and a new child is
  started in the background, which reloads the last model; the queue goes on.
- Interrupt and Skip are forwarded; a job still running ``worker_interrupt_grace_s`` seconds after an interrupt gets its
  worker killed and restarted, and ends interrupted with that reason.
- Restart storms: restarts back off (0, 1, 2, 4... s, at most 15 s); after ``max_crashes`` crashes in a row the
  executor refuses jobs with a clear error for ``cooldown_s`` seconds instead of looping.
This module imports no torch, diffusers or engine code.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from app.errors import UserError
from app.jobs.job import JobResult
from app.settings import setting_value
from app.worker.protocol import decode_image, pack_params, read_message, unpack_result, write_message

log = logging.getLogger("atelier.supervisor")

#: The job kinds the worker process runs (generation, the Checkpoint Merger's tensor work and the named model
#: operations).
WORKER_KINDS = frozenset({"txt2img", "img2img", "extras", "merge", "load_model", "reload_model", "unload_model",
                          "model_info", "list_embeddings"})
_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the `app` package
_PROGRESS_FIELDS = ("job_no", "job_count", "sampling_step", "sampling_steps", "fraction", "eta_seconds", "textinfo")


class WorkerCrashed(UserError, RuntimeError):
    """The worker process died (or could not start) while a job needed it; the message says how."""


def exit_cause(returncode: int | None) -> str:
    """How a process ended, as a verb phrase ("was killed (signal 9, SIGKILL)", "exited with code 3")."""
    if returncode is None:
        return "stopped answering"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"was killed (signal {-returncode}, {name})"
    return f"exited with code {returncode}"


def _builtin_error(types: list[str], message: str, expected: bool) -> Exception:
    """An exception of the worker's error's closest builtin type (ValueError → 422 in the API) carrying its text."""
    import builtins

    base: type[Exception] = RuntimeError
    for name in types:
        candidate = getattr(builtins, name, None)
        if isinstance(candidate, type) and issubclass(candidate, Exception) and candidate is not Exception:
            base = candidate
            break
    # named as the worker's exception (the API's ``error`` field shows the class name, e.g. InsufficientMemoryError)
    name = types[0] if types and types[0].isidentifier() else base.__name__
    bases: tuple[type, ...] = (UserError, base) if expected else (base,)
    error = type(name, bases, {})(message) if (expected or name != base.__name__) else base(message)
    error.described = message  # type: ignore[attr-defined]  # the worker's text, shown as is
    return error


class _Child:
    """One worker process and the thread reading its messages."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=str(_ROOT), env=env)
        self.inbox: queue.Queue[tuple[dict[str, Any], list[bytes]]] = queue.Queue()
        self._lock = threading.Lock()
        self.ready = threading.Event()
        self.failed_start: str | None = None
        self.model: dict[str, Any] | None = None
        threading.Thread(target=self._read, name=f"atelier-worker-reader-{self.proc.pid}", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        while True:
            try:
                header, frames = read_message(stream)
            except (EOFError, ValueError, OSError):
                self.inbox.put(({"type": "eof"}, []))
                self.ready.set()
                return
            kind = header.get("type")
            if kind == "ready":
                self.model = header.get("model")
                self.ready.set()
            elif kind == "fatal":
                self.failed_start = str(header.get("error") or "the worker could not start")
                self.ready.set()
            else:
                self.inbox.put((header, frames))

    def send(self, header: dict[str, Any], frames: list[bytes] | None = None) -> bool:
        """False when the pipe is closed (the child is gone)."""
        stdin = self.proc.stdin
        if stdin is None:
            return False
        try:
            with self._lock:
                write_message(stdin, header, frames or [])
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            log.error("worker process %s did not exit after SIGKILL", self.pid)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask it to exit (closing the pipe is enough), then kill it if it does not."""
        self.send({"type": "shutdown"})
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


class ProcessExecutor:
    """Runs worker-kind jobs in a child process (see module doc)."""

    kinds = WORKER_KINDS

    def __init__(self, args: Any, settings: Any, *, max_crashes: int = 5, cooldown_s: float = 60.0,
                 command: list[str] | None = None, on_model: Any = None, start_timeout: float = 300.0) -> None:
        self.args = args
        self.settings = settings
        self.max_crashes = max_crashes
        self.cooldown_s = cooldown_s
        self.command = command or [sys.executable, "-m", "app.worker"]
        self.start_timeout = start_timeout
        #: called with the worker's model state (dict or None) whenever it reports one
        self.on_model = on_model
        self.model: dict[str, Any] | None = None
        self.crashes = 0  # in a row
        self.last_crash: str | None = None
        self._last_crash_time = 0.0
        self._child: _Child | None = None
        self._child_lock = threading.Lock()  # guards the pointer to the child
        self._use = threading.Lock()  # one conversation at a time: a job, or a restart with its model reload
        self._sent_settings: dict[str, Any] = {}
        self._stopping = False
        #: set after a crash or a hang kill: the next worker started counts as a restart and reloads this model
        self._reload: dict[str, Any] | None = None
        self.restarts = 0

    # -- lifecycle ------------------------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The worker's process id (None while none runs)."""
        child = self._child
        return child.pid if child is not None and child.alive() else None

    def start(self) -> None:
        """Start the worker now (it imports torch and loads extensions while the server serves)."""
        with self._child_lock:
            if self._child is None or not self._child.alive():
                self._child = self._spawn()

    def stop(self) -> None:
        self._stopping = True
        with self._child_lock:
            child, self._child = self._child, None
        if child is not None:
            child.stop()

    def _spawn(self) -> _Child:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
        child = _Child(self.command, env)
        self._sent_settings = dict(self.settings.data) if self.settings is not None else {}
        child.send({"type": "init", "args": dict(vars(self.args)), "settings": self._sent_settings})
        log.info("worker process %s started", child.pid)
        return child

    def _ready_child(self) -> _Child:
        """The running, ready worker (started if needed; waits for it); raises WorkerCrashed when it cannot be had."""
        if self._stopping:
            raise WorkerCrashed("the server is shutting down")
        if self.crashes >= self.max_crashes:
            left = self.cooldown_s - (time.time() - self._last_crash_time)
            if left > 0:
                raise WorkerCrashed(
                    f"the worker process crashed {self.crashes} times in a row (last: {self.last_crash}); jobs are "
                    f"refused for {left:.0f} s more. Check the server log, the last extension installed and the "
                    "free memory.")
        fresh = False
        with self._child_lock:
            if self._child is None or not self._child.alive():
                if self._child is not None:  # it died between jobs (e.g. the OOM killer): say so, reload its model
                    log.error("the worker process %s while idle; restarting it",
                              exit_cause(self._child.proc.poll()))
                    if self._reload is None:
                        self._reload = dict(self.model or {})
                if self.crashes:
                    time.sleep(min(15.0, 2.0 ** (self.crashes - 2)) if self.crashes > 1 else 0.0)
                self._child = self._spawn()
                fresh = True
            child = self._child
        if not child.ready.wait(self.start_timeout) or child.failed_start or not child.alive():
            reason = child.failed_start or f"the worker process {exit_cause(child.proc.poll())} while starting"
            child.kill()
            self._note_crash(reason)
            raise WorkerCrashed(reason)
        if fresh:
            self._set_model(child.model)
            reload, self._reload = self._reload, None
            if reload is not None:
                self.restarts += 1
                if reload.get("title"):
                    log.info("worker restarted (pid %s); reloading %s", child.pid, reload["title"])
                    self._exchange(child, "load_model", {"title": reload["title"]}, f"reload-{time.time():.0f}")
        return child

    def _note_crash(self, cause: str) -> None:
        if self._reload is None:
            self._reload = dict(self.model or {})
        self.crashes += 1
        self.last_crash = cause
        self._last_crash_time = time.time()
        with self._child_lock:
            self._child = None

    def _restart(self) -> None:
        """Start a new worker in the background, which reloads the last model (unless a job already started one)."""
        def work() -> None:
            with self._use:
                try:
                    self._ready_child()
                except WorkerCrashed as exc:
                    log.error("the worker process could not be restarted: %s", exc)

        if not self._stopping:
            threading.Thread(target=work, name="atelier-worker-restart", daemon=True).start()

    def _exchange(self, child: _Child, kind: str, params: dict[str, Any], job_id: str) -> None:
        """Run an internal job (the model reload after a restart) outside the queue; the next job waits for it."""
        frames: list[bytes] = []
        child.send({"type": "job", "id": job_id, "kind": kind, "params": pack_params(params, frames)}, frames)
        while True:
            try:
                header, _ = child.inbox.get(timeout=1.0)
            except queue.Empty:
                if not child.alive():
                    return
                continue
            if header.get("type") in ("done", "failed", "eof"):
                if header.get("type") == "failed":
                    log.warning("could not reload the model after the restart: %s", header.get("error"))
                if header.get("type") == "eof":
                    child.inbox.put((header, []))  # the next job sees the crash
                else:
                    self._set_model(header.get("model"))
                return

    def _set_model(self, state: Any) -> None:
        if state is None and self.model is None:
            return
        self.model = state if isinstance(state, dict) else None
        if self.on_model is not None:
            try:
                self.on_model(self.model)
            except Exception:  # noqa: BLE001 - a cache listener never fails a job
                log.exception("model state listener failed")

    # -- running a job ----------------------------------------------------------------------------------------------
    def _settings_diff(self) -> dict[str, Any]:
        if self.settings is None:
            return {}
        now = self.settings.data
        diff = {k: v for k, v in now.items() if k not in self._sent_settings or self._sent_settings[k] != v}
        self._sent_settings = dict(now)
        return diff

    def run(self, ctx: Any) -> JobResult:
        """Run ``ctx.job`` in the worker; returns its result or raises (the job's error)."""
        with self._use:
            return self._run(ctx)

    def _run(self, ctx: Any) -> JobResult:
        job = ctx.job
        child = self._ready_child()
        frames: list[bytes] = []
        header = {"type": "job", "id": job.id, "kind": job.kind, "origin": job.origin, "started": job.started,
                  "params": pack_params(job.params, frames), "settings": self._settings_diff()}
        if not child.send(header, frames):
            return self._crashed(child, job)
        grace = float(setting_value(self.settings, "worker_interrupt_grace_s", 15.0) or 15.0)
        interrupt_sent: float | None = None
        skip_sent = False
        while True:
            # checked on every message too: while a job streams progress the inbox is never empty for long, and a
            # Skip / Interrupt must not wait for a quiet moment
            if job.interrupt_flag and interrupt_sent is None:
                child.send({"type": "interrupt", "id": job.id})
                interrupt_sent = time.time()
            if job.skip_flag and not skip_sent:
                skip_sent = child.send({"type": "skip", "id": job.id})
            if interrupt_sent is not None and time.time() - interrupt_sent > grace:
                return self._hung(child, job, grace)
            try:
                msg, blobs = child.inbox.get(timeout=0.1)
            except queue.Empty:
                if not child.alive() and child.inbox.empty():
                    child.inbox.put(({"type": "eof"}, []))
                continue
            kind = msg.get("type")
            if kind == "eof":
                return self._crashed(child, job)
            if msg.get("id") != job.id:
                continue  # a late message of an earlier (e.g. timed-out reload) job
            if kind == "progress":
                job._update(**{k: msg[k] for k in _PROGRESS_FIELDS if k in msg})
                ctx._emit_progress()
            elif kind == "preview" and blobs:
                ctx.set_preview(decode_image(blobs[0]))
            elif kind == "skip_cleared":
                ctx.clear_skip()
                skip_sent = False
            elif kind == "done":
                self.crashes = 0
                self._set_model(msg.get("model"))
                return unpack_result(msg.get("result") or {}, blobs)
            elif kind == "failed":
                self.crashes = 0
                self._set_model(msg.get("model"))
                job.error = str(msg.get("error") or "job failed")
                raise _builtin_error(list(msg.get("types") or []), job.error, bool(msg.get("expected")))

    def _crashed(self, child: _Child, job: Any) -> JobResult:
        try:
            code = child.proc.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()
            code = child.proc.returncode
        cause = f"the worker process {exit_cause(code)} while running job {job.id}"
        log.error("%s; restarting it", cause)
        self._note_crash(cause)
        self._restart()
        raise WorkerCrashed(cause)

    def _hung(self, child: _Child, job: Any, grace: float) -> JobResult:
        reason = (f"job {job.id} ignored Interrupt for {grace:.0f} s (worker_interrupt_grace_s); the worker process "
                  "was restarted")
        log.warning("%s", reason)
        child.kill()
        with self._child_lock:
            self._child = None
        if self._reload is None:
            self._reload = dict(self.model or {})
        self._restart()
        job.error = reason
        return JobResult(interrupted=True, warnings=[reason])
