"""Durable generate-forever loops (app/jobs/loops.py): the loops table round trip, a loop's progress and end are
recorded, a loop left running by a stopped app resumes in a new one (and joins the UI tab's loop), a graceful stop
keeps it resumable, stopping ends it; each job a loop submits is an ordinary stored job of origin "forever"."""

from __future__ import annotations

import threading

from PIL import Image

from app.jobs.job import JobResult
from app.jobs.loops import ForeverLoops, LoopStore, has_running_loops
from app.jobs.service import JobService
from app.jobs.store import DB_NAME, JobStore
from app.params import GenerationParams, Img2ImgParams
from tests.helpers import wait_until


def _params(prompt: str = "a lighthouse", **kw) -> GenerationParams:
    return GenerationParams(prompt=prompt, steps=2, width=64, height=64, seed=-1, **kw)


class App:
    """One 'run' of the app: a job service and the loops over the job database in `folder`."""

    def __init__(self, folder, runner=None) -> None:
        self.seen: list[GenerationParams] = []
        self.gate = threading.Semaphore(1000)

        def run(ctx):
            self.gate.acquire()
            self.seen.append(ctx.params)
            return JobResult(infotexts=[ctx.params.prompt])

        self.jobs = JobStore(folder)
        self.service = JobService(runners={"txt2img": runner or run, "img2img": runner or run}, store=self.jobs)
        self.loops = ForeverLoops(lambda: self.service, LoopStore(self.jobs.path))

    def stop(self) -> None:
        """A graceful stop (what Runtime.shutdown does)."""
        self.loops.suspend_all()
        self.service.shutdown(wait=True, timeout=10)


def test_loop_store_round_trip_with_images(tmp_path):
    store = LoopStore(JobStore(tmp_path).path)
    init = Image.new("RGB", (16, 16), (200, 10, 10))
    params = _params("a red square", img2img=Img2ImgParams(init_images=[init], denoising_strength=0.4))
    loop_id = store.new_id()
    store.add(loop_id, "img2img", params, "ui")
    store.progress(loop_id, 3, "task(x)")
    assert has_running_loops(tmp_path / DB_NAME)
    row = LoopStore(tmp_path / DB_NAME).get(loop_id)  # a new connection, as after a restart
    assert row is not None and (row.kind, row.origin, row.state, row.generation, row.last_job) == (
        "img2img", "ui", "running", 3, "task(x)")
    assert row.params.prompt == "a red square" and row.params.seed == -1
    assert row.params.img2img.init_images[0].tobytes() == init.tobytes()
    assert [r.id for r in store.running()] == [loop_id]
    store.finish(loop_id, "cancel", None)
    stopped = store.get(loop_id)
    assert stopped.state == "stopped" and stopped.stopped_by == "cancel" and stopped.stopped is not None
    assert store.running() == [] and not has_running_loops(tmp_path / DB_NAME)
    assert stopped.as_json()["params"]["prompt"] == "a red square"


def test_no_database_no_running_loops(tmp_path):
    assert not has_running_loops(tmp_path / DB_NAME)
    JobStore(tmp_path)  # a job database from before loops existed: no loops table yet
    assert not has_running_loops(tmp_path / DB_NAME)


def test_loop_records_progress_and_its_jobs_are_stored(tmp_path):
    app = App(tmp_path)
    loop = app.loops.start(_params(), "txt2img", origin="job-api")
    wait_until(lambda: loop.snapshot().generation >= 3, timeout=30, message="three loop jobs")
    assert app.loops.stop(loop.loop_id)
    assert loop.wait(30)
    row = app.loops.store.get(loop.loop_id)
    assert row.state == "stopped" and row.stopped_by == "cancel" and row.generation >= 3
    jobs = [j for j in app.jobs.recent() if j.origin == "forever"]
    assert len(jobs) >= 3 and all(j.params.seed == -1 for j in jobs)  # a new random seed for each job
    assert row.last_job in {j.id for j in jobs}
    listed = app.loops.list()
    assert listed[0]["id"] == loop.loop_id and listed[0]["state"] == "stopped" and not listed[0]["running_here"]
    assert app.loops.stop(loop.loop_id) is False  # already stopped
    app.stop()


def test_loop_resumes_after_a_restart_and_ui_stop_ends_it(tmp_path):
    first = App(tmp_path)
    ui = first.loops.ui_loop("txt2img")
    ui.start(_params("an owl"))
    loop_id = ui.loop_id
    wait_until(lambda: ui.snapshot().generation >= 2, timeout=30)
    first.stop()  # graceful: the loop stays stored as running
    assert first.loops.store.get(loop_id).state == "running"
    done_before = first.loops.store.get(loop_id).generation

    second = App(tmp_path)
    assert second.loops.resume() == [loop_id]
    resumed = second.loops.ui_loop("txt2img")  # the UI tab's Cancel reaches the resumed loop
    assert resumed.loop_id == loop_id and resumed.running
    wait_until(lambda: len(second.seen) >= 2, timeout=30, message="the resumed loop keeps generating")
    assert {p.prompt for p in second.seen} == {"an owl"}
    resumed.cancel()
    assert resumed.wait(30)
    row = second.loops.store.get(loop_id)
    assert row.state == "stopped" and row.stopped_by == "cancel" and row.generation >= done_before + 2
    assert second.loops.resume() == []  # nothing left to resume
    second.stop()


def test_interrupt_stops_at_once_and_a_killed_app_resumes(tmp_path):
    release = threading.Event()

    def slow(ctx):
        release.wait(30)
        return JobResult(infotexts=[ctx.params.prompt])

    first = App(tmp_path, runner=slow)
    loop = first.loops.start(_params("a fox"), "txt2img")
    wait_until(lambda: first.service.current is not None, timeout=30)
    # the app "dies" here: nothing more is written; a new App on the same file is the restarted app
    second = App(tmp_path)
    second.service.restore()
    assert second.loops.resume() == [loop.loop_id]
    wait_until(lambda: len(second.seen) >= 2, timeout=30)
    assert second.loops.stop(loop.loop_id, interrupt=True)
    wait_until(lambda: second.loops.store.get(loop.loop_id).state == "stopped", timeout=30)
    assert second.loops.store.get(loop.loop_id).stopped_by == "interrupt"
    release.set()
    first.loops.suspend_all()
    first.service.shutdown(wait=False)
    second.stop()
