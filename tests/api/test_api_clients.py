"""Real A1111 clients' calls, replayed against a real server (`python -m app --nowebui`) on the tiny models.

Each flow sends exactly what the client's public source sends and reads what it reads:
- SillyTavern `src/endpoints/stable-diffusion.js` (server side) with the body built by
  `public/scripts/extensions/stable-diffusion/index.js` `generateAutoImage`: the lists it loads, `set-model`
  (POST /options, then polls /progress until idle), `generate` (its whole request body forwarded to /txt2img,
  `url` and `auth` included, with `restore_faces`, `save_images: true` and `do_not_save_*: false`), `data.images[0]`.
- Open WebUI `backend/open_webui/routers/images.py`: `set_image_model` (GET /options, change
  `sd_model_checkpoint`, POST the whole object back), `get_models` (/sd-models `title`/`model_name`),
  `image_generations` (`{prompt, batch_size: n, width, height, steps, negative_prompt}` from the admin's size
  text "100x100", plus the admin's AUTOMATIC1111_PARAMS), then `res["images"]` and `res["info"]`.
- webuiapi (`webuiapi/webuiapi.py`, the PyPI client itself): its txt2img/img2img payload defaults (eta 1,
  s_* values, scheduler "automatic", nulls), `restore_faces`, sizes off the grid, `util_wait_for_ready`.
"""

from __future__ import annotations

import base64
import io
import json
import shutil

import pytest
import requests
from PIL import Image

from tests.api.test_api_server import Server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tiny_data_dir, tmp_path_factory):
    data = tmp_path_factory.mktemp("clients-data") / "data"
    shutil.copytree(tiny_data_dir, data)
    srv = Server(data, data.parent / "server.log")
    yield srv
    srv.stop()


def png(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    assert image.format == "PNG"
    return image


def sd1(server: Server) -> str:
    return next(m["title"] for m in requests.get(server.api + "/sd-models", timeout=30).json()
                if m["model_name"] == "tiny-sd1")


# -- SillyTavern -------------------------------------------------------------------------------------------------------
def test_sillytavern_flow(server):
    api = server.api
    assert requests.get(api + "/options", timeout=30).ok  # /api/sd/ping
    upscalers = [x["name"] for x in requests.get(api + "/upscalers", timeout=30).json()]
    latent = [x["name"] for x in requests.get(api + "/latent-upscale-modes", timeout=30).json()]
    assert upscalers[0] == "None" and "Latent" in latent
    vaes = [x["model_name"] for x in requests.get(api + "/sd-vae", timeout=30).json()]
    samplers = [x["name"] for x in requests.get(api + "/samplers", timeout=30).json()]
    schedulers = [x["name"] for x in requests.get(api + "/schedulers", timeout=30).json()]
    models = [x["title"] for x in requests.get(api + "/sd-models", timeout=30).json()]
    assert "DDIM" in samplers and "normal" in schedulers and vaes and models
    # /api/sd/set-model: POST {sd_model_checkpoint}, then wait until progress == 0 and job_count == 0
    r = requests.post(api + "/options", json={"sd_model_checkpoint": sd1(server)}, timeout=300)
    assert r.ok, r.text
    progress = requests.get(api + "/progress", timeout=30).json()
    assert progress["progress"] == 0.0 and progress["state"]["job_count"] == 0
    assert requests.get(api + "/options", timeout=30).json()["sd_model_checkpoint"] == sd1(server)  # get-model
    # /api/sd/generate forwards the extension's whole body (its defaults: DDIM, "normal", Latent, 0.7, clip skip 1)
    body = {
        "url": server.base, "auth": "",
        "prompt": "a lighthouse, best quality", "negative_prompt": "lowres, bad anatomy",
        "sampler_name": "DDIM", "scheduler": "normal", "steps": 2, "cfg_scale": 7, "width": 64, "height": 64,
        "restore_faces": True, "enable_hr": False, "hr_upscaler": "Latent", "hr_scale": 2.0,
        "denoising_strength": 0.7, "hr_second_pass_steps": 0,
        "override_settings": {"CLIP_stop_at_last_layers": 1, "sd_vae": vaes[0]},
        "override_settings_restore_afterwards": True, "clip_skip": 1,
        "save_images": True, "send_images": True, "do_not_save_grid": False, "do_not_save_samples": False,
    }
    r = requests.post(api + "/txt2img", json=body, timeout=300)
    assert r.ok, r.text
    data = r.json()
    assert png(data["images"][0]).size == (64, 64)
    info = json.loads(data["info"])
    assert any("restore_faces" in w for w in info["warnings"])  # the checkbox no longer fails the request
    assert list((server.data_dir / "outputs" / "txt2img-images").rglob(f"*-{info['seed']}*.png"))  # "saved to disk"
    # the random seed (SillyTavern leaves `seed` out for -1) and a bodiless interrupt when its client goes away
    assert requests.post(api + "/interrupt", timeout=30).ok


# -- Open WebUI --------------------------------------------------------------------------------------------------------
def test_open_webui_flow(server):
    api = server.api
    options = requests.get(api + "/options", timeout=30).json()  # verify_url / get_image_model
    models = [{"id": m["title"], "name": m["model_name"]} for m in requests.get(api + "/sd-models", timeout=30).json()]
    wanted = next(m["id"] for m in models if m["name"] == "tiny-sd2v")
    if wanted != options["sd_model_checkpoint"]:  # set_image_model posts the whole options object back
        options["sd_model_checkpoint"] = wanted
        r = requests.post(api + "/options", json=options, timeout=300)
        assert r.ok, r.text
    current = requests.get(api + "/options", timeout=30).json()["sd_model_checkpoint"]
    assert current.startswith("tiny-sd2v.safetensors")  # the title gains its hash once the model is loaded
    # image_generations: IMAGE_SIZE typed by the admin ("100x100"), n up to 10 as batch_size, IMAGE_STEPS
    width, height = (int(v) for v in "100x100".split("x"))
    data = {"prompt": "a red fox in the snow", "batch_size": 10, "width": width, "height": height, "steps": 2,
            "negative_prompt": "blurry"}
    data = {**data, **{"sampler_name": "Euler a", "cfg_scale": 6}}  # AUTOMATIC1111_PARAMS set by the admin
    r = requests.post(api + "/txt2img", json=data, timeout=600)
    assert r.status_code == 200, r.text
    res = r.json()
    assert len(res["images"]) == 10
    for image in res["images"]:  # get_image_data: no "data:" header → base64 PNG
        assert "," not in image and png(image).size == (96, 96)  # floored to the latent grid, as A1111
    info = json.loads(res["info"])
    assert info["batch_size"] == 10 and info["width"] == 96 and info["sd_model_name"] == "tiny-sd2v"


# -- webuiapi ----------------------------------------------------------------------------------------------------------
def test_webuiapi_flow(server):
    import webuiapi

    api = webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler a", steps=2)
    api.util_set_model(sd1(server), find_closest=False)
    api.util_wait_for_ready(check_interval=0.2)
    res = api.txt2img(prompt="a cat", width=100, height=72, seed=9, restore_faces=True, save_images=True,
                      do_not_save_samples=True, cfg_scale=31, batch_size=2)
    # with save_images the grid is made too, and A1111 returns it first (setting return_grid)
    assert [im.size for im in res.images] == [(192, 72), (96, 72), (96, 72)]
    assert res.info["seed"] == 9 and res.info["cfg_scale"] == 31 and res.info["warnings"]
    saved = list((server.data_dir / "outputs" / "txt2img-images").rglob("*-9*.png"))
    assert saved  # save_images wins over do_not_save_samples (A1111's API)
    res2 = api.img2img(images=[res.images[1]], prompt="a dog", width=100, height=100, seed=5, steps=2)
    assert res2.images[0].size == (96, 96)
    try:
        api.txt2img(prompt="x", width=4, height=64)
    except RuntimeError as exc:  # webuiapi raises RuntimeError(status, text) for non-200
        status, text = exc.args
        err = json.loads(text)
        assert status == 422 and "width" in err["errors"] and err["body"] == ""
    else:
        pytest.fail("a width below one latent pixel must be refused")
    opts = api.get_options()
    api.set_options({**opts, "return_grid": True, "jpeg_quality": 77})  # a key we do not have, posted with others
    assert api.get_options()["jpeg_quality"] == 77 and api.get_options()["return_grid"] is True
