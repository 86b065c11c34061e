"""The server process does its own work without torch, diffusers or transformers (issue 17): building the runtime
and the app, serving the page and the read-only API lists. Generation (and its imports) belongs to the worker.

Each check runs in a fresh interpreter (the test process itself has torch loaded), with no extensions, on a data dir
holding the tiny SD checkpoints, VAE, LoRA and embedding, so the catalog really reads file headers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "diffusers", "transformers")

#: Built in a fresh process: the app is built (warm-up not started), GET routes are called, and what was imported
#: is printed as JSON on the last line.
SCRIPT = r"""
import json, sys
from fastapi.testclient import TestClient
from app.cli import parse_args
from app.runtime import Runtime

runtime = Runtime(parse_args(["--data-dir", sys.argv[2], "--api", "--test-server"], environ={}))
app = runtime.build_app()
runtime.resume_loops()  # what the server does once it answers: nothing to resume, so no job service
assert runtime.loops.ui_loop("txt2img").running is False  # what each page load asks
client = TestClient(app)
answers = {}
for path in sys.argv[3:]:
    response = client.get(path)
    answers[path] = [response.status_code, response.text]
print(json.dumps({"answers": answers, "modules": sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[1].split(","))}))
"""

ROUTES = ("/sdapi/v1/samplers", "/sdapi/v1/schedulers", "/sdapi/v1/sd-models", "/sdapi/v1/options",
          "/sdapi/v1/upscalers", "/sdapi/v1/loras", "/sdapi/v1/sd-vae", "/sdapi/v1/memory", "/sdapi/v1/cmd-flags",
          "/sdapi/v1/prompt-styles", "/sdapi/v1/sd-modules", "/sdapi/v1/realesrgan-models", "/sdapi/v1/scripts",
          "/sdapi/v1/script-info", "/sdapi/v1/latent-upscale-modes", "/internal/sysinfo", "/atelier/v1/loops", "/",
          "/config")


def _run(data_dir: Path, *routes: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(HEAVY), str(data_dir), *routes], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_server_builds_and_serves_lists_without_torch(tiny_data_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_data_dir / "models", data / "models")
    if (tiny_data_dir / "embeddings").is_dir():
        shutil.copytree(tiny_data_dir / "embeddings", data / "embeddings")
    out = _run(data, *ROUTES)
    answers = out["answers"]
    for path in ROUTES:
        assert answers[path][0] == 200, (path, answers[path][1][:500])
    samplers = [s["name"] for s in json.loads(answers["/sdapi/v1/samplers"][1])]
    assert "Euler a" in samplers and "DPM++ 2M" in samplers
    models = json.loads(answers["/sdapi/v1/sd-models"][1])
    assert models and {m["family"] for m in models} >= {"sd1"}, models  # the catalog read the headers
    options = json.loads(answers["/sdapi/v1/options"][1])
    assert options["sd_model_checkpoint"] in {m["title"] for m in models}
    assert "Lanczos" in [u["name"] for u in json.loads(answers["/sdapi/v1/upscalers"][1])]
    assert [lora["name"] for lora in json.loads(answers["/sdapi/v1/loras"][1])]
    assert "gradio" in answers["/"][1].lower() or "<html" in answers["/"][1].lower()
    assert json.loads(answers["/config"][1]).get("components")
    assert json.loads(answers["/atelier/v1/loops"][1]) == []
    assert out["modules"] == [], f"the server process imported {out['modules'][:10]}"


def test_empty_data_dir_serves_without_torch(tmp_path: Path) -> None:
    out = _run(tmp_path / "empty", "/", "/sdapi/v1/options", "/sdapi/v1/sd-models")
    assert [out["answers"][p][0] for p in ("/", "/sdapi/v1/options", "/sdapi/v1/sd-models")] == [200, 200, 200]
    assert out["modules"] == [], f"the server process imported {out['modules'][:10]}"
