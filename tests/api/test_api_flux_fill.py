"""FLUX.1 Fill over the A1111 API as a client uses it: a fresh data dir with the split Fill files
(models/diffusion_models/flux1-fill-dev.safetensors, clip_l + t5xxl_fp16, ae) and the all-in-one file, a real
server (`python -m app --nowebui`), /sdapi/v1/img2img with a mask (whole picture and "Only masked" with padding,
the masked-content choices), plain img2img and txt2img on the Fill model, and the infotext (Distilled CFG Scale 30
unless the request sets one)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from app.devtools.tiny_flux import write_tiny_flux
from tests.api.test_api_server import Server

pytestmark = pytest.mark.slow
BASE = {"prompt": "a red fox in the snow", "negative_prompt": "", "steps": 4, "width": 64, "height": 64,
        "cfg_scale": 1, "seed": 1234, "sampler_name": "Euler", "scheduler": "Simple"}
COLOUR = (200, 60, 30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = Path(tmp_path_factory.mktemp("flux-fill-server"))
    write_tiny_flux(data, "fill")
    srv = Server(data, data / "server.log")
    yield srv
    srv.stop()


def _image(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")


def _b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _title(server, name: str = "flux1-fill-dev") -> str:
    models = requests.get(server.api + "/sd-models", timeout=30).json()
    return next(m["title"] for m in models if m["model_name"] == name)


def _mask() -> Image.Image:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 40, 40))
    return mask


def _img2img(server, **changes):
    body = {**BASE, "init_images": [_b64(Image.new("RGB", (64, 64), COLOUR))], "denoising_strength": 1.0,
            "mask": _b64(_mask()), "mask_blur": 0, "inpainting_fill": 1,
            "override_settings": {"sd_model_checkpoint": _title(server)}, **changes}
    r = requests.post(server.api + "/img2img", json=body, timeout=300)
    assert r.status_code == 200, r.text[:500]
    out = r.json()
    return _image(out["images"][0]), json.loads(out["info"])["infotexts"][0]


def test_fill_models_are_listed_as_flux(server):
    models = {m["model_name"]: m for m in requests.get(server.api + "/sd-models", timeout=30).json()}
    assert set(models) == {"flux1-fill-dev", "flux1-fill-dev-aio"}
    assert models["flux1-fill-dev"]["family"] == "flux-fill"


def _outside_is_original(image: Image.Image) -> bool:
    arr = np.asarray(image)
    outside = np.asarray(_mask()) == 0
    return bool((arr[outside] == np.array(COLOUR)).all())


@pytest.mark.parametrize("fill", [0, 1, 2, 3])
def test_inpaint_with_each_masked_content(server, fill):
    image, info = _img2img(server, inpainting_fill=fill)
    assert image.size == (64, 64)
    assert _outside_is_original(image)  # the original is pasted back outside the mask
    inside = np.asarray(image)[np.asarray(_mask()) > 0]
    assert np.abs(inside.astype(int) - np.array(COLOUR)).max() > 12  # the hole was repainted
    assert "Distilled CFG Scale: 30.0" in info and "Denoising strength: 1.0" in info


def test_only_masked_with_padding_and_distilled_cfg(server):
    whole, _ = _img2img(server)
    crop, info = _img2img(server, inpaint_full_res=True, inpaint_full_res_padding=8, distilled_cfg_scale=12)
    assert crop.size == (64, 64) and _outside_is_original(crop)
    assert crop.tobytes() != whole.tobytes()
    assert "Inpaint area: Only masked" in info and "Masked area padding: 8" in info
    assert "Distilled CFG Scale: 12.0" in info


def test_plain_img2img_and_txt2img_on_fill(server):
    body = {**BASE, "init_images": [_b64(Image.new("RGB", (64, 64), COLOUR))], "denoising_strength": 0.7,
            "override_settings": {"sd_model_checkpoint": _title(server)}}
    r = requests.post(server.api + "/img2img", json=body, timeout=300)
    assert r.status_code == 200, r.text[:500]
    assert _image(r.json()["images"][0]).size == (64, 64)
    body = {**BASE, "override_settings": {"sd_model_checkpoint": _title(server, "flux1-fill-dev-aio")}}
    r = requests.post(server.api + "/txt2img", json=body, timeout=300)
    assert r.status_code == 200, r.text[:500]
    assert "Distilled CFG Scale: 30.0" in json.loads(r.json()["info"])["infotexts"][0]
    # hires fix: the second pass gets a whole-picture mask at the hires size
    r = requests.post(server.api + "/txt2img", json={**body, "enable_hr": True, "hr_scale": 2, "hr_upscaler": "Latent",
                                                     "hr_second_pass_steps": 2, "denoising_strength": 0.5}, timeout=300)
    assert r.status_code == 200, r.text[:500]
    assert _image(r.json()["images"][0]).size == (128, 128)
