"""Console progress bars (A1111's tqdm bars): one per batch over its sampling steps plus "Total progress", from the
job service's progress events on the worker thread; `multiple_tqdm` and `--disable-console-progressbars`."""

from __future__ import annotations

import io
import time
from pathlib import Path

from app.cli import parse_args
from app.jobs.console import ConsoleProgress
from app.jobs.job import JobResult
from app.jobs.service import JobService


class Settings(dict):
    def get(self, key, default=None):
        return super().get(key, default)


def sampling_runner(batches: int, steps: int):
    """A runner that reports progress exactly as the engine does (begin, then per batch set_job_no and steps)."""
    def run(ctx) -> JobResult:
        ctx.begin(job_count=batches, sampling_steps=steps)
        for n in range(batches):
            ctx.set_job_no(n)
            for step in range(1, steps + 1):
                ctx.step(step, steps)
        return JobResult()
    return run


def run_job(console: ConsoleProgress, kind: str = "txt2img", batches: int = 2, steps: int = 5) -> None:
    service = JobService(runners={kind: sampling_runner(batches, steps)})
    service.add_listener(console)
    try:
        job = service.submit(None, kind=kind)
        assert job.join(30)
        assert job.error is None
    finally:
        service.shutdown()


def test_bar_per_batch_and_total_progress() -> None:
    out = io.StringIO()
    run_job(ConsoleProgress(Settings(), stream=out, mininterval=0), batches=2, steps=5)
    text = out.getvalue()
    assert "Total progress" in text
    assert text.count("5/5") >= 2  # each batch's bar reached its last step
    assert "10/10" in text  # the total bar: 2 batches x 5 steps
    assert "Total progress: 100%" in text


def test_multiple_tqdm_off_shows_only_the_batch_bars() -> None:
    out = io.StringIO()
    run_job(ConsoleProgress(Settings(multiple_tqdm=False), stream=out, mininterval=0), batches=2, steps=4)
    text = out.getvalue()
    assert "Total progress" not in text and text.count("4/4") >= 2


def test_jobs_that_do_not_sample_print_nothing() -> None:
    out = io.StringIO()
    run_job(ConsoleProgress(Settings(), stream=out, mininterval=0), kind="extras", batches=3, steps=1)
    assert out.getvalue() == ""


def test_redraws_are_throttled_and_cheap() -> None:
    """Thousands of steps redraw only a few times a second, and the listener adds microseconds per step."""
    out = io.StringIO()
    console = ConsoleProgress(Settings(), stream=out)  # the default interval (0.25 s)
    started = time.perf_counter()
    run_job(console, batches=1, steps=5000)
    elapsed = time.perf_counter() - started
    redraws = out.getvalue().count("\r")
    assert redraws <= 4 * (elapsed / 0.25 + 2) + 4, redraws  # two bars, at most ~4 redraws a second each
    assert "5000/5000" in out.getvalue()  # the last state is drawn when the bar closes

    # the listener's own cost per step event, measured without the service
    class FakeJob:
        kind, id = "txt2img", "job"

        class progress:  # noqa: N801 - mimics the Progress snapshot attribute
            sampling_steps, job_count, job_no, sampling_step = 100000, 1, 0, 0

    job, quiet = FakeJob(), ConsoleProgress(Settings(), stream=io.StringIO())
    t0 = time.perf_counter()
    for step in range(1, 20001):
        job.progress.sampling_step = step
        quiet("progress", job)
    per_step = (time.perf_counter() - t0) / 20000
    quiet("done", job)
    assert per_step < 200e-6, f"{per_step * 1e6:.1f} µs per step"  # a sampling step takes tens of ms or more


def test_runtime_wires_the_bars_unless_disabled(tmp_path: Path) -> None:
    from app.runtime import Runtime

    for flags, expected in (((), 1), (("--disable-console-progressbars",), 0)):
        rt = Runtime(parse_args(["--data-dir", str(tmp_path / "d"), "--test-server", *flags], environ={}))
        try:
            consoles = [li for li in rt.service._listeners if isinstance(li, ConsoleProgress)]
            assert len(consoles) == expected
        finally:
            rt.shutdown()
