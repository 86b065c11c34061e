"""The Extra Networks thumbnail route `/sd_extra_networks/thumb?filename=`: under `--gradio-auth` it needs a login,
and it serves only image files inside the model folders (no model file, nothing outside them, no `..` escape)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi.testclient import TestClient

from tests.security.test_web_access import UI_PASS, UI_USER, make_runtime, png_bytes, upload_dir  # noqa: F401


def thumb(client: TestClient, path: object) -> int:
    return client.get(f"/sd_extra_networks/thumb?filename={quote(str(path))}").status_code


def test_previews_need_a_login_and_stay_in_the_model_folders(tmp_path, upload_dir) -> None:  # noqa: F811
    rt = make_runtime(tmp_path, "--gradio-auth", f"{UI_USER}:{UI_PASS}")
    lora_dir = rt.paths.lora_dirs[0]
    lora_dir.mkdir(parents=True, exist_ok=True)
    preview = lora_dir / "style.preview.png"
    preview.write_bytes(png_bytes())
    model = lora_dir / "style.safetensors"
    model.write_bytes(b"model bytes")
    outside = tmp_path / "secret.png"
    outside.write_bytes(png_bytes("secret"))
    try:
        with TestClient(rt.build_app()) as client:
            assert thumb(client, preview) == 401
            assert client.post("/login", data={"username": UI_USER, "password": UI_PASS}).status_code == 200
            r = client.get(f"/sd_extra_networks/thumb?filename={quote(str(preview))}")
            assert r.status_code == 200 and r.content == png_bytes() and r.headers["content-type"] == "image/png"
            assert thumb(client, model) == 404
            assert thumb(client, outside) == 404
            assert thumb(client, lora_dir / ".." / ".." / ".." / "secret.png") == 404
            assert thumb(client, "") == 404
    finally:
        rt.shutdown()
