"""The FLUX.1 entries of `python -m app.devtools.download` (flux-schnell, flux-dev, flux-fill): the files users get and
their folders, the T5 precision choice, shared files fetched once, and the gated models' token and error. The network is
faked at its seam: `file://` URLs (`--url`, as the other download tests) and a local HTTP server for the token."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from app.devtools import download as dl

BFL = "https://huggingface.co/black-forest-labs/"
TE = "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/"


def test_flux_bundles_name_the_files_and_folders() -> None:
    table = {name: {d.filename: (d.folder, d.url) for d in files} for name, files in dl.BUNDLES.items()
             if name.startswith("flux")}
    shared = {"clip_l.safetensors": ("text_encoders", TE + "clip_l.safetensors"),
              "t5xxl_fp16.safetensors": ("text_encoders", TE + "t5xxl_fp16.safetensors"),
              "ae.safetensors": ("VAE", BFL + "FLUX.1-schnell/resolve/main/ae.safetensors")}
    assert table == {
        "flux-schnell": {"flux1-schnell.safetensors": (
            "diffusion_models", BFL + "FLUX.1-schnell/resolve/main/flux1-schnell.safetensors"), **shared},
        "flux-dev": {"flux1-dev.safetensors": (
            "diffusion_models", BFL + "FLUX.1-dev/resolve/main/flux1-dev.safetensors"), **shared},
        "flux-fill": {"flux1-fill-dev.safetensors": (
            "diffusion_models", BFL + "FLUX.1-Fill-dev/resolve/main/flux1-fill-dev.safetensors"), **shared},
    }
    assert dl.FLUX_MODELS["flux-dev"].gated and dl.FLUX_MODELS["flux-fill"].gated
    assert not dl.FLUX_MODELS["flux-schnell"].gated  # Apache-2.0, open
    fp8 = {d.filename for d in dl.flux_files("flux-dev", "fp8")}
    assert "t5xxl_fp8_e4m3fn.safetensors" in fp8 and "t5xxl_fp16.safetensors" not in fp8
    assert dl.build_parser().parse_args(["flux-fill", "--t5", "fp8"]).t5 == "fp8"


def _layout(models: Path) -> set[str]:
    return {p.relative_to(models).as_posix() for p in models.rglob("*.safetensors")}


def test_flux_download_lays_out_the_split_files(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 64)
    data = tmp_path / "d"
    assert dl.main(["flux-schnell", "--t5", "fp8", "--data-dir", str(data), "--url", src.as_uri()]) == 0
    models = data / "models"
    assert _layout(models) == {"diffusion_models/flux1-schnell.safetensors", "text_encoders/clip_l.safetensors",
                               "text_encoders/t5xxl_fp8_e4m3fn.safetensors", "VAE/ae.safetensors"}
    capsys.readouterr()
    # a second model: the shared encoders and VAE are already there and only checked
    assert dl.main(["flux-fill", "--t5", "fp8", "--data-dir", str(data), "--url", src.as_uri()]) == 0
    err = capsys.readouterr().err
    assert "clip_l.safetensors already exists" in err and "ae.safetensors already exists" in err
    assert "downloading FLUX.1 Fill" in err
    assert "diffusion_models/flux1-fill-dev.safetensors" in _layout(models)
    assert not list(models.rglob("*.part"))


class _Gate(BaseHTTPRequestHandler):
    """Serves a few bytes only to a request with the right bearer token, as a gated Hugging Face file."""

    seen: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        auth = self.headers.get("Authorization")
        self.seen.append(auth)
        if auth != "Bearer good-token":
            self.send_response(401)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"model")

    def log_message(self, *args) -> None:
        return None


@pytest.fixture
def gate():
    server = HTTPServer(("127.0.0.1", 0), _Gate)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Gate.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/flux1-dev.safetensors"
    server.shutdown()
    server.server_close()


def test_token_goes_to_the_allowed_hosts_only(gate: str, tmp_path: Path) -> None:
    target = tmp_path / "flux1-dev.safetensors"
    with pytest.raises(dl.GatedError):
        dl.fetch(gate, target, "", show_progress=False, token="good-token")  # 127.0.0.1 is not huggingface.co
    assert _Gate.seen == [None] and not target.exists() and not target.with_name(target.name + ".part").exists()
    dl.fetch(gate, target, "", show_progress=False, token="good-token", auth_hosts=("127.0.0.1",))
    assert target.read_bytes() == b"model" and _Gate.seen[-1] == "Bearer good-token"
    assert "Authorization" in dl.request_for(BFL + "FLUX.1-dev/x", "t").headers
    assert "Authorization" not in dl.request_for("https://huggingface.co.evil.example/x", "t").headers


def test_gated_model_without_token_says_what_to_do(gate: str, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert dl.main(["flux-dev", "--data-dir", str(tmp_path / "d"), "--url", gate]) == 1
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "accept its licence at " + BFL + "FLUX.1-dev" in err and "HF_TOKEN" in err
    assert not list((tmp_path / "d" / "models").rglob("*.safetensors*"))
