"""The built-in selectable scripts through the HTTP API with A1111's positional ``script_args``: listed in
/scripts and /script-info with A1111's args, and run by ``script_name`` on the tiny SD1 model (image counts,
grids, prompts and seeds per image, Loopback's strength per pass in the infotext, outpainting's output size);
bad args answer 422/400-style errors and the server keeps serving."""

from __future__ import annotations

import json

import pytest
import requests
from PIL import Image

from tests.api.test_api_server import FAST, b64_png, decode, server  # noqa: F401 - the module's server fixture

pytestmark = pytest.mark.slow


def _post(server, kind: str, **body) -> requests.Response:  # noqa: F811
    return requests.post(f"{server.api}/{kind}", json={**FAST, **body}, timeout=600)


def _ok(server, kind: str, **body) -> tuple[list[Image.Image], dict]:  # noqa: F811
    r = _post(server, kind, **body)
    assert r.status_code == 200, r.text
    data = r.json()
    return [decode(i) for i in data["images"]], json.loads(data["info"])


def _init() -> str:
    return b64_png(Image.new("RGB", (64, 64), (40, 120, 200)), prefix=True)


def test_scripts_are_listed_with_a1111_args(server):  # noqa: F811
    listed = requests.get(server.api + "/scripts", timeout=30).json()
    assert {"prompt matrix", "prompts from file or textbox"} <= set(listed["txt2img"])
    assert {"prompt matrix", "prompts from file or textbox", "loopback", "outpainting mk2",
            "poor man's outpainting"} <= set(listed["img2img"])
    assert "loopback" not in listed["txt2img"]
    info = requests.get(server.api + "/script-info", timeout=30).json()
    loop = next(s for s in info if s["name"] == "loopback")
    assert [a["label"] for a in loop["args"]] == ["Loops", "Final denoising strength", "Denoising strength curve",
                                                  "Append interrogated prompt at each iteration"]
    matrix = next(s for s in info if s["name"] == "prompt matrix")
    assert [a["value"] for a in matrix["args"]] == [False, False, "positive", "comma", 0]


def test_prompt_matrix(server):  # noqa: F811
    images, info = _ok(server, "txt2img", prompt="a house|red|tall", seed=20,
                       script_name="prompt matrix", script_args=[False, True, "positive", "comma", 0])
    assert len(images) == 5 and info["index_of_first_image"] == 1
    assert info["all_prompts"] == ["a house", "a house, red", "a house, tall", "a house, red, tall"]
    assert info["all_seeds"] == [20, 21, 22, 23]
    grid = images[0]
    assert grid.width > 128 and grid.height > 128  # 2x2 cells of 64 plus the label bands
    assert info["infotexts"][3].startswith("a house, tall\n") and "Seed: 22" in info["infotexts"][3]


def test_prompts_from_file(server):  # noqa: F811
    text = 'a fox\n--prompt "a dog" --steps 3 --cfg_scale 4 --width 128\n--prompt cat --negative_prompt dark'
    images, info = _ok(server, "txt2img", prompt="", seed=5, script_name="Prompts from file or textbox",
                       script_args=[False, True, "start", text])
    assert len(images) == 3
    assert info["all_prompts"] == ["a fox", "a dog", "cat"]
    assert info["all_seeds"] == [5, 5, 5]  # same seed for all lines
    assert images[1].size == (128, 64)
    assert "Steps: 3" in info["infotexts"][1] and "CFG scale: 4" in info["infotexts"][1]
    assert "Negative prompt: dark" in info["infotexts"][2]


def test_loopback(server):  # noqa: F811
    images, info = _ok(server, "img2img", init_images=[_init()], denoising_strength=0.3, seed=9,
                       script_name="Loopback", script_args=[3, 0.7, "Aggressive", "None"])
    assert len(images) == 4 and images[0].size == (192, 64)
    strengths = [t.split("Denoising strength: ")[1].split(",")[0] for t in info["infotexts"][1:]]
    assert [float(s) for s in strengths] == pytest.approx([0.3, 0.3 + 0.4 * 0.7071068, 0.7], abs=1e-3)
    assert all("Denoising curve: Aggressive" in t for t in info["infotexts"][1:])
    assert info["all_seeds"] == [9, 10, 11]


def test_outpainting(server):  # noqa: F811
    images, info = _ok(server, "img2img", init_images=[_init()], denoising_strength=0.8, seed=3,
                       script_name="Poor man's outpainting", script_args=[32, 4, 1, ["left", "right"]])
    assert [im.size for im in images] == [(128, 64)]
    images, info = _ok(server, "img2img", init_images=[_init()], denoising_strength=0.8, seed=3,
                       script_name="outpainting mk2", script_args=["", 64, 8, ["up"], 1.0, 0.05])
    assert [im.size for im in images] == [(64, 128)] and "Size: 64x128" in info["infotexts"][0]


def test_bad_script_args_are_clear_errors(server):  # noqa: F811
    r = _post(server, "txt2img", prompt="a|b", script_name="prompt matrix", script_args=[False, False, "sideways"])
    assert r.status_code >= 400 and "Select prompt" in r.text
    r = _post(server, "txt2img", prompt="x", script_name="loopback", script_args=[])
    assert r.status_code == 422 and "not found" in r.text  # img2img only
    r = _post(server, "img2img", init_images=[_init()], script_name="loopback", script_args=[2, 0.5, "Linear", "CLIP"])
    assert r.status_code >= 400 and "interrogator" in r.text
    assert requests.get(server.api + "/scripts", timeout=30).status_code == 200  # still serving
