"""FLUX.1 as a user meets it over the A1111 API: the split files (flux1-dev / flux1-schnell in models/diffusion_models,
clip_l + t5xxl_fp16 in models/text_encoders, ae in models/VAE) and the all-in-one checkpoints in
models/Stable-diffusion of a fresh data dir, a real server (`python -m app --nowebui`), and the calls a client makes:
txt2img with the A1111 samplers and Forge's `distilled_cfg_scale`, schnell, hires fix, img2img, inpaint, a kohya
LoRA (restored after the job), the infotext round trip; a missing T5 is a clear error naming the file and folder,
and the server keeps serving."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
import requests
from PIL import Image

from app.devtools.tiny_flux import write_tiny_flux
from tests.api.test_api_server import Server

pytestmark = pytest.mark.slow
BASE = {"prompt": "a red fox in the snow", "negative_prompt": "", "steps": 4, "width": 64, "height": 64,
        "cfg_scale": 1, "seed": 1234, "sampler_name": "Euler", "scheduler": "Simple"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = Path(tmp_path_factory.mktemp("flux-server"))
    write_tiny_flux(data, "dev")
    write_tiny_flux(data, "schnell")
    srv = Server(data, data / "server.log")
    yield srv
    srv.stop()


def _image(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def _b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _title(server, name: str) -> str:
    models = requests.get(server.api + "/sd-models", timeout=30).json()
    return next(m["title"] for m in models if m["model_name"] == name)


def _txt2img(server, model: str = "flux1-dev", **changes):
    body = {**BASE, "override_settings": {"sd_model_checkpoint": _title(server, model)}, **changes}
    r = requests.post(server.api + "/txt2img", json=body, timeout=300)
    assert r.status_code == 200, r.text[:500]
    out = r.json()
    return [_image(b) for b in out["images"]], out


def test_models_are_listed(server):
    models = requests.get(server.api + "/sd-models", timeout=30).json()
    assert sorted(m["model_name"] for m in models) == ["flux1-dev", "flux1-dev-aio", "flux1-schnell",
                                                       "flux1-schnell-aio"]
    modules = {m["model_name"] for m in requests.get(server.api + "/sd-modules", timeout=30).json()}
    assert {"clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors"} <= modules


@pytest.mark.parametrize("sampler", ["Euler", "Euler a", "DPM++ 2M", "res_multistep"])
def test_dev_samplers_with_distilled_cfg(server, sampler):
    images, body = _txt2img(server, sampler_name=sampler, distilled_cfg_scale=5)
    info = json.loads(body["info"])["infotexts"][0]
    assert images[0].size == (64, 64)
    assert f"Sampler: {sampler}" in info and "Distilled CFG Scale: 5.0" in info and "Schedule type: Simple" in info


def test_distilled_cfg_changes_the_image_and_cfg1_ignores_the_negative(server):
    a, _ = _txt2img(server, distilled_cfg_scale=2.0)
    b, _ = _txt2img(server, distilled_cfg_scale=6.0)
    c, _ = _txt2img(server, distilled_cfg_scale=2.0, negative_prompt="blurry")
    assert a[0].tobytes() != b[0].tobytes()
    assert a[0].tobytes() == c[0].tobytes()  # real CFG 1: one pass, the negative prompt is not used


def test_schnell_and_all_in_one(server):
    images, body = _txt2img(server, "flux1-schnell")
    info = json.loads(body["info"])["infotexts"][0]
    assert images[0].size == (64, 64) and "Distilled CFG Scale" not in info
    split, _ = _txt2img(server, "flux1-dev")
    whole, _ = _txt2img(server, "flux1-dev-aio")
    assert split[0].tobytes() == whole[0].tobytes()


def test_hires_img2img_inpaint(server):
    images, body = _txt2img(server, enable_hr=True, hr_scale=2, hr_upscaler="Latent", hr_second_pass_steps=2,
                            denoising_strength=0.5)
    assert images[0].size == (128, 128)
    init = Image.new("RGB", (64, 64), (200, 60, 30))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    body = {**BASE, "init_images": [_b64(init)], "denoising_strength": 0.6,
            "override_settings": {"sd_model_checkpoint": _title(server, "flux1-dev")}}
    r = requests.post(server.api + "/img2img", json=body, timeout=300)
    assert r.status_code == 200, r.text[:500]
    assert _image(r.json()["images"][0]).size == (64, 64)
    r = requests.post(server.api + "/img2img", json={**body, "mask": _b64(mask), "inpainting_fill": 1}, timeout=300)
    assert r.status_code == 200, r.text[:500]
    corner = _image(r.json()["images"][0]).convert("RGB").getpixel((2, 2))
    assert max(abs(a - b) for a, b in zip(corner, (200, 60, 30), strict=True)) <= 12  # outside the mask: kept


def test_kohya_lora_changes_the_image_and_is_restored(server):
    plain, _ = _txt2img(server)
    with_lora, body = _txt2img(server, prompt=BASE["prompt"] + " <lora:tiny-flux-lora:0.8>")
    assert plain[0].tobytes() != with_lora[0].tobytes()
    assert "Lora hashes" in body["info"]
    again, _ = _txt2img(server)
    assert again[0].tobytes() == plain[0].tobytes()  # weights restored after the job


def test_infotext_round_trip(server):
    _, body = _txt2img(server, distilled_cfg_scale=4.5, sampler_name="DPM++ 2M")
    infotext = json.loads(body["info"])["infotexts"][0]
    assert "Distilled CFG Scale: 4.5" in infotext
    # fields from the text; the model is named by override_settings (the server's current one is another FLUX file)
    r = requests.post(server.api + "/txt2img", json={
        "infotext": infotext, "override_settings": {"sd_model_checkpoint": _title(server, "flux1-dev")}}, timeout=300)
    assert r.status_code == 200, r.text[:500]
    assert json.loads(r.json()["info"])["infotexts"][0] == infotext


@pytest.fixture(scope="module")
def server_without_t5(tmp_path_factory):
    data = Path(tmp_path_factory.mktemp("flux-missing"))
    write_tiny_flux(data, "dev")
    (data / "models" / "text_encoders" / "t5xxl_fp16.safetensors").unlink()
    (data / "models" / "Stable-diffusion" / "flux1-dev-aio.safetensors").unlink()
    srv = Server(data, data / "server.log")
    yield srv
    srv.stop()


def test_missing_t5_is_a_clear_error_and_the_server_keeps_serving(server_without_t5):
    srv = server_without_t5
    r = requests.post(srv.api + "/txt2img", json=BASE, timeout=300)
    assert 400 <= r.status_code < 600 and r.status_code != 200
    message = r.json().get("detail") or r.text
    folder = str(srv.data_dir / "models" / "text_encoders")
    assert "T5-XXL text encoder" in message and folder in message and "t5xxl_fp16.safetensors" in message
    assert "Traceback" not in srv.log_tail()
    assert requests.get(srv.base + "/internal/ping", timeout=10).status_code == 200
