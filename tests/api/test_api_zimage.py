"""Z-Image as a user meets it over the A1111 API: the three split files dropped into models/diffusion_models,
models/text_encoders and models/VAE of a fresh data dir, a real server (`python -m app --nowebui`), and the
calls a client makes: txt2img with Euler, Euler a, DPM++ 2M and res_multistep at CFG 1 and a chosen shift,
hires fix, img2img, inpaint, a LoRA, the infotext round trip; a missing part is a clear error naming the file
and its folder, and the server keeps serving."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
import requests
from PIL import Image

from app.devtools.tiny_zimage import write_tiny_zimage
from tests.api.test_api_server import Server

pytestmark = pytest.mark.slow
BASE = {"prompt": "a red fox in the snow", "negative_prompt": "", "steps": 4, "width": 64, "height": 64,
        "cfg_scale": 1, "seed": 1234, "sampler_name": "Euler", "scheduler": "Simple"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = Path(tmp_path_factory.mktemp("zimage-server"))
    write_tiny_zimage(data)
    srv = Server(data, data / "server.log")
    yield srv
    srv.stop()


def _image(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def _txt2img(server, **changes):
    r = requests.post(server.api + "/txt2img", json={**BASE, **changes}, timeout=300)
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    return [_image(b) for b in body["images"]], body


def test_model_is_listed_and_picked(server):
    models = requests.get(server.api + "/sd-models", timeout=30).json()
    assert [m["model_name"] for m in models] == ["z_image_turbo_bf16"]
    r = requests.post(server.api + "/options", json={"sd_model_checkpoint": models[0]["title"]}, timeout=300)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("sampler", ["Euler", "Euler a", "DPM++ 2M", "res_multistep"])
def test_txt2img_samplers_with_shift(server, sampler):
    images, body = _txt2img(server, sampler_name=sampler, shift=2.5)
    info = body["info"]
    assert images[0].size == (64, 64)
    assert f"Sampler: {sampler}" in info and "Shift: 2.5" in info and "Schedule type: Simple" in info


def test_shift_changes_the_image_and_cfg1_ignores_the_negative(server):
    a, _ = _txt2img(server, shift=3.0)
    b, _ = _txt2img(server, shift=6.0)
    c, _ = _txt2img(server, shift=3.0, negative_prompt="blurry, low quality")
    assert a[0].tobytes() != b[0].tobytes()
    assert a[0].tobytes() == c[0].tobytes()  # CFG 1: the negative prompt is not used (no uncond pass)


def test_sizes_floor_to_16(server):
    images, body = _txt2img(server, width=100, height=80)
    assert images[0].size == (96, 80)


def test_hires_fix(server):
    images, body = _txt2img(server, enable_hr=True, hr_scale=2, hr_upscaler="Latent", hr_second_pass_steps=2,
                            denoising_strength=0.5)
    assert images[0].size == (128, 128)
    assert "Hires upscale: 2" in body["info"]


def _b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_img2img_and_inpaint(server):
    init = Image.new("RGB", (64, 64), (200, 60, 30))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    body = {**BASE, "init_images": [_b64(init)], "denoising_strength": 0.6}
    r = requests.post(server.api + "/img2img", json=body, timeout=300)
    assert r.status_code == 200, r.text[:500]
    out = _image(r.json()["images"][0])
    assert out.size == (64, 64)
    r = requests.post(server.api + "/img2img", json={**body, "mask": _b64(mask), "inpainting_fill": 1}, timeout=300)
    assert r.status_code == 200, r.text[:500]
    painted = _image(r.json()["images"][0]).convert("RGB")
    corner = painted.getpixel((2, 2))
    assert max(abs(a - b) for a, b in zip(corner, (200, 60, 30), strict=True)) <= 12  # outside the mask: kept


def test_lora_changes_the_image_and_is_in_the_infotext(server):
    plain, _ = _txt2img(server)
    with_lora, body = _txt2img(server, prompt=BASE["prompt"] + " <lora:tiny-zimage-lora:0.8>")
    assert plain[0].tobytes() != with_lora[0].tobytes()
    assert "Lora hashes" in body["info"]
    again, _ = _txt2img(server)
    assert again[0].tobytes() == plain[0].tobytes()  # weights restored after the job


def test_infotext_round_trip(server):
    _, body = _txt2img(server, sampler_name="res_multistep", shift=4.0, unconditional_first_steps=1)
    infotext = json.loads(body["info"])["infotexts"][0]
    assert "Shift: 4.0" in infotext and "Unconditional first steps: 1" in infotext
    r = requests.post(server.api + "/txt2img", json={"infotext": infotext}, timeout=300)  # fields from the text
    assert r.status_code == 200, r.text[:500]
    again = json.loads(r.json()["info"])["infotexts"][0]
    assert again == infotext


@pytest.fixture(scope="module")
def server_without_encoder(tmp_path_factory):
    data = Path(tmp_path_factory.mktemp("zimage-missing"))
    write_tiny_zimage(data)
    (data / "models" / "text_encoders" / "qwen_3_4b.safetensors").unlink()
    srv = Server(data, data / "server.log")
    yield srv
    srv.stop()


def test_missing_text_encoder_is_a_clear_error_and_the_server_keeps_serving(server_without_encoder):
    srv = server_without_encoder
    r = requests.post(srv.api + "/txt2img", json=BASE, timeout=300)
    assert 400 <= r.status_code < 600 and r.status_code != 200
    message = r.json().get("detail") or r.text
    folder = str(srv.data_dir / "models" / "text_encoders")
    assert "text encoder" in message.lower() and folder in message and "qwen_3_4b" in message
    assert "Traceback" not in srv.log_tail()
    assert requests.get(srv.base + "/internal/ping", timeout=10).status_code == 200
    assert requests.get(srv.api + "/sd-models", timeout=30).status_code == 200
