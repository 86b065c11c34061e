"""The durable queue with a real server: kill -9 the whole server with jobs queued; after the restart they run,
and the job that was running is marked interrupted (issue 17's fault test, on the tiny model)."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.api.test_api_server import Server
from tests.helpers import wait_until

pytestmark = pytest.mark.slow
SLOW = {"prompt": "a cat", "steps": 12, "width": 128, "height": 128, "sampler_name": "Euler", "batch_size": 2,
        "seed": 1}


def _states(data: Path) -> list[tuple[str, str]]:
    db = data / "jobs.sqlite3"
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("SELECT id, state FROM jobs WHERE kind = 'txt2img' ORDER BY seq").fetchall()
    except sqlite3.OperationalError:  # the server has not created the table yet
        return []


def _post(url: str) -> None:
    try:
        requests.post(url, json=SLOW, timeout=600)
    except requests.RequestException:  # the server is killed while these wait: expected
        pass


def test_kill_9_with_jobs_queued_then_they_run_after_restart(tiny_data_dir: Path, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data_dir / "models", data / "models", ignore=shutil.ignore_patterns("tiny-sd2v*", "tiny-sdxl*"))
    server = Server(data, tmp_path / "first.log")
    try:
        threads = [threading.Thread(target=_post, args=(server.api + "/txt2img",), daemon=True) for _ in range(6)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        wait_until(lambda: len(_states(data)) == 6 and ("running" in {s for _, s in _states(data)}), timeout=120,
                   interval=0.02)
        before = _states(data)
        assert sum(s == "queued" for _, s in before) >= 4
        server.proc.kill()  # SIGKILL: no cleanup at all
        server.proc.wait(30)
    finally:
        server.stop()
    restarted = Server(data, tmp_path / "second.log")
    try:
        wait_until(lambda: all(s in ("done", "interrupted") for _, s in _states(data)), timeout=600, interval=0.5)
        after = dict(_states(data))
        for job_id, state in before:
            if state == "running":
                assert after[job_id] == "interrupted"
            elif state == "queued":
                assert after[job_id] == "done"
        pngs = list((data / "outputs").rglob("*.png"))
        assert len(pngs) >= 2 * sum(s == "queued" for _, s in before)  # their images were saved
        assert requests.get(restarted.base + "/internal/ping", timeout=10).status_code == 200
    finally:
        restarted.stop()
