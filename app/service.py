"""JobService: one worker thread fed by one FIFO queue.

UI, API, generate-forever and extensions all submit jobs here. A job is params in, events and a
``JobResult`` out (serialisable, so the worker can later move into a subprocess). The worker
survives any exception a job raises (including out-of-memory); the job is marked failed with the
message. Runners are looked up by job kind in a registry (``register_runner``); ``txt2img`` is
built in, the img2img/extras engineers register theirs.
"""

from __future__ import annotations

import collections
import gc
import itertools
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

log = logging.getLogger(__name__)


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


class JobFailed(RuntimeError):
    """Raised by ``Job.wait`` when the job failed; the message is the job's error."""


class JobCancelled(RuntimeError):
    """Raised by ``Job.wait`` when the job was cancelled before it ran."""


@dataclass
class JobResult:
    images: list[Any] = field(default_factory=list)  # PIL images
    infotexts: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    subseeds: list[int] = field(default_factory=list)
    all_prompts: list[str] = field(default_factory=list)
    all_negative_prompts: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # the API's ``info`` JSON (as a dict)
    warnings: list[str] = field(default_factory=list)
    saved_paths: list[str] = field(default_factory=list)
    interrupted: bool = False
    value: Any = None  # return value of a "custom" job


@dataclass(frozen=True)
class Progress:
    """A snapshot of a job's progress (A1111 ``shared.state`` fields)."""

    job_no: int = 0
    job_count: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0
    fraction: float = 0.0
    eta_seconds: float | None = None
    preview: Any = None  # PIL image or None
    preview_id: int = 0
    textinfo: str = ""
    interrupted: bool = False
    skipped: bool = False


#: A runner executes one job on the worker thread: ``runner(ctx) -> JobResult``.
Runner = Callable[["JobContext"], JobResult]
#: ``listener(event, job)``; events: queued, started, progress, preview, done, failed, cancelled, interrupted.
Listener = Callable[[str, "Job"], None]

_RUNNERS: dict[str, Runner] = {}


def register_runner(kind: str, runner: Runner) -> None:
    """Register the runner for a job kind (module-wide; every JobService sees it)."""
    if not kind or not callable(runner):
        raise ValueError("register_runner needs a kind name and a callable")
    _RUNNERS[kind] = runner


def _builtin_runner(kind: str) -> Runner | None:
    if kind == "txt2img":
        from app.engine.txt2img import run_txt2img_job

        return run_txt2img_job
    return None


class Job:
    """One unit of work in the queue."""

    def __init__(self, kind: str, params: Any = None, fn: Callable | None = None, job_id: str | None = None):
        self.id = job_id or f"task({uuid.uuid4().hex[:15]})"
        self.kind = kind
        self.params = params
        self.fn = fn
        self.state = JobState.QUEUED
        self.error: str | None = None
        self.exception: BaseException | None = None
        self.result: JobResult | None = None
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self._progress = Progress()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self.interrupt_flag = False
        self.skip_flag = False

    # -- observation -------------------------------------------------------------------------
    @property
    def progress(self) -> Progress:
        return self._progress

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def add_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def wait(self, timeout: float | None = None) -> JobResult:
        """Block until finished; return the result (partial when interrupted).

        Raises ``JobFailed`` (with the error message) or ``JobCancelled``; ``TimeoutError`` on timeout.
        """
        if not self._done.wait(timeout):
            raise TimeoutError(f"job {self.id} not finished after {timeout} s")
        if self.state == JobState.FAILED:
            raise JobFailed(self.error or "job failed") from self.exception
        if self.state == JobState.CANCELLED:
            raise JobCancelled(f"job {self.id} was cancelled")
        return self.result if self.result is not None else JobResult()

    def snapshot(self) -> dict[str, Any]:
        """JSON-friendly state (no images)."""
        p = self._progress
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state.value,
            "error": self.error,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "progress": {
                "job_no": p.job_no,
                "job_count": p.job_count,
                "sampling_step": p.sampling_step,
                "sampling_steps": p.sampling_steps,
                "fraction": p.fraction,
                "eta_seconds": p.eta_seconds,
                "textinfo": p.textinfo,
                "preview_id": p.preview_id,
            },
        }

    # -- internal ----------------------------------------------------------------------------
    def _emit(self, event: str) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event, self)
            except Exception:  # a broken listener must not break the job
                log.exception("job listener failed on %s", event)

    def _update(self, **changes: Any) -> None:
        self._progress = replace(self._progress, **changes)

    def __repr__(self) -> str:
        return f"Job({self.id}, {self.kind}, {self.state.value})"


class JobContext:
    """What a runner gets: the job's params, the shared objects, and progress/stop controls."""

    def __init__(self, job: Job, service: JobService):
        self.job = job
        self.service = service
        self.params = job.params
        self.manager = service.manager
        self.settings = service.settings
        self.paths = service.paths
        self.warnings: list[str] = []
        self._steps_seen = 0

    # stop controls ---------------------------------------------------------------------------
    @property
    def interrupted(self) -> bool:
        return self.job.interrupt_flag

    @property
    def skipped(self) -> bool:
        return self.job.skip_flag

    def should_stop(self) -> bool:
        """True when the current sampling should end now (interrupt or skip)."""
        return self.job.interrupt_flag or self.job.skip_flag

    def clear_skip(self) -> None:
        """Called by a runner after it handled a skip (the next batch runs normally)."""
        self.job.skip_flag = False
        self.job._update(skipped=False)

    # progress --------------------------------------------------------------------------------
    def begin(self, job_count: int, sampling_steps: int = 0, textinfo: str = "") -> None:
        self.job._update(job_count=job_count, job_no=0, sampling_steps=sampling_steps, textinfo=textinfo)
        self._emit_progress()

    def set_job_no(self, job_no: int) -> None:
        self.job._update(job_no=job_no, sampling_step=0)
        self._emit_progress()

    def set_textinfo(self, text: str) -> None:
        self.job._update(textinfo=text)

    def step(self, step: int, steps: int) -> bool:
        """Record sampling progress; return True when a live preview is due at this step."""
        p = self.job.progress
        count = max(p.job_count, 1)
        fraction = min(1.0, (p.job_no + (step / steps if steps else 0.0)) / count)
        eta = None
        if self.job.started is not None and fraction > 0:
            elapsed = time.time() - self.job.started
            eta = max(0.0, elapsed / fraction - elapsed)
        self.job._update(sampling_step=step, sampling_steps=steps, fraction=fraction, eta_seconds=eta)
        self._emit_progress()
        return self._preview_due(step, steps)

    def _preview_due(self, step: int, steps: int) -> bool:
        settings = self.settings
        enabled = _setting(settings, "live_previews_enable", True)
        every = int(_setting(settings, "show_progress_every_n_steps", 10) or 0)
        if not enabled or every == 0:
            return False
        if every < 0:
            return step == steps
        return step % every == 0 or step == steps

    def set_preview(self, image: Any) -> None:
        p = self.job.progress
        self.job._update(preview=image, preview_id=p.preview_id + 1)
        self.job._emit("preview")
        self.service._emit("preview", self.job)

    def warn(self, message: str) -> None:
        log.warning("%s: %s", self.job.id, message)
        self.warnings.append(message)

    def _emit_progress(self) -> None:
        self.job._emit("progress")
        self.service._emit("progress", self.job)


def _setting(settings: Any, key: str, default: Any) -> Any:
    if settings is None:
        return default
    try:
        value = settings.get(key)
    except Exception:
        return default
    return default if value is None else value


class JobService:
    """One worker thread, one FIFO queue (see module doc)."""

    def __init__(self, manager: Any = None, settings: Any = None, paths: Any = None, history: int = 64):
        self.manager = manager
        self.settings = settings
        self.paths = paths
        self._runners: dict[str, Runner] = {}
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._current: Job | None = None
        self._finished: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._history = history
        self._listeners: list[Listener] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._counter = itertools.count(1)

    # -- registry ----------------------------------------------------------------------------
    def register_runner(self, kind: str, runner: Runner) -> None:
        """Register a runner for this service only (overrides the module-wide registry)."""
        if not kind or not callable(runner):
            raise ValueError("register_runner needs a kind name and a callable")
        self._runners[kind] = runner

    def runner_for(self, kind: str) -> Runner:
        runner = self._runners.get(kind) or _RUNNERS.get(kind) or _builtin_runner(kind)
        if runner is None:
            known = sorted(set(self._runners) | set(_RUNNERS) | {"txt2img", "custom"})
            raise ValueError(f"no runner for job kind {kind!r} (known: {', '.join(known)})")
        return runner

    # -- submission --------------------------------------------------------------------------
    def submit(self, params: Any = None, kind: str = "txt2img", fn: Callable | None = None, job_id: str | None = None) -> Job:
        """Queue a job and return it at once. ``kind="custom"`` runs ``fn(ctx)`` on the worker."""
        if kind == "custom":
            if fn is None:
                raise ValueError("a custom job needs fn")
        else:
            self.runner_for(kind)  # unknown kinds fail at submit time, not in the worker
        job = Job(kind, params, fn, job_id)
        with self._cond:
            if self._stopping:
                raise RuntimeError("the job service is shut down")
            self._queue.append(job)
            self._ensure_worker()
            self._cond.notify_all()
        job._emit("queued")
        self._emit("queued", job)
        return job

    def run_exclusive(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        """Run ``fn()`` on the worker, in queue order, and return its value (re-raising its error)."""
        if threading.current_thread() is self._thread:
            return fn()  # already on the worker: running inline keeps the order and avoids a deadlock
        job = self.submit(kind="custom", fn=lambda ctx: fn())
        try:
            return job.wait(timeout).value
        except JobFailed as exc:
            raise exc.__cause__ or exc from None

    def cancel(self, job_id: str) -> bool:
        """Remove a queued job; returns False when it is not queued (running or unknown)."""
        with self._cond:
            for job in self._queue:
                if job.id == job_id:
                    self._queue.remove(job)
                    break
            else:
                return False
        self._finish(job, JobState.CANCELLED)
        return True

    def interrupt(self, job_id: str | None = None) -> bool:
        """Stop the running job now (it returns what exists) or cancel a queued one by id."""
        with self._cond:
            current = self._current
        if job_id is None or (current is not None and current.id == job_id):
            if current is None:
                return False
            current.interrupt_flag = True
            current._update(interrupted=True)
            return True
        return self.cancel(job_id)

    def skip(self) -> bool:
        """End the current batch of the running job; it goes on with the next batch."""
        current = self._current
        if current is None:
            return False
        current.skip_flag = True
        current._update(skipped=True)
        return True

    # -- observation -------------------------------------------------------------------------
    @property
    def queue_size(self) -> int:
        """Jobs waiting (not counting the running one)."""
        with self._cond:
            return len(self._queue)

    @property
    def current(self) -> Job | None:
        return self._current

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            if self._current is not None and self._current.id == job_id:
                return self._current
            for job in self._queue:
                if job.id == job_id:
                    return job
            return self._finished.get(job_id)

    def position(self, job_id: str) -> int | None:
        """0 = running, n = n-th in the queue, None = finished/unknown."""
        with self._cond:
            if self._current is not None and self._current.id == job_id:
                return 0
            for i, job in enumerate(self._queue, start=1):
                if job.id == job_id:
                    return i
        return None

    def jobs_snapshot(self) -> list[dict[str, Any]]:
        """Running, queued and recently finished jobs, as JSON-friendly dicts."""
        with self._cond:
            jobs = ([self._current] if self._current else []) + list(self._queue) + list(self._finished.values())
        return [j.snapshot() for j in jobs]

    def add_listener(self, listener: Listener) -> None:
        """Listen to the events of every job."""
        self._listeners.append(listener)

    def wait_idle(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.time() + timeout
        with self._cond:
            while self._queue or self._current is not None:
                left = None if deadline is None else deadline - time.time()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            self._ensure_worker()

    def shutdown(self, wait: bool = True, timeout: float | None = 30) -> None:
        """Cancel queued jobs, interrupt the running one and stop the worker."""
        with self._cond:
            self._stopping = True
            pending = list(self._queue)
            self._queue.clear()
            if self._current is not None:
                self._current.interrupt_flag = True
            self._cond.notify_all()
        for job in pending:
            self._finish(job, JobState.CANCELLED)
        if wait and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _ensure_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name=f"atelier-worker-{next(self._counter)}", daemon=True)
            self._thread.start()

    def _emit(self, event: str, job: Job) -> None:
        for listener in list(self._listeners):
            try:
                listener(event, job)
            except Exception:
                log.exception("service listener failed on %s", event)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                job = self._queue.popleft()
                self._current = job
            try:
                self._run(job)
            finally:
                with self._cond:
                    self._current = None
                    self._cond.notify_all()

    def _run(self, job: Job) -> None:
        job.state = JobState.RUNNING
        job.started = time.time()
        job._emit("started")
        self._emit("started", job)
        ctx = JobContext(job, self)
        try:
            if job.kind == "custom":
                result = JobResult(value=job.fn(ctx))
            else:
                result = self.runner_for(job.kind)(ctx)
            if not isinstance(result, JobResult):
                raise TypeError(f"runner for {job.kind!r} returned {type(result).__name__}, not JobResult")
            for warning in ctx.warnings:
                if warning not in result.warnings:
                    result.warnings.append(warning)
            job.result = result
            state = JobState.INTERRUPTED if (job.interrupt_flag or result.interrupted) else JobState.DONE
            result.interrupted = state == JobState.INTERRUPTED
            self._finish(job, state)
        except Exception as exc:  # noqa: BLE001 - the worker must survive anything a job does
            log.exception("job %s (%s) failed", job.id, job.kind)
            job.exception = exc
            job.error = _describe(exc)
            _free_memory()
            self._finish(job, JobState.FAILED)

    def _finish(self, job: Job, state: JobState) -> None:
        job.state = state
        job.finished = time.time()
        if state in (JobState.DONE, JobState.INTERRUPTED):
            job._update(fraction=1.0, eta_seconds=0.0)
        with self._cond:
            self._finished[job.id] = job
            while len(self._finished) > self._history:
                self._finished.popitem(last=False)
        job._done.set()
        job._emit(state.value)
        self._emit(state.value, job)


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    if "OutOfMemory" in name:
        return f"{name}: out of memory ({exc}). Try a smaller size or batch, or --medvram/--lowvram."
    return f"{name}: {exc}"


def _free_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
