"""Generate forever, on the server: a background thread that submits the same params again and again through
the job service (seed -1 gives a new random seed each time; a fixed seed stays fixed), so it keeps going when
the browser tab closes. It stops on cancel (after the running job), on interrupt (at once) or on an error.
The page polls `snapshot()` to show the latest images. No gradio here."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


class ForeverLoop:
    """One loop per job kind (txt2img/img2img). `service_getter()` returns the JobService."""

    def __init__(self, service_getter: Callable[[], Any], kind: str, max_jobs: int | None = None) -> None:
        self._service_getter = service_getter
        self.kind = kind
        self.max_jobs = max_jobs
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._params: Any = None
        self.state = ForeverState()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def start(self, params: Any) -> bool:
        """Start looping over `params` (a GenerationParams); if already running, later jobs use the new params.
        Returns True when a new loop was started."""
        with self._lock:
            self._params = params
            if self.running:
                return False
            if self._thread is not None and self._thread.is_alive():  # a cancelled loop still finishing its job
                self._thread.join()
            self._stop.clear()
            self.state = ForeverState(running=True)
            self._thread = threading.Thread(target=self._loop, name=f"atelier-forever-{self.kind}", daemon=True)
            self._thread.start()
            return True

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
            if result.interrupted and not self.state.stopped_by:
                self.state.stopped_by = "interrupt"
        return not result.interrupted

    def _fail(self, message: str) -> None:
        log.warning("generate forever (%s) stopped: %s", self.kind, message)
        with self._lock:
            self.state.error = message
            self.state.stopped_by = "error"
        self._stop.set()
