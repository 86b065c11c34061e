"""Generate forever survives a crash of the real server (issue 17): a loop started through the job API keeps
producing images after `kill -9` and a restart, is listed by `/atelier/v1/loops`, and stops on DELETE."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests

from tests.api.test_api_server import Server
from tests.helpers import wait_until

pytestmark = pytest.mark.slow
LOOPS = "/atelier/v1/loops"
BODY = {"kind": "txt2img", "prompt": "a lighthouse", "steps": 2, "width": 64, "height": 64, "sampler_name": "Euler",
        "seed": -1}


def _pngs(data: Path) -> list[Path]:
    return sorted((data / "outputs").rglob("*.png"))


def _loop(server: Server, loop_id: str) -> dict:
    r = requests.get(f"{server.base}{LOOPS}/{loop_id}", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_forever_loop_resumes_after_kill_9_and_stops_on_delete(tiny_data_dir: Path, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data_dir / "models", data / "models", ignore=shutil.ignore_patterns("tiny-sd2v*", "tiny-sdxl*"))
    first = Server(data, tmp_path / "first.log")
    try:
        r = requests.post(first.base + LOOPS, json=BODY, timeout=120)
        assert r.status_code == 200, r.text
        loop_id = r.json()["id"]
        wait_until(lambda: len(_pngs(data)) >= 2, timeout=300, interval=0.3, message="the loop's first images")
        listed = requests.get(first.base + LOOPS, params={"state": "running"}, timeout=30).json()
        assert [row["id"] for row in listed] == [loop_id] and listed[0]["running_here"]
        first.proc.kill()  # SIGKILL: no cleanup at all
        first.proc.wait(30)
    finally:
        first.stop()
    before = len(_pngs(data))
    second = Server(data, tmp_path / "second.log")
    try:
        wait_until(lambda: len(_pngs(data)) >= before + 2, timeout=300, interval=0.3,
                   message=f"images after the restart:\n{second.log_tail()}")
        row = _loop(second, loop_id)
        assert row["state"] == "running" and row["running_here"] and row["params"]["prompt"] == "a lighthouse"
        assert row["generation"] >= 2 and row["last_job"]
        job = requests.get(f"{second.base}/atelier/v1/jobs/{row['last_job']}", timeout=30).json()
        assert job["origin"] == "forever" and job["state"] == "done" and job["images"]
        seeds = {p.name.split("-", 1)[1] for p in _pngs(data)}
        assert len(seeds) >= 3  # seed -1: a new random seed for each image, as A1111's generate forever
        r = requests.delete(f"{second.base}{LOOPS}/{loop_id}", timeout=30)
        assert r.status_code == 200 and r.json()["requested"] == "cancel", r.text
        wait_until(lambda: _loop(second, loop_id)["state"] == "stopped", timeout=120, interval=0.3)
        stopped = _loop(second, loop_id)
        assert stopped["stopped_by"] == "cancel" and not stopped["running_here"]
        settled = len(_pngs(data))
        assert requests.delete(f"{second.base}{LOOPS}/{loop_id}", timeout=30).status_code == 409
        assert requests.get(f"{second.base}{LOOPS}/loop-nope", timeout=30).status_code == 404
        bad = requests.post(second.base + LOOPS, json={**BODY, "steps": "many"}, timeout=30)
        assert bad.status_code == 422 and "steps" in bad.text
    finally:
        second.stop()
    assert len(_pngs(data)) == settled  # nothing generated after the stop
    third = Server(data, tmp_path / "third.log")  # a stopped loop does not come back
    try:
        assert requests.get(third.base + LOOPS, params={"state": "running"}, timeout=30).json() == []
    finally:
        third.stop()
