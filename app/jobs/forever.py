"""Generate forever, on the server: a background thread that submits the same params again and again through
the job service (seed -1 gives a new random seed each time; a fixed seed stays fixed), so it keeps going when
the browser tab closes. It stops on cancel (after the running job), on interrupt (at once) or on an error.
The page polls `snapshot()` to show the latest images. No gradio here.

A loop can be durable: given a `recorder` (`app.jobs.loops.LoopStore`), it writes its row when it starts, its
progress after each job and its end, so `app.jobs.loops.ForeverLoops.resume()` brings a loop that was running back
after a restart. `suspend()` (the app is shutting down) ends the thread without recording an end: the row stays
running and the loop resumes at the next start."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass
class ForeverState:
    running: bool = False
    generation: int = 0  # finished jobs since start
    result: Any = None  # the latest JobResult
    job: Any = None  # the job now in the queue/running
    error: str | None = None
    stopped_by: str = ""  # "", "cancel", "interrupt", "error"
    history: list[str] = field(default_factory=list)  # ids of the submitted jobs
    loop_id: str = ""  # the durable loop's id ("" for a loop that is not stored)


class LoopRecorder(Protocol):
    """Where a durable loop writes its life (`app.jobs.loops.LoopStore`)."""

    def new_id(self) -> str: ...
    def add(self, loop_id: str, kind: str, params: Any, origin: str) -> None: ...
    def set_params(self, loop_id: str, params: Any) -> None: ...
    def progress(self, loop_id: str, generation: int, last_job: str) -> None: ...
    def finish(self, loop_id: str, stopped_by: str, error: str | None) -> None: ...


class ForeverLoop:
    """One loop per job kind (txt2img/img2img). `service_getter()` returns the JobService; `recorder` (optional)
    makes each run of the loop a durable record with `origin` ("ui", "job-api")."""

    def __init__(self, service_getter: Callable[[], Any], kind: str, max_jobs: int | None = None,
                 recorder: LoopRecorder | None = None, origin: str = "ui") -> None:
        self._service_getter = service_getter
        self.kind = kind
        self.max_jobs = max_jobs
        self.recorder = recorder
        self.origin = origin
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._suspended = False
        self._thread: threading.Thread | None = None
        self._params: Any = None
        self.state = ForeverState()

    @property
    def loop_id(self) -> str:
        return self.state.loop_id

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def start(self, params: Any) -> bool:
        """Start looping over `params` (a GenerationParams); if already running, later jobs use the new params.
        Returns True when a new loop was started (a durable loop gets a new id and row)."""
        with self._lock:
            self._params = params
            if self.running:
                if self.recorder is not None and self.state.loop_id:
                    self.recorder.set_params(self.state.loop_id, params)
                return False
        self.wait()  # a cancelled loop still finishing its job
        loop_id = ""
        if self.recorder is not None:
            loop_id = self.recorder.new_id()
            self.recorder.add(loop_id, self.kind, params, self.origin)
        self._launch(ForeverState(running=True, loop_id=loop_id))
        return True

    def resume(self, loop_id: str, params: Any, generation: int = 0) -> None:
        """Continue a stored loop after a restart (its row exists and says running)."""
        with self._lock:
            self._params = params
        self._launch(ForeverState(running=True, loop_id=loop_id, generation=generation))

    def _launch(self, state: ForeverState) -> None:
        with self._lock:
            self._stop.clear()
            self._suspended = False
            self.state = state
            self._thread = threading.Thread(target=self._loop, name=f"atelier-forever-{self.kind}", daemon=True)
            self._thread.start()

    def suspend(self) -> None:
        """The app is stopping: end the thread but keep the stored loop running, so it resumes at the next start."""
        with self._lock:
            self._suspended = True
        self._stop.set()

    def cancel(self) -> None:
        """Stop after the running job finishes (A1111's "Cancel generate forever")."""
        self._stop.set()
        with self._lock:
            if self.state.running and not self.state.stopped_by:
                self.state.stopped_by = "cancel"
            job = self.state.job
        service = self._service_getter()
        if job is not None and service is not None and hasattr(service, "position") and service.position(job.id):
            service.cancel(job.id)  # still queued: it need not run at all

    def interrupt(self) -> None:
        """Stop now: the loop ends and the running job is interrupted."""
        self._stop.set()
        with self._lock:
            if self.state.running:
                self.state.stopped_by = "interrupt"
            job = self.state.job
        service = self._service_getter()
        if job is not None and service is not None:
            service.interrupt(job.id)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the loop thread to end; True when it has."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def snapshot(self) -> ForeverState:
        with self._lock:
            return ForeverState(**vars(self.state))

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                if self.max_jobs is not None and self.state.generation >= self.max_jobs:
                    break
                if not self._run_one():
                    break
        finally:
            with self._lock:
                self.state.running = False
                self.state.job = None
                record = not self._suspended and self.recorder is not None and self.state.loop_id
                stopped_by = self.state.stopped_by or ("limit" if self.max_jobs is not None else "cancel")
                loop_id, error = self.state.loop_id, self.state.error
            if record:
                self._record(lambda: self.recorder.finish(loop_id, stopped_by, error))  # type: ignore[union-attr]

    def _record(self, write: Callable[[], None]) -> None:
        """Write to the loop's record; a failing write is logged, never ends the loop."""
        try:
            write()
        except Exception:  # noqa: BLE001 - the database is a record, the images are what matters
            log.exception("generate forever (%s): could not record the loop", self.kind)

    def _run_one(self) -> bool:
        """Submit one job and wait for it; False when the loop must end."""
        service = self._service_getter()
        if service is None:
            self._fail("the job service is not available")
            return False
        with self._lock:
            params = self._params.copy() if hasattr(self._params, "copy") else self._params
        try:
            job = service.submit(params, kind=self.kind, origin="forever")
        except Exception as exc:  # noqa: BLE001
            self._fail(str(exc))
            return False
        with self._lock:
            self.state.job = job
            self.state.history.append(job.id)
        try:
            result = job.wait()
        except Exception as exc:  # noqa: BLE001 - JobFailed / JobCancelled
            if self._stop.is_set():
                return False
            self._fail(str(exc))
            return False
        with self._lock:
            self.state.result = result
            self.state.generation += 1
            if result.interrupted and not self.state.stopped_by and not self._suspended:
                self.state.stopped_by = "interrupt"
            loop_id, generation = self.state.loop_id, self.state.generation
        if self.recorder is not None and loop_id:
            self._record(lambda: self.recorder.progress(loop_id, generation, job.id))  # type: ignore[union-attr]
        return not result.interrupted

    def _fail(self, message: str) -> None:
        log.warning("generate forever (%s) stopped: %s", self.kind, message)
        with self._lock:
            self.state.error = message
            self.state.stopped_by = "error"
        self._stop.set()
