"""Issue 12, findings 4 and 5, attacked through the public API routes.

Finding 4: one request froze or monopolised the server: a 4 MB PNG text chunk to /png-info blocked every route,
a 10 MB prompt held the queue, there was no body limit, a 13000x13000 PNG of a few hundred KB cost ~650 MB per
request, and jobs of clients that had gone kept running.
Finding 5: the `infotext` field bypassed validation (`Batch size: 200`, `Size: 4096x64`, `Seed resize from:
9999999x9999999`), NaN/Infinity crashed the error handler or reached config.json, and decompression bombs,
100k-deep JSON and lone surrogates answered 500.

The server is the real app (`Runtime.build_app`, API only) with quick test runners registered on its job
service, so no model is loaded; the disconnect and concurrency attacks use a live uvicorn server.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from fastapi.testclient import TestClient
from PIL import Image, ImageFile
from PIL.PngImagePlugin import PngInfo

from app.cli import parse_args
from app.jobs.job import JobResult
from app.runtime import Runtime
from tests.helpers import wait_until

API = "/sdapi/v1"
FAST = {"width": 64, "height": 64, "steps": 2}
LIMIT_KEYS = ("max_request_body_mb", "api_max_prompt_length", "max_infotext_length", "api_max_image_megapixels",
              "api_max_request_megapixels", "api_image_decode_concurrency")


class Runs:
    """What the test runners saw: the prompts of the jobs that ran, and gates to hold a job while it runs."""

    def __init__(self) -> None:
        self.prompts: list[str] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.interrupted: list[str] = []

    def runner(self, ctx) -> JobResult:
        params = ctx.params
        prompt = params.prompt
        self.prompts.append(prompt)
        if prompt.startswith("hold"):
            self.started.set()
            deadline = time.time() + 20
            # like a sampler between steps: held until released, checking for an interrupt every 20 ms
            while not self.release.wait(0.02) and time.time() < deadline:
                if ctx.interrupted:
                    self.interrupted.append(prompt)
                    break
        infotext = f"{prompt}\nSteps: {params.steps}, Size: {params.width}x{params.height}"
        if prompt == "surrogate-infotext":  # e.g. an extension adds text no encoder can write
            infotext = "made by \ud800 an extension\nSteps: 2"
        image = Image.new("RGB", (params.width, params.height), (10, 20, 30))
        return JobResult(images=[image], infotexts=[infotext], seeds=[1], subseeds=[1], all_prompts=[prompt],
                         all_negative_prompts=[params.negative_prompt])

    def extras(self, ctx) -> JobResult:
        self.prompts.append("extras")
        return JobResult(images=list(ctx.params["images"]), infotexts=[""])


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> Iterator[tuple[Runtime, Runs]]:
    data = tmp_path_factory.mktemp("requests-data")
    rt = Runtime(parse_args(["--data-dir", str(data), "--nowebui"], environ={}))
    runs = Runs()
    for kind in ("txt2img", "img2img"):
        rt.service.register_runner(kind, runs.runner)
    rt.service.register_runner("extras", runs.extras)
    yield rt, runs
    runs.release.set()
    rt.shutdown()


@pytest.fixture
def api(runtime) -> Iterator[tuple[TestClient, Runtime, Runs]]:
    rt, runs = runtime
    saved = {key: rt.settings.get(key) for key in LIMIT_KEYS}
    runs.prompts.clear()
    runs.interrupted.clear()
    runs.started.clear()
    runs.release.clear()
    yield TestClient(rt.build_app()), rt, runs
    runs.release.set()
    rt.service.wait_idle(10)
    rt.settings.set_many(saved)


def png(size: tuple[int, int] = (64, 64), text: str | None = None, mode: str = "RGB") -> bytes:
    info = PngInfo()
    if text is not None:
        info.add_text("parameters", text)
    buf = io.BytesIO()
    Image.new(mode, size, 0).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def huge_png(width: int, height: int) -> bytes:
    """A valid grayscale PNG of `width`x`height` black pixels: a few hundred KB that decode to width*height bytes
    (built row by row, so the test itself never holds the pixels)."""
    comp = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    parts = [comp.compress(row) for _ in range(height)]
    data = b"".join(parts) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def png_13000() -> bytes:
    return huge_png(13000, 13000)


def assert_4xx_naming(r: requests.Response, *needles: str, status: int | None = None) -> dict:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    if status is not None:
        assert r.status_code == status, (r.status_code, r.text[:500])
    body = r.json()
    message = body.get("errors") or body.get("detail")
    assert isinstance(message, str) and message
    for needle in needles:
        assert needle in message, (needle, message)
    return body


def assert_still_serving(client: TestClient, runs: Runs) -> None:
    r = client.post(f"{API}/txt2img", json={**FAST, "prompt": "still here"})
    assert r.status_code == 200, r.text[:500]
    assert len(r.json()["images"]) == 1 and "still here" in runs.prompts
    assert client.get(f"{API}/options").status_code == 200


# -- finding 4 --------------------------------------------------------------------------------------------------------
def test_oversized_body_is_413_before_it_is_read(api):
    client, rt, runs = api
    rt.settings.set("max_request_body_mb", 1)
    big = {**FAST, "prompt": "x" * (2 * 1024 * 1024)}
    r = client.post(f"{API}/txt2img", json=big)
    assert_4xx_naming(r, "too large", "max_request_body_mb", status=413)

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted while it streams
        yield b'{"prompt": "'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"}'

    r = client.post(f"{API}/txt2img", content=chunked(), headers={"Content-Type": "application/json"})
    assert_4xx_naming(r, "too large", "max_request_body_mb", status=413)
    assert runs.prompts == []  # nothing was generated
    assert_still_serving(client, runs)


def test_ten_megabyte_prompt_is_refused_quickly(api):
    client, _, runs = api
    started = time.perf_counter()
    r = client.post(f"{API}/txt2img", json={**FAST, "prompt": "a " * (5 * 1024 * 1024)})
    assert_4xx_naming(r, "prompt", "api_max_prompt_length", status=422)
    assert time.perf_counter() - started < 30  # generous: it is refused, not generated
    r = client.post(f"{API}/txt2img", json={**FAST, "prompt": "p", "hr_prompt": "b" * 70000, "enable_hr": True})
    assert_4xx_naming(r, "hr_prompt", status=422)
    assert runs.prompts == []
    assert_still_serving(client, runs)


def test_png_info_with_a_4mb_text_chunk_is_refused_fast(api):
    client, _, runs = api
    hostile = png(text="a" * (4 * 1024 * 1024))
    started = time.perf_counter()
    r = client.post(f"{API}/png-info", json={"image": b64(hostile)})
    assert_4xx_naming(r, "image", "max_infotext_length", status=422)
    assert time.perf_counter() - started < 30
    ok = client.post(f"{API}/png-info", json={"image": b64(png(text="cat\nSteps: 3, Seed: 7, Size: 64x64"))})
    assert ok.status_code == 200 and ok.json()["parameters"]["Seed"] == "7"
    assert_still_serving(client, runs)


def test_infotext_field_over_the_limit_is_refused_unparsed(api, monkeypatch):
    client, _, runs = api
    import app.infotext.parse as parse

    calls: list[int] = []
    original = parse.parse_params_line
    monkeypatch.setattr(parse, "parse_params_line", lambda line: calls.append(len(line)) or original(line))
    r = client.post(f"{API}/txt2img", json={**FAST, "infotext": "Steps: 3, " * 200_000})
    assert_4xx_naming(r, "infotext", "max_infotext_length", status=422)
    assert calls == [] and runs.prompts == []


def test_13000_square_png_is_refused_without_decoding(api, png_13000, monkeypatch):
    client, _, runs = api
    assert len(png_13000) < 1024 * 1024  # small on the wire, 169 megapixels decoded
    decoded: list[tuple[int, int]] = []
    original = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or original(self))
    for route, body, field in (
        ("png-info", {"image": b64(png_13000)}, "image"),
        ("img2img", {**FAST, "init_images": [b64(png_13000)]}, "init_images[0]"),
        ("extra-single-image", {"image": b64(png_13000)}, "image"),
        ("extra-batch-images", {"imageList": [{"data": b64(png_13000), "name": "a.png"}]}, "imageList[0].data"),
    ):
        started = time.perf_counter()
        r = client.post(f"{API}/{route}", json=body)
        assert_4xx_naming(r, field, "13000x13000", "api_max_image_megapixels", status=413)
        assert time.perf_counter() - started < 20
    assert (13000, 13000) not in decoded  # the pixels were never decoded
    assert runs.prompts == []
    assert_still_serving(client, runs)


def test_many_images_in_one_request_share_one_pixel_budget(api):
    client, rt, runs = api
    rt.settings.set("api_max_request_megapixels", 1)
    image = b64(png((800, 800)))  # 0.64 MP each: the second one passes the request's 1 MP
    r = client.post(f"{API}/extra-batch-images", json={"imageList": [{"data": image}, {"data": image}]})
    assert_4xx_naming(r, "imageList[1].data", "api_max_request_megapixels", status=413)
    r = client.post(f"{API}/img2img", json={**FAST, "init_images": [image] * 9})  # any number, within the budget
    assert_4xx_naming(r, "init_images[1]", "api_max_request_megapixels", status=413)
    assert runs.prompts == []
    assert_still_serving(client, runs)


def test_image_decoding_is_bounded(api, monkeypatch):
    """At most `api_image_decode_concurrency` images are decoded at once, whatever the number of requests."""
    client, rt, _ = api
    rt.settings.set("api_image_decode_concurrency", 1)
    busy = {"now": 0, "most": 0}
    lock = threading.Lock()
    original = ImageFile.ImageFile.load

    def slow_load(self):
        if not self.tile:  # already decoded: nothing to count
            return original(self)
        with lock:
            busy["now"] += 1
            busy["most"] = max(busy["most"], busy["now"])
        time.sleep(0.2)  # a slow decode, so that unlimited decodes would overlap (the behaviour under test)
        try:
            return original(self)
        finally:
            with lock:
                busy["now"] -= 1

    monkeypatch.setattr(ImageFile.ImageFile, "load", slow_load)
    body = {"image": b64(png(text="x\nSteps: 1, Seed: 1, Size: 8x8"))}
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(client.post(f"{API}/png-info", json=body).status_code))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [200] * 4 and busy["most"] == 1


# -- live server: a slow parse never blocks other routes; a client that leaves loses its job ------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live(api) -> Iterator[tuple[str, Runtime, Runs]]:
    import uvicorn

    client, rt, runs = api
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(client.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=20, interval=0.05, message="uvicorn started")
    yield f"http://127.0.0.1:{port}{API}", rt, runs
    runs.release.set()
    server.should_exit = True
    thread.join(10)


def test_png_info_parse_runs_off_the_event_loop(live, monkeypatch):
    """Even with the text limit off, a big infotext is parsed in a worker thread: other routes answer meanwhile."""
    base, rt, _ = live
    rt.settings.set("max_infotext_length", 0)
    import app.infotext.parse as infotext

    parsing, gate = threading.Event(), threading.Event()
    real = infotext.parse_generation_parameters

    def held_parse(text, *args, **kwargs):
        parsing.set()
        gate.wait(20)  # stands in for a parse that takes long
        return real(text, *args, **kwargs)

    monkeypatch.setattr(infotext, "parse_generation_parameters", held_parse)
    hostile = png(text="prompt " * 600_000 + "\nSteps: 3, Seed: 11, Size: 64x64")  # 4 MB
    answer: dict = {}
    worker = threading.Thread(target=lambda: answer.update(
        r=requests.post(f"{base}/png-info", json={"image": b64(hostile)}, timeout=60)))
    worker.start()
    try:
        assert parsing.wait(20)
        r = requests.get(f"{base}/options", timeout=5)  # answers while the hostile request is in flight
        assert r.status_code == 200 and worker.is_alive()
    finally:
        gate.set()
        worker.join(60)
    assert answer["r"].status_code == 200 and answer["r"].json()["parameters"]["Seed"] == "11"


def _send_and_hang_up(base: str, body: dict, received: Callable[[], object]) -> None:
    """Send a complete HTTP request and close the connection without reading the answer, once `received()` says
    the server has the request (its job is queued or running)."""
    host_port = base.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    data = json.dumps(body).encode()
    head = (f"POST {API}/txt2img HTTP/1.1\r\nHost: {host_port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(head + data)
        wait_until(received, timeout=20, message="the server took the request")


def _job_state(rt: Runtime, prompt: str) -> str | None:
    for snap in rt.service.jobs_snapshot():
        job = rt.service.get(snap["id"])
        if job is not None and getattr(job.params, "prompt", None) == prompt:
            return snap["state"]
    return None


def _wait_state(rt: Runtime, prompt: str, states: tuple[str, ...], timeout: float = 10) -> str | None:
    """The job's state once it is one of `states` (the test then checks which); fails after `timeout`."""
    def reached() -> str | None:
        state = _job_state(rt, prompt)
        return state if state in states else None

    return wait_until(reached, timeout=timeout, interval=0.05,
                      message=lambda: f"{prompt!r} is {_job_state(rt, prompt)}, not one of {states}")


def test_queued_job_of_a_client_that_left_never_runs(live):
    base, rt, runs = live
    holder = threading.Thread(target=lambda: requests.post(f"{base}/txt2img", json={**FAST, "prompt": "hold-1"},
                                                           timeout=60))
    holder.start()
    try:
        assert runs.started.wait(20)  # the worker is busy with hold-1
        _send_and_hang_up(base, {**FAST, "prompt": "victim"}, lambda: _job_state(rt, "victim"))
        assert _wait_state(rt, "victim", ("cancelled",)) == "cancelled"
        assert rt.service.queue_size == 0
    finally:
        runs.release.set()
        holder.join(30)
    rt.service.wait_idle(10)
    assert "victim" not in runs.prompts and "hold-1" in runs.prompts
    r = requests.post(f"{base}/txt2img", json={**FAST, "prompt": "after"}, timeout=30)
    assert r.status_code == 200 and "after" in runs.prompts


def test_running_job_of_a_client_that_left_is_interrupted(live):
    base, rt, runs = live
    _send_and_hang_up(base, {**FAST, "prompt": "hold-victim"}, runs.started.is_set)
    assert runs.started.wait(20)
    assert _wait_state(rt, "hold-victim", ("interrupted", "done")) == "interrupted"
    assert runs.interrupted == ["hold-victim"]
    r = requests.post(f"{base}/txt2img", json={**FAST, "prompt": "after"}, timeout=30)
    assert r.status_code == 200


# -- finding 5: every hostile input is a 4xx naming the field ----------------------------------------------------------
def _raw(text: str) -> tuple[str, str]:
    return ("raw", text)


def _deep(depth: int) -> str:
    return '{"prompt": "x", "script_args": ' + "[" * depth + "]" * depth + "}"


HOSTILE: list[tuple[str, str, object, int, tuple[str, ...]]] = [
    # sizes and batch sizes have no A1111 range any more; the memory limit (api_max_generation_megapixels) holds
    ("infotext-batch-size", "txt2img", {"steps": 2, "infotext": "x\nSteps: 2, Seed: 1, Size: 2048x2048, Batch size: 200"},
     413, ("batch_size", "infotext", "api_max_generation_megapixels")),
    ("infotext-size", "txt2img", {"steps": 2, "infotext": "x\nSteps: 2, Seed: 1, Size: 16384x16384"}, 413,
     ("width", "api_max_generation_megapixels")),
    ("infotext-seed-resize", "txt2img", {**FAST, "infotext": "x\nSteps: 2, Seed: 1, Seed resize from: 9999999x9999999"},
     413, ("api_max_generation_megapixels",)),
    ("infotext-img2img", "img2img", {"steps": 2, "init_images": ["<png>"], "infotext": "x\nSteps: 2, Seed: 1, Size: 64x4096000"},
     413, ("api_max_generation_megapixels",)),
    ("seed-resize-field", "txt2img", {**FAST, "seed_resize_from_w": 9999999, "seed_resize_from_h": 9999999}, 413,
     ("api_max_generation_megapixels",)),
    ("batch-size-field", "txt2img", {**FAST, "width": 8192, "height": 8192, "batch_size": 2}, 413,
     ("batch_size", "api_max_generation_megapixels")),
    ("hires-field", "txt2img", {**FAST, "enable_hr": True, "hr_resize_x": 100000, "hr_resize_y": 100000}, 413,
     ("hires fix", "api_max_generation_megapixels")),
    ("seed-resize-h-field", "txt2img", {**FAST, "seed_resize_from_h": 4}, 422, ("seed_resize_from_h",)),
    ("cfg-nan", "txt2img", _raw('{"cfg_scale": NaN, "width": 64, "height": 64}'), 422, ("cfg_scale", "finite")),
    ("eta-nan", "txt2img", _raw('{"eta": NaN, "width": 64, "height": 64}'), 422, ("eta", "finite")),
    ("eta-infinity", "txt2img", _raw('{"eta": Infinity, "width": 64, "height": 64}'), 422, ("eta",)),
    ("denoising-nan", "img2img", _raw('{"denoising_strength": NaN, "init_images": ["<png>"]}'), 422,
     ("denoising_strength",)),
    ("override-nan", "txt2img", _raw('{"override_settings": {"eta_ddim": -Infinity}}'), 422,
     ("override_settings.eta_ddim",)),
    ("script-args-nan", "txt2img", _raw('{"script_args": [1, NaN]}'), 422, ("script_args[1]",)),
    ("options-nan", "options", _raw('{"eta_ddim": NaN}'), 422, ("eta_ddim",)),
    ("options-infinity", "options", _raw('{"s_noise": Infinity}'), 422, ("s_noise",)),
    ("deep-100k", "txt2img", _raw("[" * 100_000 + "]" * 100_000), 422, ("nested",)),
    ("deep-100k-object", "options", _raw('{"a":' * 100_000 + "1" + "}" * 100_000), 422, ("nested",)),
    ("deep-200", "txt2img", _raw(_deep(200)), 422, ("script_args", "nested")),
    ("surrogate-prompt", "txt2img", _raw('{"prompt": "cat \\ud800 dog", "width": 64, "height": 64}'), 422,
     ("prompt", "surrogate")),
    ("surrogate-infotext", "txt2img", _raw('{"infotext": "a\\udfff\\nSteps: 3"}'), 422, ("infotext", "surrogate")),
    ("surrogate-options", "options", _raw('{"samples_filename_pattern": "\\ud83d"}'), 422,
     ("samples_filename_pattern",)),
    ("invalid-utf8", "txt2img", ("bytes", b'{"prompt": "\xff\xfe"}'), 400, ("parsing",)),
    ("bomb-png-info", "png-info", {"image": "<bomb>"}, 413, ("image",)),
    ("bomb-img2img", "img2img", {**FAST, "init_images": ["<bomb>"]}, 413, ("init_images[0]",)),
    ("not-an-image", "png-info", {"image": b64(b"GIF89a not really")}, 422, ("image",)),
    ("huge-prompt", "txt2img", {**FAST, "prompt": "z" * 70_000}, 422, ("prompt",)),
    ("long-infotext", "txt2img", {**FAST, "infotext": "y" * (2 << 20)}, 422, ("infotext",)),
]


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """20000x20000: past PIL's own decompression-bomb limit (2 x MAX_IMAGE_PIXELS)."""
    return huge_png(20000, 20000)


@pytest.mark.parametrize(("route", "body", "status", "needles"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_input_is_a_4xx_naming_the_field(api, bomb, route, body, status, needles):
    client, rt, runs = api
    if "<bomb>" in json.dumps(body, default=str):
        rt.settings.set("api_max_image_megapixels", 0)  # our own limit off: PIL's bomb check must still answer 4xx
    config = Path(rt.settings.path)
    before = config.read_bytes() if config.exists() else None
    url = f"{API}/{route}"
    if isinstance(body, tuple) and body[0] == "raw":
        text = body[1].replace('"<png>"', json.dumps(b64(png())))
        r = client.post(url, content=text.encode(), headers={"Content-Type": "application/json"})
    elif isinstance(body, tuple):
        r = client.post(url, content=body[1], headers={"Content-Type": "application/json"})
    else:
        text = json.dumps(body).replace('"<png>"', json.dumps(b64(png()))).replace('"<bomb>"', json.dumps(b64(bomb)))
        r = client.post(url, content=text.encode(), headers={"Content-Type": "application/json"})
    assert_4xx_naming(r, *needles, status=status)
    assert runs.prompts == []  # nothing was generated
    after = config.read_bytes() if config.exists() else None
    if route == "options":
        assert after == before  # nothing was written into config.json
    assert_still_serving(client, runs)


def test_an_infotext_within_the_limits_still_applies(api):
    client, _, runs = api
    r = client.post(f"{API}/txt2img", json={"infotext": "a fox\nSteps: 3, Size: 128x64, Batch size: 2, "
                                                        "Seed resize from: 256x256", "width": 64})
    assert r.status_code == 200, r.text[:500]
    info = json.loads(r.json()["info"])
    assert runs.prompts == ["a fox"] and info["width"] == 64 and info["height"] == 64  # explicit fields win


def test_an_image_whose_infotext_cannot_be_encoded_is_not_lost(api):
    """Text with a lone surrogate that reaches the save path (here from a runner, e.g. an extension) is stored
    with U+FFFD instead: the image still comes back with its infotext."""
    client, _, runs = api
    r = client.post(f"{API}/txt2img", json={**FAST, "prompt": "surrogate-infotext"})
    assert r.status_code == 200, r.text[:500]
    image = Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))
    assert image.info["parameters"].startswith("made by \ufffd an extension")


def test_linear_params_scanner_matches_the_reference_regex():
    """The scanner that replaced the regex (whose search held the interpreter lock for seconds on a long line)
    finds exactly the regex's (key, value) pairs, and a hostile 1 MB line takes milliseconds."""
    import random

    from app.infotext.parse import _PARAM_RE, parse_params_line

    pieces = ["a", "b", " ", ":", ",", '"', "\\", "-", "/", "é", "1", "\n", "(", "x" * 300, "Steps: 20", ", ",
              'ab: "c, d", ']
    rng = random.Random(12)
    for _ in range(5_000):
        line = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        expected = [(m.group("key"), m.group("value")) for m in _PARAM_RE.finditer(line) if m.group(0)]
        assert parse_params_line(line) == expected, line
    for hostile in ("a" * 1_000_000, "a " * 500_000, ("b" * 255 + ":") * 4000):
        started = time.perf_counter()
        parse_params_line(hostile)
        assert time.perf_counter() - started < 5  # generous: the regex took seconds per megabyte
