"""Quantized FLUX.1 files as a user meets them over the A1111 API: a GGUF Q8_0 diffusion model
(``flux1-dev-Q8_0.gguf`` in models/unet, city96's folder name) with a GGUF T5 (``t5-v1_1-xxl-encoder-Q8_0.gguf``)
and an fp8 diffusion model with ``t5xxl_fp8_e4m3fn.safetensors`` in a fresh data dir, a real server
(``python -m app --nowebui``): listed with family, format, quant and size; txt2img on each; a kohya LoRA on the GGUF
base; a job too large for the free memory refused before allocating, with the numbers, and the server still
serving."""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.api.test_api_server import Server

pytestmark = pytest.mark.slow
BASE = {"prompt": "a red fox in the snow", "negative_prompt": "", "steps": 4, "width": 64, "height": 64,
        "cfg_scale": 1, "seed": 1234, "sampler_name": "Euler", "scheduler": "Simple"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from app.devtools.tiny_flux import to_fp8_files, write_tiny_flux
    from app.devtools.tiny_gguf import write_tiny_flux_gguf

    data = Path(tmp_path_factory.mktemp("quant-server"))
    written = to_fp8_files(write_tiny_flux(data, "dev"))  # fp8 diffusion model + t5xxl_fp8_e4m3fn
    written["flux:all_in_one"].unlink()
    gguf = write_tiny_flux_gguf(data, "Q8_0", "dev")
    unet = data / "models" / "unet"
    unet.mkdir(parents=True)
    shutil.move(str(gguf["flux:diffusion_model_gguf"]), unet / "flux1-dev-Q8_0.gguf")
    srv = Server(data, data / "server.log")
    yield srv
    srv.stop()


def _models(server) -> dict[str, dict]:
    return {m["model_name"]: m for m in requests.get(server.api + "/sd-models", timeout=30).json()}


def _txt2img(server, model: str, **changes) -> requests.Response:
    body = {**BASE, "override_settings": {"sd_model_checkpoint": _models(server)[model]["title"]}, **changes}
    return requests.post(server.api + "/txt2img", json=body, timeout=300)


def _image(response: requests.Response) -> Image.Image:
    assert response.status_code == 200, response.text[:500]
    return Image.open(io.BytesIO(base64.b64decode(response.json()["images"][0])))


def test_quantized_files_are_listed_with_family_quant_and_size(server):
    models = _models(server)
    gguf, fp8 = models["flux1-dev-Q8_0"], models["flux1-dev_fp8_e4m3fn"]
    assert (gguf["family"], gguf["format"], gguf["quant"]) == ("flux", "gguf", "Q8_0") and gguf["size_bytes"] > 0
    assert (fp8["family"], fp8["format"], fp8["quant"]) == ("flux", "safetensors", "fp8_e4m3fn")
    modules = {m["model_name"] for m in requests.get(server.api + "/sd-modules", timeout=30).json()}
    assert {"t5-v1_1-xxl-encoder-Q8_0.gguf", "t5xxl_fp8_e4m3fn.safetensors", "clip_l.safetensors"} <= modules


def test_gguf_and_fp8_flux_give_images_and_lora_is_restored(server):
    plain = _image(_txt2img(server, "flux1-dev-Q8_0"))
    assert plain.size == (64, 64)
    lora = _image(_txt2img(server, "flux1-dev-Q8_0", prompt=BASE["prompt"] + " <lora:tiny-flux-lora:0.8>"))
    assert lora.tobytes() != plain.tobytes()
    assert _image(_txt2img(server, "flux1-dev-Q8_0")).tobytes() == plain.tobytes()
    assert _image(_txt2img(server, "flux1-dev_fp8_e4m3fn")).size == (64, 64)


def test_job_too_large_for_memory_is_refused_before_allocating(server):
    # 4096² needs far more than this machine has for the fp32 CPU VAE decode (about 69 GB by the estimate)
    r = _txt2img(server, "flux1-dev-Q8_0", width=4096, height=4096, steps=1)
    assert r.status_code == 500 and r.json()["error"] == "InsufficientMemoryError"  # as A1111 answers an OOM
    text = r.text
    assert "4096x4096" in text and "needs about" in text and "free" in text and "Tiled VAE" in text
    assert _image(_txt2img(server, "flux1-dev-Q8_0")).size == (64, 64)  # still serving
