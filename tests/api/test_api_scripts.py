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


def test_xyz_plot_2x2x2(server):  # noqa: F811
    listed = requests.get(server.api + "/scripts", timeout=30).json()
    assert "x/y/z plot" in listed["txt2img"] and "x/y/z plot" in listed["img2img"]
    info = requests.get(server.api + "/script-info", timeout=30).json()
    xyz = {s["is_img2img"]: s for s in info if s["name"] == "x/y/z plot"}
    assert [a["label"] for a in xyz[False]["args"]][9:] == [
        "Draw legend", "Include Sub Images", "Include Sub Grids", "Keep -1 for seeds", "Vary seeds for X",
        "Vary seeds for Y", "Vary seeds for Z", "Grid margins (px)", "Use text inputs instead of dropdowns"]
    assert xyz[False]["args"][0]["choices"][11] == "Checkpoint name" and xyz[True]["args"][0]["choices"][10] == \
        "Checkpoint name"
    requests.post(server.api + "/options", json={"sd_checkpoint_cache": 0}, timeout=60)
    _ok(server, "txt2img", prompt="warm")  # the start-up load of tiny-sd1 is done and counted
    try:
        before = server.log.read_text(errors="replace").count("loaded checkpoint")
        args = [1, "3, 4", [], 4, "1-2", [], 11, "", ["tiny-sd2v", "tiny-sd1"],
                True, True, False, False, False, False, False, 0, False]
        images, info = _ok(server, "txt2img", prompt="a boat", seed=5, script_name="x/y/z plot", script_args=args)
        after = server.log.read_text(errors="replace").count("loaded checkpoint")
    finally:
        requests.post(server.api + "/options", json={"sd_checkpoint_cache": 2}, timeout=60)
    assert after - before == 2  # each checkpoint once: the checkpoint axis is the outer loop
    assert len(images) == 1 + 8 and all(im.size == (64, 64) for im in images[1:])
    grid = images[0]
    assert grid.size[0] == 2 * (2 * 64 + 48) and grid.size[1] > 2 * 64  # 2 sub grids with row labels, label bands
    assert grid.convert("L").crop((0, 0, grid.width, grid.height - 128)).getextrema() == (0, 255)  # legend text
    assert info["all_seeds"] == [3, 4, 3, 4, 3, 4, 3, 4] and len(info["infotexts"]) == 9
    assert "Z Type: Checkpoint name" in info["infotexts"][0] and "X Type: Seed" in info["infotexts"][0]
    assert "Model: tiny-sd2v" in info["infotexts"][1] and "Seed: 4" in info["infotexts"][2]
    assert "Steps: 2" in info["infotexts"][3] and "Model: tiny-sd1" in info["infotexts"][5]
    # Keep -1 for seeds: every cell draws its own seed
    keep = [4, "1, 1", [], 0, "", [], 0, "", [], False, True, False, True, False, False, False, 0, False]
    images, info = _ok(server, "txt2img", prompt="a boat", seed=-1, script_name="x/y/z plot", script_args=keep)
    assert len(images) == 3 and info["all_seeds"][0] != info["all_seeds"][1]
    r = _post(server, "txt2img", prompt="a boat", script_name="x/y/z plot", script_args=[7, "cat, dog"])
    assert r.status_code == 422 and "Prompt S/R did not find cat" in r.text
