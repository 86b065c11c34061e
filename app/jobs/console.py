"""Progress bars on the console while a generation runs, as A1111 prints them: one tqdm bar per image batch over its
sampling steps (hires steps included), plus a "Total progress" bar over the whole job when the `multiple_tqdm`
setting is on (default). `--disable-console-progressbars` turns both off.

`ConsoleProgress` is a `JobService` listener: it reads the progress snapshot that the engine already reports
through `JobContext.begin/set_job_no/step`, so the engine has no console code and the bars follow the worker
thread's job whatever submitted it (UI, API, generate-forever, extensions). Each event costs a few attribute
reads and a tqdm counter update; tqdm redraws at most every `mininterval` seconds (4 times a second by default),
so the bars do not slow sampling down.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from app.settings import setting_value

#: The job kinds that sample and get bars (extras and custom jobs report counts, not sampling steps).
SAMPLING_KINDS = frozenset({"txt2img", "img2img"})
#: Event names of a finished job (`app.jobs.job.JobState` values).
FINISHED = frozenset({"done", "failed", "cancelled", "interrupted"})


class ConsoleProgress:
    """The console bars of the running job (see module doc). `stream` defaults to the current `sys.stderr`, where
    the log lines go too, so the two interleave in order."""

    def __init__(self, settings: Any = None, stream: TextIO | None = None, mininterval: float = 0.25) -> None:
        self.settings = settings
        self.stream = stream
        self.mininterval = mininterval
        self._lock = threading.Lock()
        self._job_id: str | None = None
        self._batch: Any = None  # tqdm of the current batch
        self._batch_key: tuple[int, int] | None = None  # (job_no, sampling_steps) the batch bar counts
        self._total: Any = None  # tqdm "Total progress"

    def __call__(self, event: str, job: Any) -> None:
        if getattr(job, "kind", None) not in SAMPLING_KINDS:
            return
        with self._lock:
            if event in FINISHED:
                if job.id == self._job_id:
                    self._close()
            elif event == "progress":
                self._show(job)

    # -- internals ----------------------------------------------------------------------------------------------------
    def _bar(self, total: int, desc: str | None) -> Any:
        from tqdm import tqdm  # type: ignore[import-untyped]  # deferred: only a server that generates needs it

        return tqdm(total=total, desc=desc, file=self.stream or sys.stderr, mininterval=self.mininterval,
                    dynamic_ncols=True)

    def _show(self, job: Any) -> None:
        p = job.progress
        steps, count = int(p.sampling_steps or 0), max(1, int(p.job_count or 1))
        if steps <= 0:
            return  # the job has announced no sampling yet
        if job.id != self._job_id:
            self._close()
            self._job_id = job.id
        key = (int(p.job_no), steps)
        if key != self._batch_key:
            if self._batch is not None:
                self._batch.close()
            self._batch, self._batch_key = self._bar(steps, None), key
        _advance(self._batch, min(int(p.sampling_step), steps))
        if not bool(setting_value(self.settings, "multiple_tqdm", True)):
            return
        total = count * steps
        if self._total is None:
            self._total = self._bar(total, "Total progress")
        elif self._total.total != total:  # a hires pass or a script changed the step count
            self._total.total = total
        _advance(self._total, min(int(p.job_no) * steps + int(p.sampling_step), total))

    def _close(self) -> None:
        for bar in (self._batch, self._total):
            if bar is not None:
                bar.close()
        self._batch = self._total = None
        self._batch_key = self._job_id = None


def _advance(bar: Any, n: int) -> None:
    """Move `bar` forward to `n` (never back: a repeated step is no progress)."""
    if n > bar.n:
        bar.update(n - bar.n)
