"""Forge's module API on a real catalog of the tiny Z-Image files: /sd-models lists the diffusion model,
/sd-modules lists text encoders and VAEs, forge_additional_modules is a setting and an override (checked)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api import create_api_router
from app.api.convert import ApiError, ConvertContext, validate_overrides
from app.devtools.tiny_zimage import write_tiny_zimage
from app.models.catalog.index import Catalog
from app.paths import Paths
from app.settings import Settings


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("zimage-api")
    write_tiny_zimage(out)
    return out


@pytest.fixture()
def client(data: Path, tmp_path: Path):
    settings = Settings(tmp_path / "config.json")
    catalog = Catalog(Paths.from_data_dir(data), no_hashing=True)
    runtime = types.SimpleNamespace(
        args=types.SimpleNamespace(api_log=False, api_server_stop=False, api_auth=None), settings=settings,
        catalog=catalog, paths=types.SimpleNamespace(styles_file=tmp_path / "s.csv"), service=None, manager=None)
    app = FastAPI()
    app.state.runtime = runtime
    app.include_router(create_api_router(runtime))
    return TestClient(app), runtime


def test_sd_models_lists_the_diffusion_model(client, data):
    http, _ = client
    models = http.get("/sdapi/v1/sd-models").json()
    item = next(m for m in models if m["model_name"] == "z_image_turbo_bf16")
    assert item["title"] == "z_image_turbo_bf16.safetensors"
    assert item["filename"] == str(data / "models" / "diffusion_models" / "z_image_turbo_bf16.safetensors")


def test_sd_modules_lists_text_encoders_and_vaes(client, data):
    http, _ = client
    got = http.get("/sdapi/v1/sd-modules").json()
    assert got == [
        {"model_name": "ae.safetensors", "filename": str(data / "models" / "VAE" / "ae.safetensors")},
        {"model_name": "qwen_3_4b.safetensors", "filename": str(data / "models" / "text_encoders" / "qwen_3_4b.safetensors")},
    ]
    assert all(v["model_name"] != "ae.safetensors" for v in http.get("/sdapi/v1/sd-vae").json())


def test_forge_additional_modules_setting_and_override(client, data):
    http, runtime = client
    te = str(data / "models" / "text_encoders" / "qwen_3_4b.safetensors")
    assert http.post("/sdapi/v1/options", json={"forge_additional_modules": [te, "ae.safetensors"]}).status_code == 200
    assert http.get("/sdapi/v1/options").json()["forge_additional_modules"] == [te, "ae.safetensors"]
    ctx = ConvertContext(settings=runtime.settings, catalog=runtime.catalog)
    assert validate_overrides({"forge_additional_modules": [te]}, ctx) == {"forge_additional_modules": [te]}
    with pytest.raises(ApiError) as err:
        validate_overrides({"forge_additional_modules": ["missing.safetensors"]}, ctx)
    assert err.value.status_code == 422 and "missing.safetensors" in str(err.value.detail)
    bad = http.post("/sdapi/v1/options", json={"forge_additional_modules": ["nope.safetensors"]})
    assert bad.status_code == 422 and "nope.safetensors" in bad.text
