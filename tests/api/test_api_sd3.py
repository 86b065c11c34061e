"""SD3.5 as a user meets it over the A1111 API: the split files (sd3.5_medium in models/diffusion_models, clip_l +
clip_g + a T5 in models/text_encoders, sd3_vae in models/VAE), the all-in-one checkpoint and Stability's
``sd3.5_large.safetensors`` layout (MMDiT + VAE, text encoders from the folder) in models/Stable-diffusion of a fresh
data dir, a real server (`python -m app --nowebui`), and the calls a client makes: txt2img with the A1111 samplers,
real CFG with a negative prompt, Shift, variation seeds, hires fix, img2img, inpaint, a kohya LoRA (restored after
the job), the infotext round trip (Model hash, Shift); a missing CLIP-G is a clear error naming the file and folder,
and the server keeps serving."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
import requests
from PIL import Image

from app.devtools.tiny_sd3 import write_tiny_sd3
from tests.api.test_api_server import Server

pytestmark = pytest.mark.slow
BASE = {"prompt": "a red fox in the snow", "negative_prompt": "blurry", "steps": 4, "width": 64, "height": 64,
        "cfg_scale": 4.5, "seed": 1234, "sampler_name": "Euler", "scheduler": "Simple"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = Path(tmp_path_factory.mktemp("sd3-server"))
    write_tiny_sd3(data)
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


def _txt2img(server, model: str = "sd3.5_medium", **changes):
    body = {**BASE, "override_settings": {"sd_model_checkpoint": _title(server, model)}, **changes}
    r = requests.post(server.api + "/txt2img", json=body, timeout=300)
    assert r.status_code == 200, r.text[:500]
    out = r.json()
    return [_image(b) for b in out["images"]], out


def _info(body) -> str:
    return json.loads(body["info"])["infotexts"][0]


def test_models_are_listed(server):
    models = requests.get(server.api + "/sd-models", timeout=30).json()
    assert sorted(m["model_name"] for m in models) == ["sd3.5_large", "sd3.5_medium", "sd3.5_medium-aio"]
    assert {m["family"] for m in models} == {"sd3"}
    modules = {m["model_name"] for m in requests.get(server.api + "/sd-modules", timeout=30).json()}
    assert {"clip_l.safetensors", "clip_g.safetensors", "t5xxl_tiny128_fp16.safetensors", "sd3_vae.safetensors"} <= modules


@pytest.mark.parametrize("sampler", ["Euler", "Euler a", "DPM++ 2M", "UniPC"])
def test_samplers(server, sampler):
    images, body = _txt2img(server, sampler_name=sampler)
    info = _info(body)
    assert images[0].size == (64, 64)
    assert f"Sampler: {sampler}" in info and "CFG scale: 4.5" in info and "Shift: 3.0" in info
    assert "Negative prompt: blurry" in info


def test_cfg_negative_shift_and_variation_seed_change_the_image(server):
    base, _ = _txt2img(server)
    other_negative, _ = _txt2img(server, negative_prompt="sharp")
    shifted, body = _txt2img(server, shift=1.5)
    varied, vbody = _txt2img(server, subseed=99, subseed_strength=0.5)
    assert base[0].tobytes() != other_negative[0].tobytes()
    assert base[0].tobytes() != shifted[0].tobytes() and "Shift: 1.5" in _info(body)
    assert base[0].tobytes() != varied[0].tobytes() and "Variation seed: 99" in _info(vbody)


def test_all_in_one_equals_split_and_large_runs(server):
    split, _ = _txt2img(server)
    whole, _ = _txt2img(server, "sd3.5_medium-aio")
    assert split[0].tobytes() == whole[0].tobytes()
    large, body = _txt2img(server, "sd3.5_large")
    assert large[0].size == (64, 64) and "Model: sd3.5_large" in _info(body)


def test_hires_img2img_inpaint(server):
    images, _ = _txt2img(server, enable_hr=True, hr_scale=2, hr_upscaler="Latent", hr_second_pass_steps=2,
                         denoising_strength=0.5)
    assert images[0].size == (128, 128)
    init = Image.new("RGB", (64, 64), (200, 60, 30))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    body = {**BASE, "init_images": [_b64(init)], "denoising_strength": 0.6,
            "override_settings": {"sd_model_checkpoint": _title(server, "sd3.5_medium")}}
    r = requests.post(server.api + "/img2img", json=body, timeout=300)
    assert r.status_code == 200, r.text[:500]
    assert _image(r.json()["images"][0]).size == (64, 64)
    r = requests.post(server.api + "/img2img", json={**body, "mask": _b64(mask), "inpainting_fill": 1}, timeout=300)
    assert r.status_code == 200, r.text[:500]
    corner = _image(r.json()["images"][0]).convert("RGB").getpixel((2, 2))
    assert max(abs(a - b) for a, b in zip(corner, (200, 60, 30), strict=True)) <= 12  # outside the mask: kept


def test_kohya_lora_changes_the_image_and_is_restored(server):
    plain, _ = _txt2img(server)
    with_lora, body = _txt2img(server, prompt=BASE["prompt"] + " <lora:tiny-sd3-lora:0.8>")
    assert plain[0].tobytes() != with_lora[0].tobytes()
    assert "Lora hashes" in body["info"]
    again, _ = _txt2img(server)
    assert again[0].tobytes() == plain[0].tobytes()  # weights restored after the job


def test_infotext_round_trip(server):
    _, body = _txt2img(server, sampler_name="DPM++ 2M", shift=2.5, cfg_scale=5)
    infotext = _info(body)
    assert "Shift: 2.5" in infotext and "Model hash: " in infotext and "CFG scale: 5.0" in infotext
    r = requests.post(server.api + "/txt2img", json={
        "infotext": infotext, "override_settings": {"sd_model_checkpoint": _title(server, "sd3.5_medium")}},
        timeout=300)
    assert r.status_code == 200, r.text[:500]
    assert _info(r.json()) == infotext


def test_skip_layer_guidance_fields_and_infotext(server):
    """The Atelier extension fields: off by default, SLG on blocks of the tiny model changes the image and writes its
    infotext, the pasted infotext gives the same image, a block the model lacks fails naming it, a bad value is 422."""
    slg = {"skip_layer_guidance_scale": 2.8, "skip_guidance_layers": [1], "skip_layer_guidance_stop": 0.8}
    plain, plain_body = _txt2img(server, steps=6)
    guided, body = _txt2img(server, steps=6, **slg)
    infotext = _info(body)
    assert "SLG" not in _info(plain_body)
    assert "SLG scale: 2.8, SLG layers: 1, SLG start: 0.01, SLG stop: 0.8" in infotext
    assert guided[0].tobytes() != plain[0].tobytes()
    r = requests.post(server.api + "/txt2img", json={
        "infotext": infotext, "override_settings": {"sd_model_checkpoint": _title(server, "sd3.5_medium")}},
        timeout=300)
    assert r.status_code == 200, r.text[:500]
    assert _image(r.json()["images"][0]).tobytes() == guided[0].tobytes()
    r = requests.post(server.api + "/txt2img", json={**BASE, **slg, "skip_guidance_layers": "7, 8, 9"}, timeout=300)
    assert r.status_code != 200 and "not in this model's joint blocks 0..2" in r.text
    r = requests.post(server.api + "/txt2img", json={**BASE, "skip_guidance_layers": [-1]}, timeout=60)
    assert r.status_code == 422 and "skip_guidance_layers" in r.text
    assert _txt2img(server)[0]  # the server keeps serving


@pytest.fixture(scope="module")
def server_without_clip_g(tmp_path_factory):
    data = Path(tmp_path_factory.mktemp("sd3-missing"))
    write_tiny_sd3(data)
    (data / "models" / "text_encoders" / "clip_g.safetensors").unlink()
    (data / "models" / "Stable-diffusion" / "sd3.5_medium-aio.safetensors").unlink()
    srv = Server(data, data / "server.log")
    yield srv
    srv.stop()


def test_missing_clip_g_is_a_clear_error_and_the_server_keeps_serving(server_without_clip_g):
    srv = server_without_clip_g
    r = requests.post(srv.api + "/txt2img", json=BASE, timeout=300)
    assert 400 <= r.status_code < 600 and r.status_code != 200
    message = r.json().get("detail") or r.text
    folder = str(srv.data_dir / "models" / "text_encoders")
    assert "CLIP-G text encoder" in message and folder in message and "clip_g.safetensors" in message
    assert "Traceback" not in srv.log_tail()
    assert requests.get(srv.base + "/internal/ping", timeout=10).status_code == 200
