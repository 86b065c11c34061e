"""The job API (/atelier/v1/jobs) against a real server on the tiny model: submit and return at once, follow by
server-sent events, fetch the saved image, list by state, cancel, move to the front, re-run, a full queue answers
429 with Retry-After, and the routes need the API credentials like /sdapi/ does."""

from __future__ import annotations

import io
import json
import shutil
import threading
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.api.test_api_server import Server
from tests.helpers import wait_until

pytestmark = pytest.mark.slow
JOBS = "/atelier/v1/jobs"
FAST = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "sampler_name": "Euler", "seed": 5}
SLOW = {**FAST, "steps": 12, "width": 128, "height": 128, "batch_size": 2}


def _data(tiny_data_dir: Path, tmp: Path, config: dict | None = None) -> Path:
    data = tmp / "data"
    shutil.copytree(tiny_data_dir / "models", data / "models", ignore=shutil.ignore_patterns("tiny-sd2v*", "tiny-sdxl*"))
    if config:
        (data / "config.json").write_text(json.dumps(config))
    return data


@pytest.fixture(scope="module")
def server(tiny_data_dir: Path, tmp_path_factory):
    tmp = Path(tmp_path_factory.mktemp("jobs-api"))
    srv = Server(_data(tiny_data_dir, tmp), tmp / "server.log")
    yield srv
    srv.stop()


def _submit(server, body: dict) -> dict:
    r = requests.post(server.base + JOBS, json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _events(server, job_id: str) -> list[tuple[str, dict]]:
    out = []
    with requests.get(f"{server.base}{JOBS}/{job_id}/events", stream=True, timeout=300) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append((event, json.loads(line[6:])))
    return out


def test_submit_follow_and_fetch_the_image(server):
    job = _submit(server, {"kind": "txt2img", **FAST})
    assert job["id"] and job["state"] == "queued"
    events = _events(server, job["id"])
    assert events[-1][0] == "done" and events[-1][1]["images"] == [f"{JOBS}/{job['id']}/images/0"]
    r = requests.get(server.base + events[-1][1]["images"][0], timeout=30)
    image = Image.open(io.BytesIO(r.content))
    assert image.size == (64, 64) and "Steps: 2" in image.info["parameters"]
    view = requests.get(f"{server.base}{JOBS}/{job['id']}", timeout=30).json()
    assert view["state"] == "done" and view["origin"] == "job-api" and view["params"]["prompt"] == "a cat"
    listed = requests.get(server.base + JOBS, params={"state": "done"}, timeout=30).json()
    assert job["id"] in [j["id"] for j in listed]
    assert requests.get(server.base + JOBS, params={"state": "nope"}, timeout=30).status_code == 422
    assert requests.get(f"{server.base}{JOBS}/task(missing)", timeout=30).status_code == 404


def test_cancel_front_and_retry(server):
    running = _submit(server, {"kind": "txt2img", **SLOW})
    queued = [_submit(server, {"kind": "txt2img", **FAST, "seed": i}) for i in range(3)]
    wait_until(lambda: requests.get(f"{server.base}{JOBS}/{running['id']}", timeout=30).json()["state"] == "running",
               timeout=120, interval=0.1)
    r = requests.post(f"{server.base}{JOBS}/{queued[2]['id']}/front", timeout=30)
    assert r.status_code == 200 and r.json()["position"] == 1
    r = requests.delete(f"{server.base}{JOBS}/{queued[1]['id']}", timeout=30)
    assert r.status_code == 200 and r.json()["requested"] == "cancel"
    _events(server, queued[0]["id"])  # waits until the last one finished
    states = {j: requests.get(f"{server.base}{JOBS}/{j}", timeout=30).json()["state"]
              for j in (running["id"], *(q["id"] for q in queued))}
    assert states == {running["id"]: "done", queued[0]["id"]: "done", queued[1]["id"]: "cancelled",
                      queued[2]["id"]: "done"}
    again = requests.post(f"{server.base}{JOBS}/{queued[1]['id']}/retry", timeout=30).json()
    assert again["retry_of"] == queued[1]["id"]
    assert _events(server, again["id"])[-1][0] == "done"
    assert requests.delete(f"{server.base}{JOBS}/{again['id']}", timeout=30).status_code == 409


def test_bad_requests_are_named(server):
    r = requests.post(server.base + JOBS, json={"kind": "video", **FAST}, timeout=30)
    assert r.status_code == 422 and "kind" in r.text
    r = requests.post(server.base + JOBS, json={"kind": "txt2img", "steps": "many"}, timeout=30)
    assert r.status_code == 422 and "steps" in r.text
    r = requests.post(server.base + JOBS, json={"kind": "img2img", **FAST}, timeout=30)
    assert r.status_code == 422 and "init_images" in r.text


def test_full_queue_is_429_with_retry_after(tiny_data_dir: Path, tmp_path: Path):
    srv = Server(_data(tiny_data_dir, tmp_path, {"job_queue_max": 1}), tmp_path / "server.log")
    try:
        first = _submit(srv, {"kind": "txt2img", **SLOW})
        wait_until(lambda: requests.get(f"{srv.base}{JOBS}/{first['id']}", timeout=30).json()["state"] == "running",
                   timeout=120, interval=0.1)
        _submit(srv, {"kind": "txt2img", **FAST})
        r = requests.post(srv.base + JOBS, json={"kind": "txt2img", **FAST}, timeout=30)
        assert r.status_code == 429 and r.headers.get("Retry-After") == "10" and "job_queue_max" in r.text
    finally:
        srv.stop()


def test_job_routes_need_the_api_credentials(tiny_data_dir: Path, tmp_path: Path):
    srv = Server(_data(tiny_data_dir, tmp_path), tmp_path / "server.log", "--api-auth", "me:secret")
    try:
        assert requests.get(srv.base + JOBS, timeout=30).status_code == 401
        assert requests.post(srv.base + JOBS, json={"kind": "txt2img", **FAST}, timeout=30).status_code == 401
        assert requests.get(srv.base + JOBS, auth=("me", "secret"), timeout=30).status_code == 200
    finally:
        srv.stop()


def test_many_clients_follow_their_jobs(server):
    ids = [_submit(server, {"kind": "txt2img", **FAST, "seed": 100 + i})["id"] for i in range(4)]
    results: dict[str, str] = {}

    def follow(job_id: str) -> None:
        results[job_id] = _events(server, job_id)[-1][0]

    threads = [threading.Thread(target=follow, args=(j,)) for j in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert results == {j: "done" for j in ids}
