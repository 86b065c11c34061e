"""``shared.state`` (the running job of the service: read it, ``interrupt()``/``skip()`` it) and
``shared.total_tqdm`` (A1111's all-jobs console bar), re-exported by ``modules.shared``."""

from __future__ import annotations

from typing import Any


def _runtime() -> Any:
    from app.plugins.compat.current import current

    return current().runtime


class State:
    """``shared.state``: the running job of the service (read), ``interrupt()``/``skip()`` (act)."""

    def __init__(self) -> None:
        self.job = ""
        self.job_count = 0
        self.job_no = 0
        self.sampling_step = 0
        self.sampling_steps = 0
        self.textinfo: str | None = None
        self.server_start = None

    def _service(self) -> Any:
        runtime = _runtime()
        return getattr(runtime, "_lazy", {}).get("service") if runtime is not None else None

    def _current_job(self) -> Any:
        service = self._service()
        return getattr(service, "current", None) if service is not None else None

    @property
    def interrupted(self) -> bool:
        job = self._current_job()
        return bool(getattr(job, "interrupt_flag", False))

    @property
    def skipped(self) -> bool:
        job = self._current_job()
        return bool(getattr(job, "skip_flag", False))

    def interrupt(self) -> None:
        service = self._service()
        if service is not None:
            service.interrupt()

    def skip(self) -> None:
        service = self._service()
        if service is not None:
            service.skip()

    def begin(self, job: str = "(unknown)") -> None:
        self.job, self.job_no, self.sampling_step = job, 0, 0

    def end(self) -> None:
        self.job = ""
        self.job_count = 0

    def nextjob(self) -> None:
        self.job_no += 1
        self.sampling_step = 0


state = State()


class TotalTQDM:
    """``shared.total_tqdm``: A1111's console bar over all jobs. Atelier shows progress in the UI and API, so
    this only keeps the counts scripts set (no console output)."""

    def __init__(self) -> None:
        self.total = 0
        self.n = 0

    def reset(self) -> None:
        self.n = 0

    def update(self) -> None:
        self.n += 1

    def updateTotal(self, new_total: int) -> None:  # noqa: N802 - A1111's name
        self.total = int(new_total)

    def clear(self) -> None:
        self.n = 0


total_tqdm = TotalTQDM()
