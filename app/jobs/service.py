"""JobService: one FIFO queue and one worker thread that runs its jobs, in place or through an executor.

UI, API, generate-forever and extensions all submit jobs here. A job is params in, events and a
``JobResult`` out (serialisable, so the worker can later move into a subprocess). The worker
survives any exception a job raises (including out-of-memory); the job is marked failed with the
message. Runners are looked up by job kind in the service's own table: the Runtime passes the
engine's (``app.engine.modes.runners.RUNNERS``) when it builds the service, and tests or
extensions add theirs with ``register_runner``. With an ``executor`` (``app.worker.supervisor.ProcessExecutor``,
``--worker process``) the kinds it lists run in the worker process instead: the service keeps the queue, the durable
store, listeners and interrupt/skip, and the executor turns the worker's events into this process's ``Job`` updates.
A "custom" job (a closure) always runs here, on the service's thread. This module imports no engine code.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from app.devices import free_memory
from app.errors import describe_error, is_expected
from app.jobs.job import INTERNAL_KINDS, CustomFn, Job, JobContext, JobFailed, JobResult, JobState, Listener, Runner

log = logging.getLogger(__name__)


class JobService:
    """One worker thread, one FIFO queue (see module doc)."""

    def __init__(
        self, manager: Any = None, settings: Any = None, paths: Any = None, history: int = 64, keep_results: int = 8,
        *, runners: Mapping[str, Runner] | None = None, store: Any = None, executor: Any = None,
    ):
        self.manager = manager
        self.settings = settings
        self.paths = paths
        self._runners: dict[str, Runner] = {}
        for kind, runner in (runners or {}).items():
            self.register_runner(kind, runner)
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._current: Job | None = None
        self._finished: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._history = history
        self._keep_results = max(1, keep_results)
        self._listeners: list[Listener] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._counter = itertools.count(1)
        #: the durable queue (``app.jobs.store.JobStore``) or None (tests, tools): jobs then live in memory only
        self.store = store
        #: where worker kinds run (``executor.kinds``, ``executor.run(ctx)``), or None: every runner runs here
        self.executor = executor

    # -- registry ----------------------------------------------------------------------------
    def register_runner(self, kind: str, runner: Runner) -> None:
        """Register (or replace) the runner of a job kind."""
        if not kind or not callable(runner):
            raise ValueError("register_runner needs a kind name and a callable")
        self._runners[kind] = runner

    def runner_for(self, kind: str) -> Runner:
        runner = self._runners.get(kind)
        if runner is None and self.executor is not None and kind in self.executor.kinds:
            runner = self.executor.run
        if runner is None:
            known = sorted({*self._runners, *(self.executor.kinds if self.executor is not None else ()), "custom"})
            raise ValueError(f"no runner for job kind {kind!r} (known: {', '.join(known)})")
        return runner

    # -- submission --------------------------------------------------------------------------
    def submit(self, params: Any = None, kind: str = "txt2img", fn: CustomFn | None = None, job_id: str | None = None,
               origin: str = "") -> Job:
        """Queue a job and return it at once. ``kind="custom"`` runs ``fn(ctx)`` on the worker. ``origin`` (``ui``,
        ``api``, ``forever``...) is recorded with the job in the durable queue."""
        if kind == "custom":
            if fn is None:
                raise ValueError("a custom job needs fn")
        else:
            self.runner_for(kind)  # unknown kinds fail at submit time, not in the worker
        job = Job(kind, params, fn, job_id)
        job.origin = origin
        if self.store is not None and kind not in INTERNAL_KINDS:
            self.store.add(job, origin)
        with self._cond:
            if self._stopping:
                raise RuntimeError("the job service is shut down")
            self._queue.append(job)
            self._ensure_worker()
            self._cond.notify_all()
        job._emit("queued")
        self._emit("queued", job)
        return job

    def restore(self) -> dict[str, list[str]]:
        """After a restart: a job left running is marked interrupted; queued jobs are queued again in their order.
        Returns the ids of both (``{"interrupted": [...], "requeued": [...], "failed": [...]}``)."""
        out: dict[str, list[str]] = {"interrupted": [], "requeued": [], "failed": []}
        if self.store is None:
            return out
        out["interrupted"] = self.store.recover()
        for row in self.store.pending():
            if row.params is not None and hasattr(row.params, "save_images"):
                row.params.save_images = True  # whoever asked is gone: the images must land on disk to be seen
            job = Job(row.kind, row.params, None, row.id)
            job.origin, job.created = row.origin, row.created
            if row.params is None or not self._knows(row.kind):
                job.error = row.error or f"no runner for job kind {row.kind!r}"
                self._finish(job, JobState.FAILED)
                out["failed"].append(row.id)
                continue
            with self._cond:
                self._queue.append(job)
                self._ensure_worker()
                self._cond.notify_all()
            out["requeued"].append(row.id)
        if any(out.values()):
            log.info("job queue restored: %d requeued, %d interrupted by the last stop, %d not restorable",
                     len(out["requeued"]), len(out["interrupted"]), len(out["failed"]))
        return out

    def retry(self, job_id: str, origin: str = "retry") -> Job:
        """Queue a finished (or interrupted, failed, cancelled) job again with the same params, as a new job."""
        job = self.get(job_id)
        kind, params = (job.kind, job.params) if job is not None else (None, None)
        if params is None and self.store is not None:
            row = self.store.get(job_id)
            if row is not None:
                kind, params = row.kind, row.params
        if params is None or kind is None or kind in INTERNAL_KINDS:
            raise KeyError(f"job {job_id!r} is unknown or cannot be re-run")
        return self.submit(params.copy() if hasattr(params, "copy") else params, kind, origin=origin)

    def move_to_front(self, job_id: str) -> bool:
        """Run a queued job next; False when it is not queued."""
        with self._cond:
            for job in self._queue:
                if job.id == job_id:
                    self._queue.remove(job)
                    self._queue.appendleft(job)
                    break
            else:
                return False
        if self.store is not None:
            top = max((r.priority for r in self.store.pending()), default=0)
            self.store.set_priority(job_id, top + 1)
        return True

    def run_exclusive(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        """Run ``fn()`` on the worker, in queue order, and return its value (re-raising its error)."""
        if threading.current_thread() is self._thread:
            return fn()  # already on the worker: running inline keeps the order and avoids a deadlock
        job = self.submit(kind="custom", fn=lambda ctx: fn())
        try:
            return job.wait(timeout).value
        except JobFailed as exc:
            raise exc.__cause__ or exc from None

    def model_op(self, kind: str, timeout: float | None = None, **params: Any) -> Any:
        """Run a named model operation (``load_model``, ``reload_model``, ``unload_model``, ``model_info``; see
        ``app.worker.ops``) in queue order and return its value (the model state); re-raises its error. Works the same
        with the worker in a process or in this one, which closures (``run_exclusive``) cannot."""
        if kind not in INTERNAL_KINDS or kind == "custom":
            raise ValueError(f"{kind!r} is not a model operation")
        if threading.current_thread() is self._thread:  # called from a job on the worker thread: run it inline
            ctx = JobContext(Job(kind, dict(params)), self, self._emit)
            return self.runner_for(kind)(ctx).value
        job = self.submit(dict(params), kind=kind, origin="internal")
        try:
            return job.wait(timeout).value
        except JobFailed as exc:
            raise exc.__cause__ or exc from None

    def _knows(self, kind: str) -> bool:
        return kind in self._runners or (self.executor is not None and kind in self.executor.kinds)

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
    def waiting_generations(self) -> int:
        """Queued generation jobs (internal custom jobs such as a model load are not counted)."""
        with self._cond:
            return sum(1 for job in self._queue if job.kind not in INTERNAL_KINDS)

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
        """Start the worker (the runners were imported by whoever built the table, in the caller's thread:
        diffusers' lazy module loading is not safe when two threads trigger it at once)."""
        with self._cond:
            self._ensure_worker()
        if self.executor is not None:
            self.executor.start()

    def shutdown(self, wait: bool = True, timeout: float | None = 30) -> None:
        """Cancel queued jobs, interrupt the running one and stop the worker. With a durable queue the queued jobs
        stay queued in it (they run after the next start); only this process's handles are cancelled."""
        with self._cond:
            self._stopping = True
            pending = list(self._queue)
            self._queue.clear()
            if self._current is not None:
                self._current.interrupt_flag = True
            self._cond.notify_all()
        for job in pending:
            self._finish(job, JobState.CANCELLED, record=False)
        if wait and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self.executor is not None:
            self.executor.stop()

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
        self._record(job)
        job._emit("started")
        self._emit("started", job)
        ctx = JobContext(job, self, self._emit)
        try:
            if job.kind == "custom":
                if job.fn is None:  # submit() already refuses this; the check narrows the type
                    raise ValueError("a custom job needs fn")
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
            described = getattr(exc, "described", None)  # a worker process error: its text is complete
            if is_expected(exc) or described:  # e.g. no checkpoint yet: the message says what to do
                log.error("job %s (%s) failed: %s", job.id, job.kind, described or exc)
            else:
                log.exception("job %s (%s) failed", job.id, job.kind)
            job.exception = exc
            job.error = described or describe_error(exc)
            if self.executor is None or job.kind not in self.executor.kinds:
                free_memory()
            self._finish(job, JobState.FAILED)

    def _finish(self, job: Job, state: JobState, record: bool = True) -> None:
        job.state = state
        job.finished = time.time()
        if state in (JobState.DONE, JobState.INTERRUPTED):
            job._update(fraction=1.0, eta_seconds=0.0)
        with self._cond:
            self._finished[job.id] = job
            while len(self._finished) > self._history:
                self._finished.popitem(last=False)
            # images stay reachable for the most recent jobs only (memory); older entries keep their state
            for old in list(self._finished.values())[: -self._keep_results]:
                if old.result is not None and old.result.images:
                    old.result.images = []
                old._update(preview=None)
        if record:
            self._record(job)
        job._done.set()
        job._emit(state.value)
        self._emit(state.value, job)

    def _record(self, job: Job) -> None:
        """Write the job's state to the durable queue (a database problem never fails the job)."""
        if self.store is None or job.kind in INTERNAL_KINDS:
            return
        try:
            self.store.update(job)
        except Exception:  # noqa: BLE001 - the image is already made; the log says the record is missing
            log.exception("could not record job %s in the job database", job.id)

