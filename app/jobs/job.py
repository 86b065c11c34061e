"""Jobs: the serialisable unit of work of the job service (params in, events and a result out).

``Job`` (id, state, progress snapshot, listeners, ``wait``), ``JobResult``, ``Progress`` and the
``JobContext`` a runner gets (params, shared objects, progress reporting, interrupt/skip flags).
The queue and the worker live in ``app.jobs.service``, which imports this module and never the other
way round: a context reaches its service through the ``JobHost`` protocol and reports events to the
service's listeners through the ``emit`` callback the service hands it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Protocol

from app.outputs.job import JobSaver
from app.settings import setting_value

log = logging.getLogger(__name__)


#: Job kinds that are internal work, not generations: never stored in the durable queue, not counted as waiting
#: generations. "custom" runs a closure; the others are the named model operations (``app.worker.ops``).
INTERNAL_KINDS = frozenset({"custom", "load_model", "reload_model", "unload_model", "model_info", "list_embeddings"})


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


#: Receives a job's events: ``listener(event, job)`` (queued, started, progress, preview, done, failed...).
Listener = Callable[[str, "Job"], None]
#: A runner executes one job on the worker thread: ``runner(ctx) -> JobResult``.
Runner = Callable[["JobContext"], "JobResult"]
#: The work of a "custom" job: ``fn(ctx)``; its return value becomes ``JobResult.value``.
CustomFn = Callable[["JobContext"], Any]


class JobHost(Protocol):
    """What a job context uses of the service that runs it (``app.jobs.service.JobService``)."""

    manager: Any
    settings: Any
    paths: Any

    def interrupt(self, job_id: str | None = None) -> bool: ...

    def runner_for(self, kind: str) -> Runner: ...


class Job:
    """One unit of work in the queue."""

    def __init__(self, kind: str, params: Any = None, fn: CustomFn | None = None, job_id: str | None = None):
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
        self.origin = ""  # who submitted it: "ui", "api", "forever", "retry", ...

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

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the job is finished (any state) without raising; True when it is."""
        return self._done.wait(timeout)

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
        with self._lock:  # the worker and interrupt/skip callers update the snapshot concurrently
            self._progress = replace(self._progress, **changes)

    def __repr__(self) -> str:
        return f"Job({self.id}, {self.kind}, {self.state.value})"


class JobContext:
    """What a runner gets: the job's params, the shared objects, and progress/stop controls."""

    def __init__(self, job: Job, service: JobHost, emit: Listener):
        self.job = job
        #: The service running the job: extensions and scripts call ``interrupt`` and ``runner_for`` on it.
        self.service = service
        self._emit_to_service = emit
        self.params = job.params
        self.manager = service.manager
        #: The service's settings until the job mode sets this job's effective settings (``plan.settings``: the
        #: request's ``override_settings`` over them), which previews then follow.
        self.settings = service.settings
        self.paths = service.paths
        self.warnings: list[str] = []

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
        enabled = setting_value(settings, "live_previews_enable", True)
        every = int(setting_value(settings, "show_progress_every_n_steps", 10) or 0)
        if not enabled or every == 0:
            return False
        if every < 0:
            return step == steps
        return step % every == 0 or step == steps

    def set_preview(self, image: Any) -> None:
        p = self.job.progress
        self.job._update(preview=image, preview_id=p.preview_id + 1)
        self.job._emit("preview")
        self._emit_to_service("preview", self.job)

    def warn(self, message: str) -> None:
        log.warning("%s: %s", self.job.id, message)
        self.warnings.append(message)

    # files -------------------------------------------------------------------------------------
    def saver(self, kind: str, params: Any, settings: Any, paths: Any, warn: Callable[[str], None]) -> JobSaver:
        """Who writes this job's files (samples, extra copies, grid, params.txt, as the job's effective
        ``settings`` say): the engine hands it each image as soon as it is made and never writes files itself."""
        return JobSaver(kind, params, settings, paths, warn)

    def _emit_progress(self) -> None:
        self.job._emit("progress")
        self._emit_to_service("progress", self.job)
