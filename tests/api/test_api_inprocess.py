"""API routes in-process on a real JobService with small test runners: error mapping, the progress formula,
missing runners (501), the queued checkpoint switch. No models, no torch work: fast."""

from __future__ import annotations

import base64
import io
import json
import threading
import types
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from app.api import create_api_router
from app.jobs.info import INFO_KEYS
from app.jobs.job import JobResult
from app.jobs.service import JobService
from app.settings import Settings
from tests.helpers import wait_until


class NoExtrasService(JobService):
    def runner_for(self, kind: str):
        if kind == "extras":
            raise ValueError("no runner for job kind 'extras'")
        return super().runner_for(kind)


HASH = "0123456789" + "a" * 54


class FakeCatalog:
    """Two checkpoints; a loaded one gets its hash in the title (as the real catalog after `ensure_hash`)."""

    names = ("alpha.safetensors", "broken.safetensors")

    def __init__(self) -> None:
        self.hashed: set[str] = set()

    def _info(self, name: str):
        hashed = name in self.hashed
        return types.SimpleNamespace(title=f"{name} [{HASH[:10]}]" if hashed else name, sha256=HASH if hashed else None)

    def find_checkpoint(self, search):
        name = next((n for n in self.names if search and (search in n or search.startswith(n))), None)
        return self._info(name) if name else None

    def checkpoints(self):
        return [self._info(n) for n in self.names]


class FakeManager:
    """Loads nothing: records which thread asked for which checkpoint."""

    def __init__(self, catalog: FakeCatalog) -> None:
        self.catalog = catalog
        self.current = None
        self.calls: list[tuple[str, str]] = []

    def get(self, title: str):
        self.calls.append((title, threading.current_thread().name))
        if "broken" in title:
            raise RuntimeError(f"could not load checkpoint {title}")
        name = self.catalog.find_checkpoint(title).title.split(" [")[0]
        self.catalog.hashed.add(name)
        info = self.catalog.find_checkpoint(name)
        self.current = types.SimpleNamespace(title=info.title, sha256=info.sha256, info=info)
        return self.current


gate = threading.Event()


def generation_runner(ctx) -> JobResult:
    prompt = ctx.params.prompt
    if prompt == "value":
        raise ValueError("width 12 is not supported")
    if prompt == "lookup":
        raise LookupError("checkpoint 'x' not found")
    if prompt == "boom":
        raise RuntimeError("something broke")
    if prompt == "key":
        raise KeyError("unet")
    if prompt == "slow":
        ctx.begin(job_count=4, sampling_steps=10)
        ctx.set_job_no(1)
        ctx.step(5, 10)
        ctx.set_preview(Image.new("RGB", (8, 8), (1, 2, 3)))
        gate.wait(30)
    image = Image.new("RGB", (ctx.params.width, ctx.params.height), (9, 9, 9))
    return JobResult(images=[image], infotexts=["p\nSteps: 1"], seeds=[ctx.params.seed.seed], subseeds=[1],
                     all_prompts=[prompt], all_negative_prompts=[""])


@pytest.fixture()
def setup(tmp_path):
    settings = Settings(tmp_path / "config.json")
    service = NoExtrasService(settings=settings)
    service.register_runner("txt2img", generation_runner)
    service.start()
    catalog = FakeCatalog()
    manager = FakeManager(catalog)
    runtime = types.SimpleNamespace(
        args=types.SimpleNamespace(api_log=False, api_server_stop=False, api_auth=None),
        settings=settings, catalog=catalog, paths=types.SimpleNamespace(styles_file=Path(tmp_path / "s.csv")),
        service=service, manager=manager,
    )
    app = FastAPI()
    app.state.runtime = runtime  # as app.server.build_app does
    app.include_router(create_api_router(runtime))
    yield TestClient(app), runtime
    gate.set()
    service.shutdown(wait=True, timeout=10)
    gate.clear()


BODY = {"width": 64, "height": 64, "steps": 2}


@pytest.mark.parametrize(("prompt", "status", "error", "needle"), [
    ("value", 422, "ValueError", "width 12"),
    ("lookup", 404, "LookupError", "checkpoint 'x'"),
    ("boom", 500, "RuntimeError", "something broke"),
    ("key", 500, "KeyError", "unet"),
])
def test_failed_jobs_map_to_statuses(setup, prompt, status, error, needle):
    client, _ = setup
    r = client.post("/sdapi/v1/txt2img", json={**BODY, "prompt": prompt})
    assert r.status_code == status
    body = r.json()
    assert body["error"] == error and needle in body["errors"]
    assert body["body"] == ""  # the request is not echoed (it may hold megabytes of base64 images)
    assert "X-Process-Time" in r.headers
    ok = client.post("/sdapi/v1/txt2img", json={**BODY, "prompt": "fine", "seed": 3})
    assert ok.status_code == 200 and len(ok.json()["images"]) == 1  # the worker and the server keep going


def test_info_has_every_key_even_when_the_runner_gives_none(setup):
    client, _ = setup
    info = json.loads(client.post("/sdapi/v1/txt2img", json={**BODY, "prompt": "x", "seed": 12}).json()["info"])
    assert list(info) == list(INFO_KEYS)
    assert info["seed"] == 12 and info["all_seeds"] == [12] and info["infotexts"] == ["p\nSteps: 1"]


def test_missing_runner_is_501(setup):
    client, _ = setup
    r = client.post("/sdapi/v1/extra-single-image", json={"image": ""})
    assert r.status_code == 422  # the image is checked first
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    image = base64.b64encode(buf.getvalue()).decode()
    r = client.post("/sdapi/v1/extra-single-image", json={"image": image, "upscaler_1": "Lanczos"})
    assert r.status_code == 501 and "extras" in r.json()["errors"] and "app/engine/modes/extras.py" in r.json()["errors"]


def test_progress_formula_preview_and_controls(setup):
    client, runtime = setup
    result = {}
    worker = threading.Thread(target=lambda: result.update(r=client.post("/sdapi/v1/txt2img",
                                                                         json={**BODY, "prompt": "slow"})))
    worker.start()
    queued = threading.Thread(target=lambda: result.update(q=client.post("/sdapi/v1/txt2img",
                                                                         json={**BODY, "prompt": "after"})))
    for _ in range(200):
        prog = client.get("/sdapi/v1/progress").json()
        if prog["state"]["sampling_step"] == 5 and prog["current_image"]:
            break
        threading.Event().wait(0.02)
    queued.start()
    for _ in range(200):
        if runtime.service.queue_size:
            break
        threading.Event().wait(0.02)
    prog = client.get("/sdapi/v1/progress").json()
    # A1111: 0.01 + job_no/job_count + (1/job_count) * step/steps
    assert prog["progress"] == pytest.approx(0.01 + 1 / 4 + 0.25 * 0.5)
    state = prog["state"]
    assert (state["job_count"], state["job_no"], state["sampling_step"], state["sampling_steps"]) == (4, 1, 5, 10)
    assert prog["queue_size"] == 1 and prog["current_image"] and len(state["job_timestamp"]) == 14
    assert client.post("/sdapi/v1/skip").json() is None
    assert client.get("/sdapi/v1/progress").json()["state"]["skipped"] is True
    assert client.post("/sdapi/v1/interrupt").json() == {}
    assert client.get("/sdapi/v1/progress").json()["state"]["interrupted"] is True
    gate.set()
    worker.join(30)
    queued.join(30)
    assert result["r"].status_code == 200 and result["q"].status_code == 200
    idle = client.get("/sdapi/v1/progress").json()
    assert (idle["progress"], idle["eta_relative"], idle["state"]["job_count"], idle["queue_size"]) == (0, 0, 0, 0)


def test_checkpoint_switch_runs_on_the_worker(setup, tmp_path):
    client, runtime = setup
    r = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "alpha", "jpeg_quality": 60})
    assert r.status_code == 200, r.text
    assert runtime.manager.calls == [("alpha.safetensors", runtime.service._thread.name)]
    assert runtime.settings.get("sd_model_checkpoint") == "alpha.safetensors [0123456789]"
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["jpeg_quality"] == 60 and saved["sd_checkpoint_hash"].startswith("0123456789")
    opts = client.get("/sdapi/v1/options").json()
    assert (opts["sd_model_checkpoint"], opts["sd_checkpoint_hash"]) == ("alpha.safetensors [0123456789]", HASH)
    r = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "broken", "jpeg_quality": 70})
    assert r.status_code == 500 and "could not load checkpoint broken.safetensors" in r.json()["errors"]
    assert runtime.settings.get("jpeg_quality") == 60  # nothing changed
    r = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "gamma"})
    assert r.status_code == 422 and "alpha.safetensors [0123456789], broken.safetensors" in r.json()["errors"]


def test_frozen_settings_refuse_changes(setup):
    client, runtime = setup
    runtime.settings.frozen = True
    r = client.post("/sdapi/v1/options", json={"jpeg_quality": 61})
    assert r.status_code == 403 and "freeze-settings" in r.json()["errors"]


def test_server_control_routes_need_the_flag(setup):
    client, _ = setup
    assert client.post("/sdapi/v1/server-stop").status_code == 404
    assert client.post("/sdapi/v1/interrogate", json={"image": "", "model": "clip"}).status_code == 422


def test_create_api_router_loads_no_engine():
    import subprocess
    import sys

    code = ("import sys, types, app.api\n"
            "rt = types.SimpleNamespace(args=types.SimpleNamespace(api_server_stop=True))\n"
            "router = app.api.create_api_router(rt)\n"
            "print(len(router.routes) > 30, 'torch' in sys.modules, 'app.engine' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout.split()
    assert out == ["True", "False", "False"]  # building the router touches no model code


def test_alwayson_plugin_through_the_api(setup, tmp_path):
    """A native plugin from the plugins test fixtures: listed by /script-info, its args validated by the API."""
    import shutil

    from app.plugins import load_extensions

    client, runtime = setup
    ext_dir = tmp_path / "extensions"
    shutil.copytree(Path(__file__).resolve().parents[1] / "fixtures" / "extensions" / "native-plugin", ext_dir / "native-plugin")
    runtime.plugins = load_extensions(extensions_dir=ext_dir, settings=runtime.settings, make_current=False)
    info = {s["name"]: s for s in client.get("/sdapi/v1/script-info").json()}
    assert info["step cap"]["is_alwayson"] is True
    assert [a["label"] for a in info["step cap"]["args"]] == ["Maximum steps", "Interrupt at step"]
    ok = client.post("/sdapi/v1/txt2img", json={**BODY, "prompt": "x", "alwayson_scripts": {"Step Cap": {"args": [3]}}})
    assert ok.status_code == 200, ok.text
    bad = client.post("/sdapi/v1/txt2img", json={**BODY, "alwayson_scripts": {"step cap": {"args": [500]}}})
    assert bad.status_code == 422 and "max_steps" in bad.json()["errors"]
    unknown = client.post("/sdapi/v1/txt2img", json={**BODY, "alwayson_scripts": {"controlnet": {"args": []}}})
    assert unknown.status_code == 422 and "Step cap" in unknown.json()["errors"]


def test_scripts_list_has_the_alwayson_scripts_too(setup, tmp_path):
    """A1111's /scripts lists every script of the tab that has a UI (`scripts_txt2img.scripts`, lower-cased titles):
    the selectable ones, its built-in always-on Refiner / Seed / Sampler / Extra options, and extensions' always-on."""
    import shutil

    from app.plugins import load_extensions

    client, runtime = setup
    ext_dir = tmp_path / "extensions"
    shutil.copytree(Path(__file__).resolve().parents[1] / "fixtures" / "extensions" / "native-plugin", ext_dir / "native-plugin")
    runtime.plugins = load_extensions(extensions_dir=ext_dir, settings=runtime.settings, make_current=False)
    listed = client.get("/sdapi/v1/scripts").json()
    info = client.get("/sdapi/v1/script-info").json()
    for kind, is_img2img in (("txt2img", False), ("img2img", True)):
        assert sorted({s["name"] for s in info if s["is_img2img"] == is_img2img}) == listed[kind]
        assert {"refiner", "seed", "sampler", "extra options", "step cap", "prompt matrix", "x/y/z plot"} <= set(
            listed[kind])
    assert "loopback" in listed["img2img"] and "loopback" not in listed["txt2img"]


def test_many_waiting_clients_do_not_starve_the_pool(setup):
    """More waiting generations than FastAPI's 40 pool threads: quick sync routes still answer, all finish."""
    import concurrent.futures
    import time

    client, runtime = setup

    def generate(i: int) -> int:
        prompt = "slow" if i == 0 else f"p{i}"
        return client.post("/sdapi/v1/txt2img", json={**BODY, "prompt": prompt}).status_code

    assert generate(1) == 200  # warm: the first request imports the sampler table
    with concurrent.futures.ThreadPoolExecutor(45) as pool:
        futures = [pool.submit(generate, 0)]
        wait_until(lambda: runtime.service.current is not None, timeout=60, message="the slow job runs")
        futures += [pool.submit(generate, i) for i in range(1, 45)]
        wait_until(lambda: runtime.service.queue_size >= 44, timeout=60, message="44 jobs queued")
        assert runtime.service.queue_size == 44
        started = time.time()
        assert client.get("/sdapi/v1/latent-upscale-modes").status_code == 200  # a plain `def` route
        assert time.time() - started < 5
        gate.set()
        assert [f.result() for f in futures] == [200] * 45
