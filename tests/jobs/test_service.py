"""JobService: FIFO order, failures, interrupt/skip, cancel, exclusive runs, runner registry."""

from __future__ import annotations

import threading
import time

import pytest

from app.jobs.job import JobCancelled, JobFailed, JobResult, JobState
from app.jobs.service import JobService
from tests.helpers import wait_for_step


@pytest.fixture
def service():
    svc = JobService()
    yield svc
    svc.shutdown(wait=True, timeout=10)


def _stepping_runner(steps: int, delay: float = 0.01):
    """A runner that behaves like a sampler: reports steps and honours interrupt/skip."""

    def run(ctx):
        ctx.begin(job_count=2, sampling_steps=steps)
        done = []
        for batch in range(2):
            ctx.set_job_no(batch)
            n = 0
            for n in range(1, steps + 1):
                if ctx.should_stop():
                    n -= 1
                    break
                time.sleep(delay)  # the fake sampler's step time: interrupt/skip land in the middle of the run
                ctx.step(n, steps)
            done.append(n)
            if ctx.skipped:
                ctx.clear_skip()
            if ctx.interrupted:
                break
        return JobResult(info={"steps_done": done})

    return run


def test_fifo_order_of_three_jobs(service):
    order: list[int] = []
    gate = threading.Event()
    jobs = [service.submit(kind="custom", fn=lambda ctx, i=i: (gate.wait(5), order.append(i))) for i in range(3)]
    assert service.queue_size >= 2
    gate.set()
    for job in jobs:
        job.wait(10)
    assert order == [0, 1, 2]
    assert [j.state for j in jobs] == [JobState.DONE] * 3


def test_failing_job_reports_error_and_worker_goes_on(service):
    def boom(ctx):
        raise RuntimeError("CUDA out of memory (simulated)")

    bad = service.submit(kind="custom", fn=boom)
    good = service.submit(kind="custom", fn=lambda ctx: 42)
    with pytest.raises(JobFailed, match="simulated"):
        bad.wait(10)
    assert bad.state == JobState.FAILED
    assert "RuntimeError" in bad.error
    assert good.wait(10).value == 42
    assert good.state == JobState.DONE


def test_interrupt_stops_running_job_and_keeps_result(service):
    service.register_runner("fake", _stepping_runner(steps=200))
    job = service.submit(params=None, kind="fake")
    wait_for_step(job, 2, timeout=10)
    assert service.current is job
    assert service.interrupt() is True
    result = job.wait(10)
    assert job.state == JobState.INTERRUPTED
    assert result.interrupted
    assert result.info["steps_done"][0] < 200 and len(result.info["steps_done"]) == 1


def test_skip_ends_current_batch_only(service):
    service.register_runner("fake", _stepping_runner(steps=60))
    job = service.submit(kind="fake")
    wait_for_step(job, 2, timeout=10)
    service.skip()
    result = job.wait(20)
    assert job.state == JobState.DONE
    first, second = result.info["steps_done"]
    assert first < 60 and second == 60


def test_progress_fraction_and_eta(service):
    seen = []
    service.register_runner("fake", _stepping_runner(steps=4, delay=0.0))
    job = service.submit(kind="fake")
    job.add_listener(lambda event, j: seen.append((event, j.progress.fraction)))
    job.wait(10)
    fractions = [f for e, f in seen if e == "progress"]
    assert fractions == sorted(fractions)
    assert job.progress.fraction == 1.0
    assert job.progress.job_count == 2
    assert seen[-1][0] == "done"


def test_cancel_queued_job_and_interrupt_by_id(service):
    gate = threading.Event()
    first = service.submit(kind="custom", fn=lambda ctx: gate.wait(5))
    second = service.submit(kind="custom", fn=lambda ctx: "never")
    third = service.submit(kind="custom", fn=lambda ctx: "later")
    assert service.interrupt(second.id) is True  # queued → cancelled
    assert service.cancel("task(unknown)") is False
    gate.set()
    with pytest.raises(JobCancelled):
        second.wait(10)
    assert third.wait(10).value == "later"
    assert first.state == JobState.DONE
    assert {"id", "state", "progress"} <= set(service.jobs_snapshot()[0])


def test_run_exclusive_runs_in_queue_order_and_reraises(service):
    order = []
    gate = threading.Event()
    service.submit(kind="custom", fn=lambda ctx: (gate.wait(5), order.append("job")))
    threading.Timer(0.05, gate.set).start()
    assert service.run_exclusive(lambda: order.append("exclusive") or "ok") == "ok"
    assert order == ["job", "exclusive"]
    with pytest.raises(ValueError, match="bad value"):
        service.run_exclusive(lambda: (_ for _ in ()).throw(ValueError("bad value")))


def test_unknown_kind_and_runner_registry(service):
    with pytest.raises(ValueError, match="no runner for job kind 'nope'"):
        service.submit(kind="nope")
    service.register_runner("echo-test", lambda ctx: JobResult(info={"echo": ctx.params}))
    assert service.submit(params={"a": 1}, kind="echo-test").wait(10).info == {"echo": {"a": 1}}


def test_runner_returning_wrong_type_fails_cleanly(service):
    service.register_runner("broken", lambda ctx: "not a result")
    job = service.submit(kind="broken")
    with pytest.raises(JobFailed, match="not JobResult"):
        job.wait(10)
    assert service.submit(kind="custom", fn=lambda ctx: 1).wait(10).value == 1


def test_preview_every_n_steps_follows_settings(service):
    class FakeSettings(dict):
        def get(self, key, default=None):
            return super().get(key, default)

    service.settings = FakeSettings(show_progress_every_n_steps=2, live_previews_enable=True)
    due = []

    def run(ctx):
        ctx.begin(1, 5)
        for s in range(1, 6):
            due.append(ctx.step(s, 5))
        ctx.set_preview("img")
        return JobResult()

    service.register_runner("p", run)
    job = service.submit(kind="p")
    job.wait(10)
    assert due == [False, True, False, True, True]
    assert job.progress.preview == "img" and job.progress.preview_id == 1


def test_old_results_release_their_images():
    svc = JobService(keep_results=2)
    try:
        jobs = [svc.submit(kind="custom", fn=lambda ctx: None) for _ in range(4)]
        for job in jobs:
            job.wait(10)
        svc.register_runner("img", lambda ctx: JobResult(images=["image"]))
        with_images = [svc.submit(kind="img") for _ in range(3)]
        for job in with_images:
            job.wait(10)
        assert [bool(j.result.images) for j in with_images] == [False, True, True]
        assert svc.get(with_images[0].id).state == JobState.DONE
    finally:
        svc.shutdown()
