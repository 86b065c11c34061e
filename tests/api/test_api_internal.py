"""A1111's leniency and internal routes, in-process on a real JobService with the test runners of
`test_api_inprocess`: `/internal/progress` by task id, `/internal/pending-tasks`, `/internal/sysinfo`, unknown
`/options` keys kept, warnings in `info`, error answers that do not echo the request."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from tests.api.test_api_inprocess import BODY, gate, setup  # noqa: F401 - `setup` is the fixture these tests use
from tests.helpers import wait_until


def _internal_progress(client, task: str, preview_id: int = -1) -> dict:
    r = client.post("/internal/progress", json={"id_task": task, "id_live_preview": preview_id})
    assert r.status_code == 200, r.text
    return r.json()


def test_internal_progress_by_task_id_and_pending_tasks(setup):  # noqa: F811
    client, runtime = setup
    result: dict = {}
    slow = threading.Thread(target=lambda: result.update(slow=client.post(
        "/sdapi/v1/txt2img", json={**BODY, "prompt": "slow", "force_task_id": "task(slow1)"})))
    slow.start()
    prog = wait_until(lambda: (p := _internal_progress(client, "task(slow1)"))["active"] and p["live_preview"] and p,
                      timeout=20, interval=0.02, message="the slow task reports its step")
    later = threading.Thread(target=lambda: result.update(later=client.post(
        "/sdapi/v1/txt2img", json={**BODY, "prompt": "after", "force_task_id": "task(next1)"})))
    later.start()
    wait_until(lambda: runtime.service.queue_size == 1, timeout=20, interval=0.02, message="the second task queues")
    # A1111's formula (no 0.01 offset here): job_no/job_count + step/steps/job_count
    assert prog["progress"] == pytest.approx(1 / 4 + 0.5 / 4) and prog["eta"] >= 0
    assert (prog["queued"], prog["completed"]) == (False, False)
    assert prog["live_preview"].startswith("data:image/png;base64,") and prog["id_live_preview"] >= 1
    again = _internal_progress(client, "task(slow1)", prog["id_live_preview"])
    assert again["live_preview"] is None and again["id_live_preview"] == prog["id_live_preview"]  # nothing new
    waiting = _internal_progress(client, "task(next1)")
    assert (waiting["active"], waiting["queued"], waiting["textinfo"]) == (False, True, "In queue: 1/1")
    assert client.get("/internal/pending-tasks").json() == {"size": 1, "tasks": ["task(next1)"]}
    unknown = _internal_progress(client, "task(nobody)")
    assert (unknown["active"], unknown["queued"], unknown["completed"], unknown["textinfo"]) == (
        False, False, False, "Waiting...")
    gate.set()
    slow.join(30)
    later.join(30)
    assert result["slow"].status_code == 200 and result["later"].status_code == 200
    for task in ("task(slow1)", "task(next1)"):
        done = _internal_progress(client, task)
        assert (done["active"], done["queued"], done["completed"]) == (False, False, True)
    assert client.get("/internal/pending-tasks").json() == {"size": 0, "tasks": []}


def test_sysinfo_masks_secrets(setup):  # noqa: F811
    client, runtime = setup
    runtime.args.api_auth = "user:hunter2"
    r = client.get("/internal/sysinfo")
    assert r.status_code == 200 and "hunter2" not in r.text
    info = r.json()
    assert {"Platform", "Python", "Version", "Commandline", "Config", "Packages", "Extensions"} <= set(info)
    assert info["Config"]["jpeg_quality"] == runtime.settings.get("jpeg_quality")
    assert any(p.startswith("fastapi==") for p in info["Packages"])
    r = client.get("/internal/sysinfo", params={"attachment": "true"})
    assert r.headers["content-disposition"].startswith('attachment; filename="sysinfo-')


def test_options_with_unknown_keys_apply_the_known_ones_and_keep_the_rest(setup, tmp_path, caplog):  # noqa: F811
    """Open WebUI and webuiapi post A1111 keys we do not have (return_grid, sd_lora, an extension's): A1111 keeps
    them in config.json; the known keys in the same request are applied."""
    client, runtime = setup
    body = {"jpeg_quality": 55, "return_grid": True, "sd_lora": "None", "face_restoration_model": None,
            "controlnet_model_cache_size": 2}
    with caplog.at_level(logging.WARNING):
        r = client.post("/sdapi/v1/options", json=body)
    assert r.status_code == 200, r.text
    assert runtime.settings.get("jpeg_quality") == 55
    saved = json.loads((tmp_path / "config.json").read_text())
    assert {k: saved[k] for k in body} == body
    assert {k: client.get("/sdapi/v1/options").json()[k] for k in body} == body
    assert "controlnet_model_cache_size" in caplog.text and "return_grid" in caplog.text
    # posted again (as clients post the whole GET /options back), the kept keys are simply accepted
    assert client.post("/sdapi/v1/options", json={**body, "return_grid": False}).status_code == 200
    assert json.loads((tmp_path / "config.json").read_text())["return_grid"] is False
    # a bad value of a known key still refuses the request, naming it (A1111 would store garbage)
    r = client.post("/sdapi/v1/options", json={"jpeg_quality": "high", "other_ext_key": 1})
    assert r.status_code == 422 and "jpeg_quality" in r.json()["errors"]
    assert "other_ext_key" not in json.loads((tmp_path / "config.json").read_text())


def test_unknown_keys_are_not_kept_while_settings_are_locked(setup, tmp_path):  # noqa: F811
    """An extension installed later may register such a key as a locked setting: while folder settings are locked,
    unknown keys are only logged; locked folder settings stay refused (403) as docs/SECURITY.md §3 says."""
    client, runtime = setup
    runtime.settings.restrict("listening on the network without --api-auth")
    r = client.post("/sdapi/v1/options", json={"jpeg_quality": 57, "myext_outdir": "/tmp/x", "outdir_myext": "/tmp"})
    assert r.status_code == 200, r.text
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["jpeg_quality"] == 57 and "myext_outdir" not in saved and "outdir_myext" not in saved
    r = client.post("/sdapi/v1/options", json={"jpeg_quality": 58, "outdir_samples": "/tmp/elsewhere"})
    assert r.status_code == 403 and runtime.settings.get("jpeg_quality") == 57


def test_missing_override_checkpoint_and_restore_faces_are_warnings_in_info(setup):  # noqa: F811
    client, runtime = setup
    r = client.post("/sdapi/v1/txt2img", json={**BODY, "prompt": "fine", "restore_faces": True,
                                                "override_settings": {"sd_model_checkpoint": "gamma"}})
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert len(r.json()["images"]) == 1
    assert any("restore_faces" in w for w in info["warnings"])
    assert any("sd_model_checkpoint: 'gamma' not found; using the current one" in w for w in info["warnings"])
    plain = json.loads(client.post("/sdapi/v1/txt2img", json={**BODY, "prompt": "fine"}).json()["info"])
    assert "warnings" not in plain  # A1111's keys only when nothing was left out


def test_error_answers_name_the_field_without_echoing_the_request(setup):  # noqa: F811
    client, _ = setup
    big = "x" * 50_000
    r = client.post("/sdapi/v1/txt2img", json={**BODY, "prompt": big, "steps": 0})
    assert r.status_code == 422
    err = r.json()
    assert set(err) == {"error", "detail", "body", "errors"} and err["body"] == ""
    assert "steps" in err["errors"] and big not in r.text and len(r.text) < 2000
    r = client.post("/sdapi/v1/img2img", json={**BODY, "init_images": ["A" * 40_000 + "!"]})
    assert r.status_code == 422 and "init_images[0]" in r.json()["errors"] and "A" * 1000 not in r.text


def test_batch_and_size_beyond_the_old_ranges_run(setup):  # noqa: F811
    """Open WebUI sends the admin's size (100x100) and its `n` as batch_size (up to 10): both run."""
    client, _ = setup
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "fine", "width": 100, "height": 100, "batch_size": 10,
                                                "steps": 151, "cfg_scale": 31})
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert (info["width"], info["height"], info["batch_size"], info["steps"]) == (96, 96, 10, 151)


def test_the_jobs_own_warnings_are_in_info_after_the_requests(setup):  # noqa: F811
    """A warning the job itself reports (the web UI shows it: SD3 without T5, a LoRA skipped, ...) reaches the
    A1111 answer's `info.warnings` after the request's own, and the job API's view of the job."""
    from tests.api.test_api_inprocess import generation_runner

    client, runtime = setup

    def warned(ctx):
        ctx.warn("SLG: this model has no joint transformer blocks; skip-layer guidance ignored")
        result = generation_runner(ctx)
        result.warnings.append("LoRA 'x' skipped: not for this model")
        return result

    runtime.service.register_runner("txt2img", warned)
    r = client.post("/sdapi/v1/txt2img", json={**BODY, "prompt": "fine", "restore_faces": True})
    assert r.status_code == 200, r.text
    warnings = json.loads(r.json()["info"])["warnings"]
    assert "restore_faces" in warnings[0]
    assert warnings[1:] == ["LoRA 'x' skipped: not for this model",
                            "SLG: this model has no joint transformer blocks; skip-layer guidance ignored"]
    job = client.post("/atelier/v1/jobs", json={"kind": "txt2img", **BODY, "prompt": "fine"}).json()
    view = wait_until(lambda: (v := client.get(f"/atelier/v1/jobs/{job['id']}").json())["state"] == "done" and v,
                      timeout=20, interval=0.05, message="the job finishes")
    assert view["warnings"][-1].startswith("SLG:")
