"""The worker process under faults (real child processes, the tiny SD1 model, the hostile test extension).

One Runtime with ``--worker process`` for the module: kill -9 mid-job, a segfaulting hook, a hook that ignores
Interrupt, an unbounded allocation, a worker that exits, and a restart storm. After each, the failed job carries
the cause, the worker is restarted with the last model, and the next jobs run.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from app.cli import parse_args
from app.jobs.job import JobState
from app.params import GenerationParams
from app.runtime import Runtime
from tests.helpers import wait_for_step, wait_until

pytestmark = pytest.mark.slow
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "extensions"


def params(prompt: str = "a cat", steps: int = 2) -> GenerationParams:
    return GenerationParams(prompt=prompt, steps=steps, width=64, height=64, sampler_name="Euler", save_images=False,
                            save_grid=False)


@pytest.fixture(scope="module")
def runtime(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("worker-data")
    shutil.copytree(tiny_data_dir / "models", data / "models",
                    ignore=shutil.ignore_patterns("tiny-sd2v*", "tiny-sdxl*"))
    shutil.copytree(FIXTURES / "hostile", data / "extensions" / "hostile")
    rt = Runtime(parse_args(["--data-dir", str(data), "--worker", "process", "--disable-console-progressbars"],
                            environ={}))
    rt.settings.set_quietly("worker_interrupt_grace_s", 2.0)
    rt.start()
    state = rt.load_checkpoint(None)
    assert state is not None and state.title.startswith("tiny-sd1")
    yield rt
    executor = rt.service.executor
    rt.shutdown()
    assert executor.pid is None  # the worker exited with the service: no orphan


def _worker_pid(rt: Runtime) -> int:
    return wait_until(lambda: rt.service.executor.pid, timeout=120, message="no worker process")


def _next_job_works(rt: Runtime) -> None:
    job = rt.service.submit(params("after the fault"))
    result = job.wait(240)
    assert job.state == JobState.DONE and len(result.images) == 1
    assert rt.manager.current is not None and rt.manager.current.title.startswith("tiny-sd1")  # reloaded


def test_the_server_holds_no_model_and_jobs_run_in_the_worker(runtime: Runtime):
    pid = _worker_pid(runtime)
    assert pid != os.getpid()
    job = runtime.service.submit(params())
    events: list[str] = []
    job.add_listener(lambda event, j: events.append(event))
    result = job.wait(240)
    assert result.images[0].size == (64, 64) and result.infotexts[0].startswith("a cat\nSteps: 2")
    assert "progress" in events and events[-1] == "done"
    assert type(runtime.manager).__name__ == "RemoteModels"  # the server's view: no weights in this process


def test_a_settings_change_in_the_server_reaches_the_next_job(runtime: Runtime):
    runtime.settings.set_quietly("samples_format", "jpg")
    try:
        job = runtime.service.submit(GenerationParams(prompt="saved", steps=2, width=64, height=64,
                                                      sampler_name="Euler", save_grid=False))
        result = job.wait(240)
        assert len(result.saved_paths) == 1 and result.saved_paths[0].endswith(".jpg")  # written by the worker
        assert Path(result.saved_paths[0]).is_file()
    finally:
        runtime.settings.set_quietly("samples_format", "png")


def test_interrupt_and_skip_reach_the_worker(runtime: Runtime):
    service = runtime.service
    pid = _worker_pid(runtime)
    skipped = service.submit(GenerationParams(prompt="two batches", steps=40, n_iter=2, width=64, height=64,
                                              sampler_name="Euler", save_images=False, save_grid=False))
    wait_for_step(skipped, 1, timeout=240)
    assert service.skip()
    # the worker clears the flag when it goes on with the next batch; the cleared state reaches the server with the
    # next progress event, which may come a step after the one that says batch 2 began
    wait_until(lambda: (skipped.progress.job_no == 1 and not skipped.progress.skipped) or skipped.done, timeout=120)
    assert not skipped.done and not skipped.progress.skipped
    assert service.interrupt(skipped.id)
    assert skipped.join(120) and skipped.state == JobState.INTERRUPTED and skipped.error is None
    assert _worker_pid(runtime) == pid  # an interrupt that is obeyed restarts nothing


def test_kill_9_mid_job_fails_that_job_and_the_queue_goes_on(runtime: Runtime):
    service = runtime.service
    old_pid = _worker_pid(runtime)
    restarts = service.executor.restarts
    long_job = service.submit(params("a long one", steps=60))
    queued = [service.submit(params(f"queued {i}")) for i in range(2)]
    wait_for_step(long_job, 1, timeout=240)
    os.kill(old_pid, 9)
    assert long_job.join(60)
    assert long_job.state == JobState.FAILED
    assert long_job.error == (f"the worker process was killed (signal 9, SIGKILL) while running job {long_job.id}")
    for job in queued:  # not lost: they run in the restarted worker
        assert job.wait(240).images and job.state == JobState.DONE
    assert service.executor.restarts == restarts + 1 and _worker_pid(runtime) != old_pid
    assert runtime.manager.current is not None and runtime.manager.current.title.startswith("tiny-sd1")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and sets RLIMIT_AS (Linux)")
def test_a_segfaulting_hook_fails_only_its_job(runtime: Runtime):
    job = runtime.service.submit(params("hostile:segfault"))
    assert job.join(240)
    assert job.state == JobState.FAILED
    assert "killed (signal 11, SIGSEGV) while running job" in (job.error or "")
    _next_job_works(runtime)


def test_a_hook_that_ignores_interrupt_gets_the_worker_restarted(runtime: Runtime):
    service = runtime.service
    old_pid = _worker_pid(runtime)
    job = service.submit(params("hostile:hang", steps=4))
    wait_for_step(job, 1, timeout=240)
    started = time.monotonic()
    assert service.interrupt(job.id)
    assert job.join(60)
    assert job.state == JobState.INTERRUPTED
    assert "ignored Interrupt for 2 s" in (job.error or "") and "restarted" in job.error
    assert time.monotonic() - started < 30
    assert any("ignored Interrupt" in w for w in job.result.warnings)
    _next_job_works(runtime)
    assert _worker_pid(runtime) != old_pid


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and sets RLIMIT_AS (Linux)")
def test_an_unbounded_allocation_is_reported_and_the_worker_goes_on(runtime: Runtime):
    job = runtime.service.submit(params("hostile:allocate"))
    assert job.join(240)
    # a failing hook is a job warning (the plugin contract); the cause is named either way
    text = " ".join([job.error or "", *(job.result.warnings if job.result else [])])
    assert "MemoryError" in text, text
    _next_job_works(runtime)


def test_a_worker_that_exits_names_the_exit_code(runtime: Runtime):
    job = runtime.service.submit(params("hostile:exit"))
    assert job.join(240)
    assert job.state == JobState.FAILED
    assert job.error == f"the worker process exited with code 7 while running job {job.id}"
    _next_job_works(runtime)


def test_a_restart_storm_stops_with_a_clear_error_then_recovers(runtime: Runtime):
    executor = runtime.service.executor
    executor.max_crashes, executor.cooldown_s = 2, 3.0
    try:
        crashing = [runtime.service.submit(params("hostile:exit")) for _ in range(2)]
        refused = runtime.service.submit(params("refused while the worker keeps crashing"))
        for job in crashing:
            assert job.join(240) and job.state == JobState.FAILED
        assert refused.join(240) and refused.state == JobState.FAILED
        assert "crashed 2 times in a row" in (refused.error or "") and "exited with code 7" in refused.error
        time.sleep(3.0)  # the cool-down passes: jobs are accepted again
        _next_job_works(runtime)
    finally:
        executor.max_crashes, executor.cooldown_s = 5, 60.0
