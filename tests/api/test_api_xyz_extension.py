"""Extensions' X/Y/Z plot axes end to end: a server (`python -m app --nowebui`, its worker process) with the
tests/fixtures/extensions/xyz-axis extension, which adds axes the way ADetailer does. They are listed after
Atelier's own axes in /script-info, and a plot over them through the API shows each cell's value reaching the
extension's always-on script (its infotext entries) and A1111's fields."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import requests

from app.xyz.axes import axes_for
from tests.api.test_api_server import FAST, Server, decode

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "extensions" / "xyz-axis"
EXT_LABELS = ["[XyzExt] Note", "[XyzExt] Mood", "[XyzExt] CFG", "[XyzExt] Greeting"]


@pytest.fixture(scope="module")
def server(tiny_data_dir, tmp_path_factory):
    data = tmp_path_factory.mktemp("xyz-ext-data") / "data"
    shutil.copytree(tiny_data_dir, data)
    shutil.copytree(FIXTURE, data / "extensions" / "xyz-axis")
    srv = Server(data, data.parent / "server.log")
    yield srv
    srv.stop()


def _plot(server, x_type, x_values, x_drop=(), y_type=0, y_values="", **body):  # noqa: ANN001
    args = [x_type, x_values, list(x_drop), y_type, y_values, [], 0, "", [],
            True, True, False, False, False, False, False, 0, False]
    return requests.post(f"{server.api}/txt2img", timeout=600, json={
        **FAST, "prompt": "a boat", "seed": 5, "script_name": "x/y/z plot", "script_args": args,
        "alwayson_scripts": {"XyzExt": {"args": [True, "plain", "hello"]}}, **body})


def test_extension_axes_are_listed_after_ours(server):
    info = requests.get(server.api + "/script-info", timeout=30).json()
    xyz = {s["is_img2img"]: s for s in info if s["name"] == "x/y/z plot"}
    txt, img = xyz[False]["args"][0]["choices"], xyz[True]["args"][0]["choices"]
    ours_txt, ours_img = [a.label for a in axes_for("txt2img")], [a.label for a in axes_for("img2img")]
    assert txt == ours_txt + EXT_LABELS  # A1111's indices, then "Shift", then the extension's, in its order
    assert img == ours_img + EXT_LABELS[:3]  # "[XyzExt] Greeting" is an AxisOptionTxt2Img


def test_extension_axes_reach_each_cell(server):
    ours = len(axes_for("txt2img"))
    note, mood, cfg, greeting = range(ours, ours + 4)
    r = _plot(server, note, "alpha, beta", y_type=cfg, y_values="4, 6")
    assert r.status_code == 200, r.text
    data = r.json()
    info = json.loads(data["info"])
    images = [decode(i) for i in data["images"]]
    assert len(images) == 1 + 4 and len(info["infotexts"]) == 5
    grid_text, cells = info["infotexts"][0], info["infotexts"][1:]
    assert "X Type: [XyzExt] Note" in grid_text and "Y Type: [XyzExt] CFG" in grid_text
    assert ["XyzExt note: alpha" in t for t in cells] == [True, False, True, False]
    assert ["XyzExt note: beta" in t for t in cells] == [False, True, False, True]
    assert ["CFG scale: 4.0" in t and "XyzExt cfg: 4.0" in t for t in cells] == [True, True, False, False]
    assert ["CFG scale: 6.0" in t and "XyzExt cfg: 6.0" in t for t in cells] == [False, False, True, True]
    # a dropdown axis (its choices() values) and an axis writing the script's own p.script_args slot
    r = _plot(server, mood, "", ["loud", "calm"], y_type=greeting, y_values="hi, yo")
    assert r.status_code == 200, r.text
    cells = json.loads(r.json()["info"])["infotexts"][1:]
    assert ["XyzExt mood: loud" in t for t in cells] == [True, False, True, False]
    assert ["XyzExt greeting: hi" in t for t in cells] == [True, True, False, False]
    assert all("XyzExt note: plain" in t for t in cells)  # the request's own value where no axis changes it
    # the extension's confirm() refuses a value before anything runs; the server keeps serving
    bad = _plot(server, mood, "calm, angry")
    assert bad.status_code == 422 and "unknown mood: angry" in bad.text
    assert requests.get(server.api + "/scripts", timeout=30).status_code == 200
