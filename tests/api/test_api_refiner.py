"""The Refiner and A1111's built-in always-on scripts through the HTTP API (server + worker process, tiny models):
`refiner_checkpoint` runs the second model from the switch on (infotext, paste back through `infotext`), the built-in
always-on names are listed in /script-info with A1111's args and accepted (not applied, as A1111's API), and an unknown
always-on name stays a 422 while the server keeps serving."""

from __future__ import annotations

import json
import re

import pytest
import requests

from tests.api.test_api_server import FAST, server, txt2img  # noqa: F401 - the module's server fixture

pytestmark = pytest.mark.slow


def test_refiner_checkpoint_runs_and_round_trips(server):  # noqa: F811
    data = txt2img(server, seed=11, steps=4, refiner_checkpoint="tiny-sd2v", refiner_switch_at=0.5,
                   override_settings={"refiner_switch_by_sample_steps": True})
    info = json.loads(data["info"])
    text = info["infotexts"][0]
    assert re.search(r"Refiner: tiny-sd2v \[[0-9a-f]{10}\], Refiner switch at: 0.5,", text)
    assert "Model: tiny-sd1" in text and info["sd_model_name"] == "tiny-sd1"
    # the infotext pastes back: same refiner, same image
    r = requests.post(server.api + "/txt2img", json={"infotext": text}, timeout=300)  # no explicit field: all pasted
    assert r.status_code == 200, r.text
    assert json.loads(r.json()["info"])["infotexts"][0] == text and r.json()["images"] == data["images"]
    # an unknown refiner is named; the server keeps serving
    r = requests.post(server.api + "/txt2img", json={**FAST, "refiner_checkpoint": "nope"}, timeout=60)
    assert r.status_code == 422 and "refiner_checkpoint" in r.text


def test_builtin_alwayson_scripts_listed_and_accepted(server):  # noqa: F811
    info = requests.get(server.api + "/script-info", timeout=30).json()
    by_name = {(s["name"], s["is_img2img"]): s for s in info}
    seed = by_name[("seed", False)]
    assert seed["is_alwayson"] and [a["label"] for a in seed["args"]] == [
        "Seed", "Extra", "Variation seed", "Variation strength", "Resize seed from width", "Resize seed from height"]
    assert [a["label"] for a in by_name[("refiner", True)]["args"]] == ["Refiner", "Checkpoint", "Switch at"]
    assert [a["label"] for a in by_name[("sampler", False)]["args"]] == ["Sampling steps", "Sampling method",
                                                                        "Schedule type"]
    assert by_name[("extra options", False)]["args"] == []
    data = txt2img(server, seed=3, alwayson_scripts={"seed": {"args": [99]}, "Sampler": {"args": [2, "Euler"]},
                                                     "EXTRA OPTIONS": {"args": []}})
    out = json.loads(data["info"])
    assert out["all_seeds"] == [3]  # the request's seed: A1111's API does not run these scripts' setup()
    assert any("built-in Seed script" in w and "seed 99" in w for w in out["warnings"])
    r = requests.post(server.api + "/txt2img", json={**FAST, "alwayson_scripts": {"Nope": {"args": []}}}, timeout=60)
    assert r.status_code == 422 and "script 'Nope' not found" in r.text
    assert requests.get(server.api + "/sd-models", timeout=30).status_code == 200
