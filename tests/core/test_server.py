"""Server glue: credentials, API auth (in-process), and the real server in a subprocess on an empty data dir."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Mount

from app.auth import check_basic_auth, parse_credentials, read_credentials_file, require_api_auth
from app.cli import parse_args
from app.runtime import Runtime
from app.server import move_ui_mounts_last
from app.startup.serving import should_open_browser, warm_up, warn_about_exposure
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def runtime_for(tmp_path: Path, *argv: str) -> Runtime:
    return Runtime(parse_args(["--data-dir", str(tmp_path / "data"), *argv], environ={}))


# -- credentials ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        (None, {}),
        ("u:p", {"u": "p"}),
        ("u:p,v:q", {"u": "p", "v": "q"}),
        (" u:p , v:q:r ", {"u": "p", "v": "q:r"}),
        ("u:p\nv:q\n\n# comment\n", {"u": "p", "v": "q"}),
    ],
)
def test_parse_credentials(text, expected):
    assert parse_credentials(text) == expected


@pytest.mark.parametrize("text", ["justuser", ":secretpw", "user:", "a:b,secretpw"])
def test_bad_credentials_name_the_flag_not_the_secret(text):
    with pytest.raises(ValueError, match="--api-auth") as err:
        parse_credentials(text, "--api-auth")
    assert "secretpw" not in str(err.value)


def test_credentials_file(tmp_path):
    f = tmp_path / "auth.txt"
    f.write_text("alice:pw1\nbob:pw2,carol:pw:3\n")
    assert read_credentials_file(f) == {"alice": "pw1", "bob": "pw2", "carol": "pw:3"}
    with pytest.raises(ValueError, match="--gradio-auth-path"):
        read_credentials_file(tmp_path / "missing.txt")


@pytest.mark.parametrize(
    ("header", "user"),
    [
        (basic("u", "p")["Authorization"], "u"),
        (basic("u", "x")["Authorization"], None),
        (basic("nobody", "p")["Authorization"], None),
        ("Bearer abc", None),
        ("Basic !!!notbase64", None),
        ("Basic " + base64.b64encode(b"nocolon").decode(), None),
        (None, None),
    ],
)
def test_check_basic_auth(header, user):
    assert check_basic_auth(header, {"u": "p"}) == user


# -- runtime and in-process app -----------------------------------------------------------------------------------------
def test_runtime_does_not_touch_disk_until_started(tmp_path):
    rt = runtime_for(tmp_path, "--nowebui")
    assert not (tmp_path / "data").exists()
    rt.build_app()
    assert (tmp_path / "data" / "models" / "Stable-diffusion").is_dir()
    assert (tmp_path / "data" / "embeddings").is_dir()
    assert not rt.has_checkpoints()


def test_runtime_bad_auth_flag(tmp_path):
    with pytest.raises(ValueError, match="--gradio-auth"):
        runtime_for(tmp_path, "--gradio-auth", "nopassword")


def test_gradio_credentials_merge_flag_and_file(tmp_path):
    f = tmp_path / "auth"
    f.write_text("b:2\n")
    rt = runtime_for(tmp_path, "--gradio-auth", "a:1", "--gradio-auth-path", str(f))
    assert rt.gradio_credentials == {"a": "1", "b": "2"}


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        ((), True),
        (("--listen",), False),
        (("--server-name", "10.0.0.2"), False),
        (("--listen", "--enable-insecure-extension-access"), True),
    ],
)
def test_extension_install_policy(tmp_path, argv, allowed):
    assert runtime_for(tmp_path, *argv).extension_install_allowed is allowed


def test_api_auth_in_process(tmp_path):
    rt = runtime_for(tmp_path, "--nowebui", "--api-auth", "u:p,v:q")

    def add_routes(app: FastAPI) -> None:
        @app.get("/ext/hello", dependencies=[Depends(require_api_auth(rt))])
        def hello() -> dict[str, str]:
            return {"hello": "world"}

    rt.on_app_started(add_routes)
    client = TestClient(rt.build_app())
    assert client.get("/internal/ping").status_code == 200
    for path in ("/sdapi/v1/sd-models", "/sdapi/v1/anything", "/ext/hello"):
        r = client.get(path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == "Basic"
        assert r.json() == {"detail": "Incorrect username or password"}
        assert client.get(path, headers=basic("u", "wrong")).status_code == 401
    assert client.get("/ext/hello", headers=basic("v", "q")).json() == {"hello": "world"}
    assert client.get("/sdapi/v1/anything", headers=basic("u", "p")).status_code == 404  # authorised, no route


def test_no_api_auth_means_open_api(tmp_path):
    rt = runtime_for(tmp_path, "--nowebui")
    client = TestClient(rt.build_app())
    assert client.get("/sdapi/v1/anything").status_code == 404
    assert client.get("/openapi.json").status_code == 200  # --nowebui implies --api: docs are served


def test_routes_added_after_the_ui_mount_are_reachable():
    app = FastAPI()
    ui = FastAPI()

    @ui.get("/{rest:path}")
    def catch_all(rest: str) -> dict[str, str]:
        return {"ui": rest}

    app.router.routes.append(Mount("/", app=ui))

    @app.get("/late")
    def late() -> dict[str, bool]:
        return {"late": True}

    move_ui_mounts_last(app)
    client = TestClient(app)
    assert client.get("/late").json() == {"late": True}
    assert client.get("/other").json() == {"ui": "other"}


def test_theme_flag_keeps_the_root_a_200(tmp_path):
    """`--theme dark` is applied by the page (atelier.js reads it from the boot data), never by a redirect of `/`:
    health checks and clients that do not follow redirects get the page itself."""
    rt = runtime_for(tmp_path, "--theme", "dark", "--test-server")
    try:
        client = TestClient(rt.build_app(), follow_redirects=False)
        r = client.get("/")
        assert r.status_code == 200 and "location" not in r.headers
        assert '"theme": "dark"' in r.text  # the boot data, in the page's <head>
        assert client.get("/?__theme=light").status_code == 200
    finally:
        rt.shutdown()


# -- the real server ------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_real_server_on_empty_data_dir(tmp_path):
    data, port = tmp_path / "empty", free_port()
    env = {k: v for k, v in os.environ.items() if k != "COMMANDLINE_ARGS"}
    env.update(OMP_NUM_THREADS="1", COMMANDLINE_ARGS="--api --api-auth apiuser:apisecret")
    cmd = [sys.executable, "-m", "app", "--data-dir", str(data), "--port", str(port), "--test-server",
           "--gradio-auth", "uiuser:uisecret"]
    log_file = tmp_path / "server.log"
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    def answers_ping() -> bool:
        assert proc.poll() is None, log_file.read_text()
        try:
            return fetch(base + "/internal/ping")[0] == 200
        except OSError:
            return False

    try:  # generous timeout: the CI box is shared; normally ~10 s
        wait_until(answers_ping, timeout=240, interval=0.2, message=lambda: "server did not start:\n" + log_file.read_text())

        # the UI page (gradio's login page, since --gradio-auth is set)
        status, _, body = fetch(base + "/")
        assert status == 200 and b"gradio" in body.lower()
        assert fetch(base + "/config")[0] == 401
        login = urllib.parse.urlencode({"username": "uiuser", "password": "uisecret"}).encode()
        assert fetch(base + "/login", data=login)[0] == 200
        bad_login = urllib.parse.urlencode({"username": "uiuser", "password": "nope"}).encode()
        assert fetch(base + "/login", data=bad_login)[0] in (400, 401)

        # the API behind --api-auth (given through COMMANDLINE_ARGS)
        status, headers, body = fetch(base + "/sdapi/v1/sd-models")
        assert status == 401 and headers.get("www-authenticate") == "Basic"
        assert json.loads(body) == {"detail": "Incorrect username or password"}
        assert fetch(base + "/sdapi/v1/sd-models", headers=basic("apiuser", "wrong"))[0] == 401
        status, _, body = fetch(base + "/sdapi/v1/sd-models", headers=basic("apiuser", "apisecret"))
        assert status != 401
        try:
            from app.api import create_api_router  # noqa: F401

            assert status == 200 and json.loads(body) == []
        except ImportError:
            assert status == 404

        assert (data / "models" / "Stable-diffusion").is_dir()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    text = log_file.read_text()
    assert "no checkpoint found" in text and "models/Stable-diffusion" in text
    assert "python -m app.devtools.download sd15" in text
    assert "apisecret" not in text and "uisecret" not in text


# -- the explicit download tool (never downloads in tests) -----------------------------------------------------------
def test_download_refuses_with_flag(tmp_path, capsys):
    from app.devtools.download import main

    assert main(["sd15", "--data-dir", str(tmp_path), "--no-download-sd-model"]) == 2
    assert "refusing" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()


def test_download_argument_parsing():
    from app.devtools.download import DOWNLOADS, build_parser

    args = build_parser().parse_args(["sd15", "--data-dir", "/x"])
    assert args.model == "sd15" and args.data_dir == "/x"
    assert DOWNLOADS["sd15"].sha256 == "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sd99"])


def test_download_verifies_sha256_from_file_url(tmp_path):
    import hashlib

    from app.devtools.download import DownloadError, fetch, main, verify_sha256

    src = tmp_path / "src.bin"
    src.write_bytes(b"model bytes" * 1000)
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    target = tmp_path / "out" / "m.safetensors"
    assert fetch(src.as_uri(), target, good.upper(), show_progress=False) == target
    assert target.read_bytes() == src.read_bytes()
    verify_sha256(target, good)

    bad_target = tmp_path / "out" / "bad.safetensors"
    with pytest.raises(DownloadError, match="does not match"):
        fetch(src.as_uri(), bad_target, "0" * 64, show_progress=False)
    assert not bad_target.exists() and not bad_target.with_name("bad.safetensors.part").exists()

    # through the CLI: the file:// URL's content does not match SD 1.5's hash, so nothing is saved
    assert main(["sd15", "--data-dir", str(tmp_path / "d"), "--url", src.as_uri()]) == 1
    assert not list((tmp_path / "d" / "models" / "Stable-diffusion").glob("*.safetensors"))


# -- runtime wiring with a real (tiny) checkpoint -----------------------------------------------------------------------
@pytest.mark.slow
def test_checkpoint_setting_loads_the_model_or_rolls_back(tmp_path):
    from app.devtools.tiny_models import write_tiny_models

    data = tmp_path / "tiny"
    write_tiny_models(data, families=("sd1",))
    rt = Runtime(parse_args(["--data-dir", str(data), "--nowebui", "--test-server"], environ={}))
    rt.build_app()
    assert rt.has_checkpoints()
    titles = rt.settings.choices("sd_model_checkpoint")
    assert len(titles) == 1 and titles[0].startswith("tiny-sd1.safetensors")
    assert "tiny.vae.safetensors" in rt.settings.choices("sd_vae")
    try:
        with pytest.raises(LookupError, match="no-such-model"):
            rt.settings.set("sd_model_checkpoint", "no-such-model.safetensors")
        assert rt.settings["sd_model_checkpoint"] is None  # rolled back, not saved
        rt.settings.set("sd_model_checkpoint", "tiny-sd1")  # an alias: stored as the canonical title
        assert rt.manager.current is not None and rt.manager.current.info.filename.endswith("tiny-sd1.safetensors")
        title = rt.manager.current.title
        assert title.startswith("tiny-sd1.safetensors [") and rt.settings["sd_model_checkpoint"] == title
        assert title[len("tiny-sd1.safetensors ["):-1] == rt.settings["sd_checkpoint_hash"][:10]
        saved = json.loads((data / "config.json").read_text())
        assert saved["sd_model_checkpoint"] == title
    finally:
        rt.shutdown()

    # --ckpt FILE (outside the models folder): loaded at start and selected for the run
    extra = tmp_path / "elsewhere" / "mine.safetensors"
    extra.parent.mkdir()
    extra.write_bytes((data / "models" / "Stable-diffusion" / "tiny-sd1.safetensors").read_bytes())
    rt2 = Runtime(parse_args(["--data-dir", str(data), "--nowebui", "--ckpt", str(extra)], environ={}))
    rt2.build_app()
    try:
        warm_up(rt2)
        assert rt2.manager.current.info.filename == str(extra)
        assert rt2.settings["sd_model_checkpoint"].startswith("mine.safetensors")
    finally:
        rt2.shutdown()


def test_api_log(tmp_path, caplog):
    import logging

    rt = runtime_for(tmp_path, "--nowebui", "--api-log", "--api-auth", "u:topsecret")
    client = TestClient(rt.build_app())
    with caplog.at_level(logging.INFO, logger="app.server"):
        client.get("/sdapi/v1/nothing-here")
        client.get("/internal/ping")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("API ")]
    assert len(lines) == 1 and "GET /sdapi/v1/nothing-here 401" in lines[0]
    assert "topsecret" not in caplog.text


@pytest.mark.parametrize(
    ("argv", "setting", "opens"),
    [
        ((), "Disable", False),
        (("--autolaunch",), "Disable", True),
        (("--autolaunch", "--nowebui"), "Disable", False),
        ((), "Local", True),
        (("--listen",), "Local", False),
        (("--listen",), "Remote", True),
    ],
)
def test_browser_opening(tmp_path, argv, setting, opens):
    rt = runtime_for(tmp_path, *argv)
    rt.settings.set("auto_launch_browser", setting, save=False)
    assert should_open_browser(rt) is opens


@pytest.mark.parametrize(
    ("files", "found"),
    [
        ([], False),
        (["models/Stable-diffusion/only.vae.safetensors", "models/Stable-diffusion/readme.txt"], False),
        (["models/Stable-diffusion/sub/a.safetensors"], True),
        (["models/Stable-diffusion/old.ckpt"], True),
        (["models/Stable-diffusion/pipe/model_index.json"], True),
        (["models/VAE/x.safetensors"], False),
        (["models/diffusion_models/z_image_turbo_bf16.safetensors"], True),  # split-file models count too
        (["models/unet/flux1-dev-Q8_0.gguf"], True),
        (["models/text_encoders/qwen_3_4b.safetensors"], False),
    ],
)
def test_has_checkpoints(tmp_path, files, found):
    rt = runtime_for(tmp_path, "--nowebui")
    for rel in files:
        f = tmp_path / "data" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
    assert rt.has_checkpoints() is found


def test_api_calls_wait_for_warm_up_imports(tmp_path):
    import threading

    rt = runtime_for(tmp_path, "--nowebui")
    client = TestClient(rt.build_app())
    rt.imports_ready.clear()
    assert client.get("/internal/ping").status_code == 200  # health checks are never held
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(client.get("/sdapi/v1/nothing").status_code))
    t.start()
    t.join(timeout=0.5)
    assert t.is_alive() and not result
    rt.imports_ready.set()
    t.join(timeout=10)
    assert result == [404]


def test_port_in_use_exits_with_a_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "COMMANDLINE_ARGS"}
        env["OMP_NUM_THREADS"] = "1"
        out = subprocess.run([sys.executable, "-m", "app", "--data-dir", str(tmp_path / "d"), "--nowebui",
                              "--port", str(port)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert f"could not serve on 127.0.0.1:{port}" in out.stderr


def test_cors_flag(tmp_path):
    rt = runtime_for(tmp_path, "--nowebui", "--cors-allow-origins", "http://good.example,http://also.example")
    client = TestClient(rt.build_app())
    pre = {"Origin": "http://good.example", "Access-Control-Request-Method": "POST"}
    r = client.options("/sdapi/v1/txt2img", headers=pre)
    assert r.headers.get("access-control-allow-origin") == "http://good.example"
    r = client.options("/sdapi/v1/txt2img", headers={**pre, "Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize(
    ("argv", "warned"),
    [
        ((), []),
        (("--listen",), ["web UI"]),
        (("--listen", "--api"), ["web UI", "HTTP API"]),
        (("--listen", "--api", "--gradio-auth", "a:b", "--api-auth", "c:d"), []),
        (("--listen", "--nowebui"), ["HTTP API"]),
    ],
)
def test_loud_warning_when_listening_without_auth(tmp_path, caplog, argv, warned):
    import logging

    rt = runtime_for(tmp_path, *argv)
    with caplog.at_level(logging.WARNING, logger="atelier"):
        warn_about_exposure(rt)
    messages = [r.getMessage() for r in caplog.records if "WITHOUT a password" in r.getMessage()]
    assert len(messages) == len(warned)
    for part, message in zip(warned, messages, strict=True):
        assert part in message
