"""The durable job queue (app/jobs/store.py) and the service's restart semantics: queued jobs come back in order,
a job that was running is marked interrupted with the reason, finished jobs stay listed, img2img images survive,
a corrupt database is kept aside and the app starts with an empty queue; retry and move-to-front."""

from __future__ import annotations

import sqlite3
import threading

from PIL import Image

from app.jobs.job import JobResult
from app.jobs.service import JobService
from app.jobs.store import DB_NAME, JobStore
from app.params import GenerationParams, Img2ImgParams
from tests.helpers import wait_until


def _params(prompt: str, **kw) -> GenerationParams:
    return GenerationParams(prompt=prompt, steps=2, width=64, height=64, **kw)


def test_store_round_trip_with_images(tmp_path):
    store = JobStore(tmp_path)
    init = Image.new("RGB", (32, 32), (10, 200, 30))
    mask = Image.new("L", (32, 32), 255)
    svc = JobService(runners={"img2img": lambda ctx: JobResult()}, store=store)
    params = _params("a fox", img2img=Img2ImgParams(init_images=[init], mask=mask, denoising_strength=0.3))
    job = svc.submit(params, kind="img2img", origin="api")
    job.wait(30)
    svc.shutdown()
    row = JobStore(tmp_path).get(job.id)
    assert row is not None and row.state == "done" and row.origin == "api" and row.kind == "img2img"
    assert row.params.prompt == "a fox" and row.params.img2img.denoising_strength == 0.3
    assert row.params.img2img.init_images[0].tobytes() == init.tobytes()
    assert row.params.img2img.mask.tobytes() == mask.tobytes()
    assert row.as_json()["params"]["prompt"] == "a fox"


def test_restart_requeues_in_order_and_interrupts_the_running_job(tmp_path):
    release = threading.Event()
    started = threading.Event()

    def blocking(ctx):
        started.set()
        release.wait(30)
        return JobResult(infotexts=[ctx.params.prompt])

    first = JobService(runners={"txt2img": blocking}, store=JobStore(tmp_path))
    jobs = [first.submit(_params(f"p{i}"), origin="api") for i in range(4)]
    assert started.wait(30)
    # the app dies here: nothing more is written (a new store on the same file is the restarted app)
    ran: list[str] = []
    second = JobService(runners={"txt2img": lambda ctx: (ran.append(ctx.params.prompt), JobResult())[1]},
                        store=JobStore(tmp_path))
    restored = second.restore()
    assert restored["interrupted"] == [jobs[0].id]
    assert restored["requeued"] == [j.id for j in jobs[1:]]
    wait_until(lambda: len(ran) == 3, timeout=30)
    assert ran == ["p1", "p2", "p3"]
    rows = {r.id: r for r in JobStore(tmp_path).recent()}
    assert rows[jobs[0].id].state == "interrupted" and "stopped" in rows[jobs[0].id].error
    wait_until(lambda: all(JobStore(tmp_path).get(j.id).state == "done" for j in jobs[1:]), timeout=30)
    # the interrupted job can be re-run with one call
    again = second.retry(jobs[0].id)
    again.wait(30)
    assert ran[-1] == "p0" and again.id != jobs[0].id
    release.set()
    first.shutdown(wait=False)
    second.shutdown()


def test_corrupt_database_is_kept_aside_and_the_queue_starts_empty(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"this is not a database" * 100)
    store = JobStore(tmp_path)
    assert store.problem is not None and "kept as" in store.problem
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(DB_NAME + ".corrupt-")]
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not a database")
    assert store.recent() == [] and store.pending() == []
    svc = JobService(runners={"txt2img": lambda ctx: JobResult()}, store=store)
    svc.submit(_params("after")).wait(30)
    assert [r.state for r in store.recent()] == ["done"]
    svc.shutdown()


def test_wal_mode_and_failed_jobs_keep_their_error(tmp_path):
    store = JobStore(tmp_path)

    def broken(ctx):
        raise ValueError("the prompt is cursed")

    svc = JobService(runners={"txt2img": broken}, store=store)
    job = svc.submit(_params("x"))
    job.join(30)
    svc.shutdown()
    row = store.get(job.id)
    assert row.state == "failed" and "cursed" in row.error
    mode = sqlite3.connect(tmp_path / DB_NAME).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_move_to_front_survives_a_restart(tmp_path):
    release = threading.Event()
    svc = JobService(runners={"txt2img": lambda ctx: (release.wait(30), JobResult())[1]}, store=JobStore(tmp_path))
    jobs = [svc.submit(_params(f"q{i}")) for i in range(4)]
    store = JobStore(tmp_path)
    # the worker takes the job, then records it as running: wait for the record, not only for the take
    wait_until(lambda: svc.current is not None and store.get(jobs[0].id).state == "running", timeout=30)
    assert svc.move_to_front(jobs[3].id) and not svc.move_to_front("task(nope)")
    assert svc.position(jobs[3].id) == 1
    order = [r.id for r in JobStore(tmp_path).pending()]
    assert order == [jobs[3].id, jobs[1].id, jobs[2].id]
    release.set()
    svc.shutdown()


def test_custom_jobs_are_never_stored(tmp_path):
    store = JobStore(tmp_path)
    svc = JobService(runners={}, store=store)
    assert svc.run_exclusive(lambda: 42) == 42
    assert store.recent() == []
    svc.shutdown()


def test_a_graceful_stop_keeps_the_queue(tmp_path):
    release = threading.Event()
    svc = JobService(runners={"txt2img": lambda ctx: (release.wait(5), JobResult())[1]}, store=JobStore(tmp_path))
    jobs = [svc.submit(_params(f"g{i}")) for i in range(3)]
    wait_until(lambda: svc.current is not None, timeout=30)
    release.set()
    svc.shutdown()  # Ctrl+C / restart: the queued jobs are not lost
    assert [r.id for r in JobStore(tmp_path).pending()] == [j.id for j in jobs[1:]]


def test_queue_tab_rows_and_actions(tmp_path):
    from types import SimpleNamespace

    from app.ui.queue_tab import queue_action, queue_rows

    release = threading.Event()
    svc = JobService(runners={"txt2img": lambda ctx: (release.wait(30), JobResult())[1]}, store=JobStore(tmp_path))
    ctx = SimpleNamespace(service=svc)
    jobs = [svc.submit(_params(f"prompt {i}"), origin="ui") for i in range(3)]
    wait_until(lambda: svc.current is not None, timeout=30)
    rows = queue_rows(ctx)
    assert [r[0] for r in rows] == [j.id for j in jobs] and [r[2] for r in rows] == ["running", "queued", "queued"]
    assert rows[1][3] == "ui" and rows[1][4] == "prompt 1"
    assert "runs next" in queue_action(ctx, "front", jobs[2].id)
    assert [r[0] for r in queue_rows(ctx)][1] == jobs[2].id
    assert "cancel requested" in queue_action(ctx, "cancel", jobs[1].id)
    assert "Pick a job" in queue_action(ctx, "cancel", "")
    release.set()
    wait_until(lambda: svc.queue_size == 0 and svc.current is None, timeout=30)
    message = queue_action(ctx, "rerun", jobs[1].id)
    assert "queued again" in message
    svc.shutdown()
