"""Issue 12, findings 2 and 7, attacked through the public routes.

Finding 2: a gradio call whose `FileData.path` names a server file made gradio copy it into its cache, and
`/gradio_api/file=<cached path>` then returned it. Now refused with 403 before gradio runs, gradio itself refuses it
too (the mounted Blocks enforce gradio's file rules), nothing lands in the cache, and `file=` serves only gradio's
upload folder and `outputs/`. Tried without auth, with `--api-auth`, with `--listen`, and logged in under
`--gradio-auth`.

Finding 7: a cross-site form post (or no-cors fetch) reaching a state-changing route; gradio routes open without a
login under `--gradio-auth`.
"""

from __future__ import annotations

import base64
import io
import json
import re
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.cli import parse_args
from app.runtime import Runtime
from tests.helpers import wait_until

EVIL = "https://evil.example"
UI_USER, UI_PASS = "uiuser", "uipass"
API_USER, API_PASS = "apiuser", "apipass"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def make_runtime(tmp_path: Path, *argv: str) -> Runtime:
    return Runtime(parse_args(["--data-dir", str(tmp_path / "data"), *argv], environ={}))


def png_bytes(text: str = "") -> bytes:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    if text:
        info.add_text("parameters", text)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def file_data(path: str | Path) -> dict:
    return {"path": str(path), "meta": {"_type": "gradio.FileData"}}


def pnginfo_api_name(client: TestClient) -> str:
    """The api_name of PNG Info's image → infotext handler (an image input any visitor can call)."""
    cfg = client.get("/config").json()
    image = next(c["id"] for c in cfg["components"] if c.get("props", {}).get("elem_id") == "pnginfo_image")
    dep = next(d for d in cfg["dependencies"] if d["inputs"] == [image])
    return dep["api_name"]


def files_holding(folder: Path, content: bytes) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.rglob("*") if p.is_file() and p.read_bytes() == content]


@pytest.fixture
def upload_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """gradio's upload/cache folder for this test only (it is read when the Blocks are built)."""
    folder = tmp_path / "gradio-uploads"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


@pytest.fixture
def secret(tmp_path: Path) -> tuple[Path, bytes]:
    content = b"TOP-SECRET " + secrets.token_hex(16).encode()
    path = tmp_path / "elsewhere" / "secret.txt"
    path.parent.mkdir()
    path.write_bytes(content)
    return path, content


def ui_client(tmp_path: Path, argv: tuple[str, ...], *, drop_guard: bool = False) -> tuple[Runtime, TestClient]:
    rt = make_runtime(tmp_path, *argv)
    app = rt.build_app()
    if drop_guard:  # to show that gradio itself now refuses, with our HTTP-level check taken out
        from app.web.gradio_files import GradioFileInputGuard

        app.user_middleware = [m for m in app.user_middleware if m.cls is not GradioFileInputGuard]
    client = TestClient(app)
    if "--gradio-auth" in argv:
        r = client.post("/login", data={"username": UI_USER, "password": UI_PASS})
        assert r.status_code == 200, r.text
    return rt, client


# -- finding 2: no server file through the web UI ----------------------------------------------------------------------
FLAG_SETS = {
    "no-auth": (),
    "api-auth": ("--api", "--api-auth", f"{API_USER}:{API_PASS}"),
    "listen": ("--listen",),
    "gradio-auth-logged-in": ("--gradio-auth", f"{UI_USER}:{UI_PASS}"),
}


@pytest.mark.parametrize("flags", FLAG_SETS.values(), ids=FLAG_SETS.keys())
def test_filedata_path_to_a_server_file_is_refused(tmp_path, upload_dir, secret, flags):
    path, content = secret
    rt, client = ui_client(tmp_path, flags)
    with client:
        api_name = pnginfo_api_name(client)
        r = client.post(f"/gradio_api/run/{api_name}", json={"data": [file_data(path)]})
        assert r.status_code == 403, r.text
        assert "data[0].path" in r.json()["detail"] and "uploaded" in r.json()["detail"]
        assert content.decode() not in r.text

        # the queue route too (what the browser uses)
        r = client.post("/gradio_api/queue/join",
                        json={"data": [file_data(path)], "fn_index": 0, "session_hash": "attacker01"})
        assert r.status_code == 403, r.text

        # nothing was copied anywhere gradio serves from, and no path guess reads the file
        assert files_holding(upload_dir, content) == []
        for guess in (str(path), f"{upload_dir}/{path.name}", f"{upload_dir}/../elsewhere/{path.name}"):
            r = client.get(f"/gradio_api/file={guess}")
            assert r.status_code in (403, 404), (guess, r.status_code)
            assert content not in r.content

        # the UI keeps serving: a PNG uploaded from the browser goes through the same handler
        r = client.post("/gradio_api/upload", files={"files": ("mine.png", png_bytes("a red square"), "image/png")})
        assert r.status_code == 200, r.text
        uploaded = r.json()[0]
        assert Path(uploaded).resolve().is_relative_to(upload_dir.resolve())
        r = client.post(f"/gradio_api/run/{api_name}", json={"data": [file_data(uploaded)]})
        assert r.status_code == 200, r.text
        assert "a red square" in r.text
        assert client.get(f"/gradio_api/file={uploaded}").status_code == 200
    rt.shutdown()


def test_gradio_itself_refuses_without_our_request_guard(tmp_path, upload_dir, secret):
    """The root fix: the mounted Blocks apply gradio's own allowed-path rule (before, gradio copied the file)."""
    path, content = secret
    rt, client = ui_client(tmp_path, (), drop_guard=True)
    with client:
        api_name = pnginfo_api_name(client)
        r = client.post(f"/gradio_api/run/{api_name}", json={"data": [file_data(path)]})
        assert r.status_code >= 400
        assert "not uploaded by a user" in r.text
        assert files_holding(upload_dir, content) == []
        cached = re.findall(r"(/[^'\" ]*/secret\.txt)", r.text)
        for guess in cached:
            assert content not in client.get(f"/gradio_api/file={guess}").content
    rt.shutdown()


def test_enforce_gradio_file_rules_sets_and_verifies(tmp_path, upload_dir):
    import gradio as gr

    from app.web.gradio_files import enforce_gradio_file_rules

    with gr.Blocks() as demo:
        gr.Image(type="filepath")
    assert demo.has_launched is False  # what mount_gradio_app leaves
    enforce_gradio_file_rules(demo)
    assert demo.has_launched is True


def test_a_gradio_that_would_accept_any_path_stops_the_ui(tmp_path, upload_dir, monkeypatch):
    from gradio import processing_utils

    monkeypatch.setattr(processing_utils, "_check_allowed", lambda path, check_in_upload_folder: None)
    with pytest.raises(RuntimeError, match="refusing to serve the web UI"):
        make_runtime(tmp_path).build_app()


def test_file_route_serves_outputs_but_not_the_data_dir(tmp_path, upload_dir):
    rt, client = ui_client(tmp_path, ())
    outputs = rt.paths.outputs_dir / "txt2img-images" / "2024-01-01"
    outputs.mkdir(parents=True)
    image = outputs / "00001-1.png"
    image.write_bytes(png_bytes())
    config = rt.paths.data_dir / "config.json"
    config.write_text('{"secret": "x"}')
    with client:
        assert client.get(f"/gradio_api/file={image}").content == image.read_bytes()
        for path in (config, rt.paths.data_dir / "models", outputs / ".." / ".." / ".." / "config.json", "/etc/passwd"):
            assert client.get(f"/gradio_api/file={path}").status_code in (403, 404), path
    rt.shutdown()


def test_refused_file_inputs_walks_nested_values(tmp_path):
    from app.web.gradio_files import refused_file_inputs

    up = tmp_path / "up"
    (up / "h").mkdir(parents=True)
    ok = up / "h" / "a.png"
    ok.write_bytes(b"x")
    (up / "link").symlink_to(tmp_path)  # a link out of the upload folder is outside it
    data = {"data": [file_data(ok), [None, {"image": file_data("/etc/passwd")}], {"x": file_data(up / "link" / "s")},
                     file_data("http://169.254.169.254/latest"), {"path": "/etc/passwd"}]}
    assert sorted(refused_file_inputs(data, up)) == ["data[1][1].image.path", "data[2].x.path", "data[3].path"]
    deep: list = []
    node = deep
    for _ in range(500):
        node.append([])
        node = node[0]
    node.append(file_data("/etc/shadow"))
    assert len(refused_file_inputs(deep, up)) == 1


# -- finding 7: cross-site requests ----------------------------------------------------------------------------------
STATE_ROUTES = {
    "/sdapi/v1/interrupt": ("service", "interrupt"),
    "/sdapi/v1/skip": ("service", "skip"),
    "/sdapi/v1/unload-checkpoint": ("manager", "unload"),
    "/sdapi/v1/reload-checkpoint": ("manager", "reload"),
    "/sdapi/v1/refresh-checkpoints": ("catalog", "refresh_checkpoints"),
    "/sdapi/v1/refresh-vae": ("catalog", "refresh_vaes"),
    "/sdapi/v1/refresh-loras": ("catalog", "refresh_loras"),
    "/sdapi/v1/refresh-embeddings": ("catalog", "refresh_embeddings"),
}


@pytest.fixture
def api(tmp_path, monkeypatch) -> Iterator[tuple[Runtime, TestClient, list[str]]]:
    """An API-only server whose state-changing operations record that they ran."""
    rt = make_runtime(tmp_path, "--nowebui")
    calls: list[str] = []
    for owner, method in set(STATE_ROUTES.values()):
        target = getattr(rt, owner)
        monkeypatch.setattr(target, method, lambda *a, _n=f"{owner}.{method}", **k: calls.append(_n))
    client = TestClient(rt.build_app())
    yield rt, client, calls
    rt.shutdown()


FORM_ATTACKS = {
    "form-urlencoded": {"Origin": EVIL, "Content-Type": "application/x-www-form-urlencoded"},
    "text-plain": {"Origin": EVIL, "Content-Type": "text/plain"},
    "multipart": {"Origin": EVIL, "Content-Type": "multipart/form-data; boundary=x"},
    "no-cors-fetch-no-type": {"Origin": EVIL},
    "origin-null": {"Origin": "null", "Content-Type": "text/plain"},
    "referer-only": {"Referer": EVIL + "/page.html", "Content-Type": "application/x-www-form-urlencoded"},
    "json-from-evil": {"Origin": EVIL, "Content-Type": "application/json"},
    "old-browser-form-no-origin": {"Content-Type": "application/x-www-form-urlencoded"},
    "look-alike-host": {"Origin": "http://testserver.evil.example", "Content-Type": "text/plain"},
}


@pytest.mark.parametrize("route", STATE_ROUTES)
@pytest.mark.parametrize("headers", FORM_ATTACKS.values(), ids=FORM_ATTACKS.keys())
def test_cross_site_post_changes_nothing(api, route, headers):
    rt, client, calls = api
    body = b"a=1" if "Content-Type" in headers else None
    r = client.post(route, headers=headers, content=body)
    assert r.status_code in (403, 415), r.text
    assert "cross-site" in r.json()["detail"] or "send JSON" in r.json()["detail"]
    assert calls == []
    assert client.get("/sdapi/v1/progress").status_code == 200  # still serving


@pytest.mark.parametrize("route", STATE_ROUTES)
@pytest.mark.parametrize("headers", [{}, {"Content-Type": "application/json"}, {"Origin": "http://testserver"},
                                     {"Origin": "http://testserver", "Content-Type": "application/json"},
                                     {"Referer": "http://testserver/some/page"}],
                         ids=["script-no-headers", "script-json", "same-origin", "same-origin-json", "same-referer"])
def test_same_origin_and_script_clients_still_work(api, route, headers):
    rt, client, calls = api
    r = client.post(route, headers=headers, content=b"{}" if "Content-Type" in headers else None)
    assert r.status_code == 200, r.text
    assert calls == ["{}.{}".format(*STATE_ROUTES[route])]


def test_other_state_routes_refuse_cross_site(api):
    rt, client, _ = api
    before = dict(rt.settings.data)
    for route, body in (("/sdapi/v1/options", b'{"samples_format": "jpg"}'),
                        ("/sdapi/v1/txt2img", b'{"prompt": "x"}'),
                        ("/sdapi/v1/png-info", b'{"image": ""}')):
        for headers in ({"Origin": EVIL, "Content-Type": "text/plain"}, {"Content-Type": "text/plain"},
                        {"Origin": EVIL, "Content-Type": "application/json"}):
            r = client.post(route, headers=headers, content=body)
            assert r.status_code in (403, 415), (route, headers, r.status_code)
    assert dict(rt.settings.data) == before
    assert client.get("/sdapi/v1/options").json()["samples_format"] == before.get("samples_format", "png")


def test_behind_a_proxy_and_allowed_origins(tmp_path, monkeypatch):
    rt = make_runtime(tmp_path, "--nowebui", "--cors-allow-origins", "https://tool.example",
                      "--cors-allow-origins-regex", r"https://.*\.trusted\.example")
    calls: list[int] = []
    monkeypatch.setattr(rt.service, "interrupt", lambda *a, **k: calls.append(1))
    client = TestClient(rt.build_app())
    ok = [{"Origin": "https://tool.example"}, {"Origin": "https://a.trusted.example"},
          {"Origin": "https://sd.example.org", "X-Forwarded-Host": "sd.example.org"},
          {"Origin": "https://testserver"}, {"Origin": "http://testserver:80"}]
    for headers in ok:
        assert client.post("/sdapi/v1/interrupt", headers=headers).status_code == 200, headers
    for headers in ({"Origin": "https://trusted.example.evil.example"}, {"Origin": "https://tool.example.evil"},
                    {"Origin": "http://testserver:8080"}):
        assert client.post("/sdapi/v1/interrupt", headers=headers).status_code == 403, headers
    assert len(calls) == len(ok)
    rt.shutdown()


def _serve(app) -> tuple[object, int, threading.Thread]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=30, interval=0.05, message="uvicorn started")
    return server, port, thread


@pytest.mark.parametrize("auth", [False, True], ids=["open", "api-auth"])
def test_webuiapi_client_interrupt_and_skip_still_work(tmp_path, monkeypatch, auth):
    import webuiapi

    rt = make_runtime(tmp_path, "--nowebui", *(("--api-auth", f"{API_USER}:{API_PASS}") if auth else ()))
    calls: list[str] = []
    monkeypatch.setattr(rt.service, "interrupt", lambda *a, **k: calls.append("interrupt"))
    monkeypatch.setattr(rt.service, "skip", lambda *a, **k: calls.append("skip"))
    monkeypatch.setattr(rt.catalog, "refresh_checkpoints", lambda *a, **k: calls.append("refresh"))
    server, port, thread = _serve(rt.build_app())
    try:
        kwargs = {"username": API_USER, "password": API_PASS} if auth else {}
        client = webuiapi.WebUIApi(host="127.0.0.1", port=port, **kwargs)
        assert client.interrupt() == {}
        client.skip()
        client.refresh_checkpoints()
        assert calls == ["interrupt", "skip", "refresh"]
    finally:
        server.should_exit = True
        thread.join(10)
        rt.shutdown()


# -- finding 7: every UI route behind --gradio-auth --------------------------------------------------------------------
GRADIO_ROUTES = [
    ("POST", "/gradio_api/cancel", {"session_hash": "x", "fn_index": 0, "event_id": "e"}),
    ("POST", "/gradio_api/reset", {"session_hash": "x", "fn_index": 0, "event_id": "e"}),
    ("POST", "/gradio_api/queue/join", {"data": [], "fn_index": 0, "session_hash": "x"}),
    ("GET", "/gradio_api/queue/data?session_hash=x", None),
    ("GET", "/gradio_api/heartbeat/x", None),
    ("GET", "/gradio_api/startup-events", None),
    ("GET", "/gradio_api/info", None),
    ("GET", "/gradio_api/upload_progress?upload_id=x", None),
    ("POST", "/gradio_api/stream/e/close", None),
    ("GET", "/gradio_api/token", None),
    ("GET", "/gradio_api/app_id", None),
    ("GET", "/config", None),
]


@pytest.fixture
def gradio_auth(tmp_path, upload_dir) -> Iterator[tuple[Runtime, TestClient]]:
    rt = make_runtime(tmp_path, "--gradio-auth", f"{UI_USER}:{UI_PASS}", "--api")
    with TestClient(rt.build_app()) as client:
        yield rt, client
    rt.shutdown()


def test_gradio_routes_need_a_login(gradio_auth, upload_dir):
    rt, client = gradio_auth
    for method, route, body in GRADIO_ROUTES:
        r = client.request(method, route, json=body)
        assert r.status_code == 401, (route, r.status_code, r.text[:200])
    r = client.post("/gradio_api/upload", files={"files": ("x.png", png_bytes(), "image/png")})
    assert r.status_code == 401 and files_holding(upload_dir, png_bytes()) == []
    image = rt.paths.outputs_dir / "a.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes(png_bytes())
    assert client.get(f"/gradio_api/file={image}").status_code == 401

    # the login page itself still loads, and a wrong password does not log in
    assert client.get("/").status_code == 200
    assert client.post("/login", data={"username": UI_USER, "password": "nope"}).status_code in (400, 401)
    assert client.post("/gradio_api/cancel", json=GRADIO_ROUTES[0][2]).status_code == 401

    # logged in, the same routes answer
    assert client.post("/login", data={"username": UI_USER, "password": UI_PASS}).status_code == 200
    assert client.post("/gradio_api/cancel", json=GRADIO_ROUTES[0][2]).status_code == 200
    assert client.get("/config").status_code == 200
    assert client.get(f"/gradio_api/file={image}").status_code == 200
    # --gradio-auth does not cover the API (that is --api-auth's job, as in A1111)
    assert client.get("/sdapi/v1/progress").status_code == 200


def test_gradio_routes_refuse_cross_site(tmp_path, upload_dir):
    rt, client = ui_client(tmp_path, ())
    with client:
        for method, route, body in GRADIO_ROUTES:
            if method != "POST":
                continue
            r = client.post(route, headers={"Origin": EVIL, "Content-Type": "text/plain"},
                            content=b"{}" if body is None else json.dumps(body).encode())
            assert r.status_code == 403, (route, r.status_code)
            r = client.post(route, headers={"Content-Type": "text/plain"}, content=b"{}")
            assert r.status_code == 415, (route, r.status_code)
        r = client.post("/gradio_api/upload", headers={"Origin": EVIL},
                        files={"files": ("x.png", png_bytes(), "image/png")})
        assert r.status_code == 403 and files_holding(upload_dir, png_bytes()) == []
        # a same-origin page (the UI itself) can upload and call
        r = client.post("/gradio_api/upload", headers={"Origin": "http://testserver"},
                        files={"files": ("x.png", png_bytes(), "image/png")})
        assert r.status_code == 200
        r = client.post("/gradio_api/cancel", headers={"Origin": "http://testserver"},
                        json={"session_hash": "x", "fn_index": 0, "event_id": "e"})
        assert r.status_code == 200
    rt.shutdown()


@pytest.mark.browser
@pytest.mark.slow
def test_browser_login_then_generate_under_gradio_auth(tiny_data_dir, tmp_path):
    """The login page still works with every UI route gated, and a generated image displays after login."""
    import os
    import shutil
    import subprocess
    import sys
    import urllib.request

    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    data = tmp_path / "data"
    shutil.copytree(tiny_data_dir / "models", data / "models", ignore=shutil.ignore_patterns("tiny-sd2v*", "tiny-sdxl*"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "GRADIO_TEMP_DIR": str(tmp_path / "gradio-uploads")}
    cmd = [sys.executable, "-m", "app", "--data-dir", str(data), "--port", str(port),
           "--gradio-auth", f"{UI_USER}:{UI_PASS}"]
    root = Path(__file__).resolve().parents[2]
    log = tmp_path / "server.log"
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    def answers() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            return False

    try:
        wait_until(answers, timeout=120, interval=0.3, message=lambda: log.read_text()[-3000:])
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            failed: list[tuple[int, str]] = []
            page.on("response", lambda r: failed.append((r.status, r.url)) if r.status >= 400 else None)
            page.goto(url)
            page.fill("input[type=password]", UI_PASS)
            page.fill("input[type=text]", UI_USER)
            page.get_by_role("button", name="Login").click()
            page.wait_for_selector("#txt2img_prompt textarea", timeout=60_000)
            page.fill("#txt2img_prompt textarea", "a cat")
            for name, value in (("steps", "2"), ("width", "64"), ("height", "64")):
                box = page.locator(f"#txt2img_{name} input[type=number]")
                box.fill(value)
                box.press("Enter")
            page.click("#txt2img_generate")
            page.wait_for_selector("#html_info_txt2img .atelier-infotext", timeout=90_000)
            page.locator("#txt2img_gallery img").first.wait_for(timeout=20_000)
            page.wait_for_function("document.querySelector('#txt2img_gallery img').naturalWidth === 64",
                                   timeout=20_000)
            browser.close()
        assert failed == []
        assert "refused" not in log.read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
