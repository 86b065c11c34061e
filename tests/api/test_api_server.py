"""The HTTP API end to end: a real server subprocess (`python -m app --nowebui`) on the tiny models.

One server per module (the first request loads the tiny SD1 model); a second one with `--api-auth` and
`--api-server-stop` checks authentication, secret masking and the stop route.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.helpers import die_with_parent, wait_until

ROOT = Path(__file__).resolve().parents[2]
FAST = {"steps": 2, "width": 64, "height": 64, "sampler_name": "Euler"}

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, log: Path, *flags: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.api = self.base + "/sdapi/v1"
        self.data_dir = data_dir
        self.log = log
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
                   COMMANDLINE_ARGS="")
        cmd = [sys.executable, "-m", "app", "--data-dir", str(data_dir), "--nowebui", "--port", str(self.port), *flags]
        self._log_fh = log.open("w")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._log_fh, stderr=subprocess.STDOUT,
                                     preexec_fn=die_with_parent)
        try:
            wait_until(self._answers_ping, timeout=120, interval=0.3)
        except AssertionError:
            self.stop()
            raise RuntimeError(f"server did not start:\n{self.log_tail()}") from None

    def _answers_ping(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            return requests.get(self.base + "/internal/ping", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log_fh.close()


@pytest.fixture(scope="module")
def server(tiny_data_dir, tmp_path_factory):
    data = tmp_path_factory.mktemp("api-data") / "data"
    shutil.copytree(tiny_data_dir, data)
    srv = Server(data, data.parent / "server.log")
    yield srv
    srv.stop()


def b64_png(image: Image.Image, prefix: bool = False) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    text = base64.b64encode(buf.getvalue()).decode()
    return "data:image/png;base64," + text if prefix else text


def decode(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    return image


def txt2img(server: Server, **body) -> dict:
    r = requests.post(server.api + "/txt2img", json={**FAST, **body}, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def sd1_title(server: Server) -> str:
    models = requests.get(server.api + "/sd-models", timeout=30).json()
    return next(m["title"] for m in models if m["model_name"] == "tiny-sd1")


# -- every route answers with the right shape -------------------------------------------------------------------------
GET_SHAPES = {
    "options": dict, "cmd-flags": dict, "samplers": list, "schedulers": list, "upscalers": list,
    "latent-upscale-modes": list, "sd-models": list, "sd-vae": list, "embeddings": dict, "loras": list,
    "memory": dict, "scripts": dict, "script-info": list, "prompt-styles": list, "extensions": list,
    "hypernetworks": list, "face-restorers": list, "realesrgan-models": list, "progress": dict,
}


@pytest.mark.parametrize(("route", "kind"), sorted(GET_SHAPES.items()))
def test_get_routes_answer(server, route, kind):
    r = requests.get(f"{server.api}/{route}", timeout=60)
    assert r.status_code == 200, r.text
    assert isinstance(r.json(), kind)
    assert float(r.headers["X-Process-Time"]) >= 0


def test_list_contents(server):
    api = server.api
    samplers = requests.get(api + "/samplers").json()
    assert samplers[0]["name"] == "DPM++ 2M" and {"name", "aliases", "options"} <= set(samplers[0])
    assert "Euler a" in [s["name"] for s in samplers]
    schedulers = requests.get(api + "/schedulers").json()
    assert schedulers[0]["name"] == "automatic" and schedulers[0]["label"] == "Automatic"
    modes = [m["name"] for m in requests.get(api + "/latent-upscale-modes").json()]
    assert modes[0] == "Latent" and len(modes) == 6
    ups = requests.get(api + "/upscalers").json()
    names = [u["name"] for u in ups]
    assert names[:1] == ["None"] and "Lanczos" in names and any("tiny-esrgan" in n for n in names)
    assert set(ups[0]) == {"name", "model_name", "model_path", "model_url", "scale"}
    assert [v["model_name"] for v in requests.get(api + "/sd-vae").json()] == ["tiny.vae.safetensors"]
    loras = requests.get(api + "/loras").json()
    assert loras[0]["name"] == "tiny-lora" and set(loras[0]) >= {"name", "alias", "path", "metadata"}
    emb = requests.get(api + "/embeddings").json()
    assert set(emb) == {"loaded", "skipped"} and "tiny-emb" in {**emb["loaded"], **emb["skipped"]}
    scripts = requests.get(api + "/scripts").json()
    assert set(scripts) == {"txt2img", "img2img"}
    assert all(name == name.lower() for names in scripts.values() for name in names)
    mem = requests.get(api + "/memory").json()
    assert mem["ram"]["total"] > 0 and ("error" in mem["cuda"] or "system" in mem["cuda"])
    assert requests.get(api + "/hypernetworks").json() == [] and requests.get(api + "/face-restorers").json() == []
    (server.data_dir / "styles.csv").write_text('name,prompt,negative_prompt\n"#c",x,y\nCinematic,"{prompt}, film",ugly\n')
    assert requests.get(api + "/prompt-styles").json() == [
        {"name": "Cinematic", "prompt": "{prompt}, film", "negative_prompt": "ugly"}]


def test_extensions_list(server):
    ext = server.data_dir / "extensions" / "my-ext"
    (ext / ".git" / "refs" / "heads").mkdir(parents=True)
    (ext / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (ext / ".git" / "refs" / "heads" / "main").write_text("0123456789abcdef0123456789abcdef01234567\n")
    (ext / ".git" / "config").write_text('[remote "origin"]\n\turl = https://example.com/my-ext.git\n')
    (server.data_dir / "extensions" / "plain").mkdir()
    items = {e["name"]: e for e in requests.get(server.api + "/extensions").json()}
    assert set(items) == {"my-ext", "plain"}
    mine = items["my-ext"]
    assert (mine["remote"], mine["branch"], mine["commit_hash"]) == (
        "https://example.com/my-ext.git", "main", "0123456789abcdef0123456789abcdef01234567")
    assert mine["version"] == "01234567" and mine["enabled"] is True and items["plain"]["remote"] is None


def test_docs_and_openapi(server):
    assert requests.get(server.base + "/docs", timeout=30).status_code == 200
    spec = requests.get(server.base + "/openapi.json", timeout=30).json()
    assert "/sdapi/v1/txt2img" in spec["paths"] and "/sdapi/v1/img2img" in spec["paths"]


def test_refresh_routes(server, tmp_path):
    for route in ("refresh-checkpoints", "refresh-vae", "refresh-loras", "refresh-embeddings"):
        r = requests.post(f"{server.api}/{route}", timeout=60)
        assert r.status_code == 200, (route, r.text)
    extra = server.data_dir / "models" / "VAE" / "second.vae.safetensors"
    shutil.copy(server.data_dir / "models" / "VAE" / "tiny.vae.safetensors", extra)
    try:
        assert "second.vae.safetensors" not in [v["model_name"] for v in requests.get(server.api + "/sd-vae").json()]
        requests.post(server.api + "/refresh-vae")
        assert "second.vae.safetensors" in [v["model_name"] for v in requests.get(server.api + "/sd-vae").json()]
    finally:
        extra.unlink()
        requests.post(server.api + "/refresh-vae")


# -- generation -------------------------------------------------------------------------------------------------------
def test_txt2img_batch(server):
    body = {"prompt": "a red cube", "negative_prompt": "blurry", "n_iter": 2, "seed": 1234}
    r = requests.post(server.api + "/txt2img", json={**FAST, **body}, timeout=300)
    assert r.status_code == 200, r.text
    assert float(r.headers["X-Process-Time"]) > 0
    data = r.json()
    assert len(data["images"]) == 2
    assert data["parameters"]["prompt"] == "a red cube" and data["parameters"]["n_iter"] == 2
    assert data["parameters"]["sampler_index"] == "Euler"
    assert isinstance(data["info"], str)
    info = json.loads(data["info"])
    assert info["all_seeds"] == [1234, 1235] and info["seed"] == 1234
    assert info["prompt"] == "a red cube" and info["negative_prompt"] == "blurry"
    assert info["steps"] == 2 and info["sampler_name"] == "Euler" and info["width"] == 64
    assert len(info["infotexts"]) == 2 and "Seed: 1235" in info["infotexts"][1]
    for i, text in enumerate(data["images"]):
        assert not text.startswith("data:")
        image = decode(text)
        assert image.format == "PNG" and image.size == (64, 64)
        assert image.info["parameters"] == info["infotexts"][i]
    assert not (server.data_dir / "outputs" / "txt2img-images").exists() or not any(
        (server.data_dir / "outputs" / "txt2img-images").rglob("*.png"))  # save_images false by default


def test_txt2img_hires_fix(server):
    data = txt2img(server, enable_hr=True, hr_scale=2, hr_second_pass_steps=1, denoising_strength=0.5, seed=2)
    assert decode(data["images"][0]).size == (128, 128)
    info = json.loads(data["info"])
    assert "Hires upscale: 2" in info["infotexts"][0] and info["denoising_strength"] == 0.5
    old = txt2img(server, enable_hr=True, firstphase_width=64, firstphase_height=64, width=96, height=128,
                  hr_second_pass_steps=1, seed=2)  # pre-1.0 clients: firstphase_* is the first pass
    assert decode(old["images"][0]).size == (96, 128)


def test_styles_are_applied(server):
    (server.data_dir / "styles.csv").write_text('name,prompt,negative_prompt\nFilm,"{prompt}, film grain",blurry\n')
    info = json.loads(txt2img(server, prompt="a cat", styles=["Film"], seed=4)["info"])
    assert info["prompt"] == "a cat, film grain" and info["negative_prompt"] == "blurry" and info["styles"] == ["Film"]


def test_send_images_false_and_save_images(server):
    data = txt2img(server, send_images=False, save_images=True, seed=77)
    assert data["images"] == []
    saved = list((server.data_dir / "outputs" / "txt2img-images").rglob("*-77.png"))
    assert len(saved) == 1


def test_sd_models_hash_is_file_sha256(server):
    txt2img(server, seed=1)  # loading the model computes its hash
    models = requests.get(server.api + "/sd-models").json()
    item = next(m for m in models if m["model_name"] == "tiny-sd1")
    digest = hashlib.sha256((server.data_dir / "models" / "Stable-diffusion" / "tiny-sd1.safetensors").read_bytes())
    assert item["sha256"] == digest.hexdigest() and item["hash"] == digest.hexdigest()[:10]
    assert item["title"] == f"tiny-sd1.safetensors [{digest.hexdigest()[:10]}]"
    # A1111's fields, plus Atelier's family / format / quant / size_bytes (docs/FAMILIES.md)
    assert set(item) == {"title", "model_name", "hash", "sha256", "filename", "config",
                         "family", "format", "quant", "size_bytes"}
    assert (item["family"], item["format"]) == ("sd1", "safetensors") and item["size_bytes"] > 0


def test_png_info_round_trip(server):
    data = txt2img(server, prompt="a (blue:1.2) ball", seed=4242, cfg_scale=5)
    r = requests.post(server.api + "/png-info", json={"image": "data:image/png;base64," + data["images"][0]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["info"] == json.loads(data["info"])["infotexts"][0]
    params = out["parameters"]
    # values are strings, as A1111's parse_generation_parameters returns them
    assert params["Prompt"] == "a (blue:1.2) ball" and params["Seed"] == "4242" and params["Steps"] == "2"
    assert float(params["CFG scale"]) == 5.0 and params["Size-1"] == "64"
    assert requests.post(server.api + "/png-info", json={"image": ""}).json() == {"info": "", "items": {},
                                                                               "parameters": {}}


def test_infotext_field(server):
    text = "a green tree\nSteps: 3, Sampler: Euler a, CFG scale: 6, Seed: 99, Size: 64x64"
    info = json.loads(txt2img(server, infotext=text, steps=2, sampler_name=None, sampler_index="Euler a")["info"])
    assert (info["prompt"], info["seed"], info["cfg_scale"], info["steps"]) == ("a green tree", 99, 6.0, 2)


def test_img2img(server):
    init = Image.new("RGB", (64, 64), (200, 30, 30))
    body = {**FAST, "init_images": [b64_png(init, prefix=True)], "denoising_strength": 0.5, "seed": 3}
    r = requests.post(server.api + "/img2img", json=body, timeout=300)
    assert r.status_code == 200, r.text
    data = r.json()
    assert len(data["images"]) == 1 and decode(data["images"][0]).size == (64, 64)
    assert data["parameters"]["init_images"] is None  # include_init_images false
    info = json.loads(data["info"])
    assert info["denoising_strength"] == 0.5 and "Denoising strength: 0.5" in info["infotexts"][0]
    r = requests.post(server.api + "/img2img", json={**body, "include_init_images": True, "send_images": False})
    assert r.status_code == 200 and r.json()["parameters"]["init_images"] == body["init_images"]


def test_img2img_sd_upscale_script(server):
    assert "sd upscale" in requests.get(server.api + "/scripts").json()["img2img"]
    info = next(s for s in requests.get(server.api + "/script-info").json() if s["name"] == "sd upscale")
    assert info["is_img2img"] is True and info["is_alwayson"] is False
    body = {**FAST, "init_images": [b64_png(Image.new("RGB", (64, 64), (20, 90, 160)))], "seed": 11,
            "script_name": "SD upscale", "script_args": ["", 16, "Lanczos", 2.0], "denoising_strength": 0.3}
    r = requests.post(server.api + "/img2img", json=body, timeout=300)
    assert r.status_code == 200, r.text
    data = r.json()
    assert decode(data["images"][0]).size == (128, 128)
    assert "SD upscale upscaler: Lanczos" in json.loads(data["info"])["infotexts"][0]


def test_img2img_errors(server):
    r = requests.post(server.api + "/img2img", json=FAST)
    assert r.status_code == 404 and r.json()["errors"] == "Init image not found"
    r = requests.post(server.api + "/img2img", json={**FAST, "init_images": ["definitely not an image"]})
    assert r.status_code == 422
    assert "Invalid encoded image" in r.json()["errors"] and "init_images[0]" in r.json()["errors"]


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"width": 4}, 422, "width"),
    ({"steps": 0}, 422, "steps"),
    ({"sampler_name": "Nope"}, 404, "DPM++ 2M"),
    ({"hr_upscaler": "Nope", "enable_hr": True}, 422, "Latent"),
    ({"override_settings": {"no_such_setting": 1}}, 422, "no_such_setting"),
    ({"script_name": "no such script"}, 422, "Script 'no such script' not found"),
])
def test_bad_requests_are_named_and_server_keeps_serving(server, body, status, needle):
    r = requests.post(server.api + "/txt2img", json={**FAST, **body}, timeout=120)
    assert r.status_code == status, r.text
    err = r.json()
    assert set(err) == {"error", "detail", "body", "errors"} and needle in err["errors"]
    assert "X-Process-Time" in r.headers
    assert requests.get(server.api + "/samplers").status_code == 200


def test_malformed_json_and_image(server):
    r = requests.post(server.api + "/txt2img", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "RequestValidationError"
    r = requests.post(server.api + "/png-info", json={"image": base64.b64encode(b"GIF89a broken").decode()})
    assert r.status_code == 422 and "Invalid encoded image" in r.json()["errors"]
    assert len(txt2img(server, seed=5)["images"]) == 1


def test_extras_single_and_batch(server):
    image = Image.new("RGB", (32, 32), (10, 200, 30))
    esrgan = next(u["name"] for u in requests.get(server.api + "/upscalers").json() if "tiny-esrgan" in u["name"])
    r = requests.post(server.api + "/extra-single-image",
                      json={"image": b64_png(image, prefix=True), "upscaler_1": esrgan, "upscaling_resize": 2})
    assert r.status_code == 200, r.text
    out = r.json()
    assert decode(out["image"]).size == (64, 64) and esrgan in out["html_info"]
    body = {"imageList": [{"data": b64_png(image), "name": "a.png"}, {"data": b64_png(image), "name": "b.png"}],
            "upscaler_1": "Lanczos", "resize_mode": 1, "upscaling_resize_w": 48, "upscaling_resize_h": 40}
    r = requests.post(server.api + "/extra-batch-images", json=body)
    assert r.status_code == 200, r.text
    assert [decode(t).size for t in r.json()["images"]] == [(48, 40), (48, 40)]
    assert not (server.data_dir / "outputs" / "extras-images").exists() or not any(
        (server.data_dir / "outputs" / "extras-images").rglob("*.png"))  # the API writes nothing
    r = requests.post(server.api + "/extra-single-image", json={"image": b64_png(image), "upscaler_1": "Bogus"})
    assert r.status_code == 422 and "upscaler_1" in r.json()["errors"] and "Lanczos" in r.json()["errors"]


def test_interrogate_is_501(server):
    r = requests.post(server.api + "/interrogate", json={"image": b64_png(Image.new("RGB", (8, 8))), "model": "clip"})
    assert r.status_code == 501 and "CLIP interrogator model is not available offline" in r.json()["errors"]


# -- options ----------------------------------------------------------------------------------------------------------
def test_options_get_set_persisted(server):
    opts = requests.get(server.api + "/options").json()
    assert "sd_model_checkpoint" in opts and "send_seed" in opts
    flipped = not opts["send_seed"]
    assert requests.post(server.api + "/options", json={"send_seed": flipped}).status_code == 200
    assert requests.get(server.api + "/options").json()["send_seed"] is flipped
    assert json.loads((server.data_dir / "config.json").read_text())["send_seed"] is flipped
    r = requests.post(server.api + "/options", json={"send_seed": "yes", "jpeg_quality": 50})
    assert r.status_code == 422 and "send_seed" in r.json()["errors"]
    assert requests.get(server.api + "/options").json()["jpeg_quality"] != 50  # all or nothing
    r = requests.post(server.api + "/options", json={"no_such_option": 1})  # kept for extensions, as A1111
    assert r.status_code == 200 and requests.get(server.api + "/options").json()["no_such_option"] == 1
    requests.post(server.api + "/options", json={"send_seed": opts["send_seed"]})


def test_switch_model_through_options(server):
    models = requests.get(server.api + "/sd-models").json()
    target = next(m for m in models if m["model_name"] == "tiny-sd2v")
    seen: list[int] = []
    done = threading.Event()

    def poll() -> None:  # samples the job count during the switch (an observation, not a wait)
        while not done.is_set():
            seen.append(requests.get(server.api + "/progress", timeout=30).json()["state"]["job_count"])
            time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        r = requests.post(server.api + "/options", json={"sd_model_checkpoint": "tiny-sd2v"}, timeout=300)
    finally:
        done.set()
        poller.join()
    assert r.status_code == 200, r.text
    assert max(seen) >= 1  # the switch ran as a queued job
    current = requests.get(server.api + "/options").json()["sd_model_checkpoint"]
    # now hashed (the title from /sd-models may already carry the hash if another test cached it)
    sha = hashlib.sha256(Path(target["filename"]).read_bytes()).hexdigest()
    assert current == f"tiny-sd2v.safetensors [{sha[:10]}]"
    config = json.loads((server.data_dir / "config.json").read_text())
    assert config["sd_model_checkpoint"] == current
    info = json.loads(txt2img(server, seed=8)["info"])
    assert info["sd_model_name"] == "tiny-sd2v"
    r = requests.post(server.api + "/options", json={"sd_model_checkpoint": "tiny-nothing"})
    assert r.status_code == 422 and "tiny-sd1.safetensors" in r.json()["errors"]
    assert requests.post(server.api + "/options", json={"sd_model_checkpoint": "tiny-sd1"}).status_code == 200
    assert requests.get(server.api + "/options").json()["sd_model_checkpoint"] == sd1_title(server)
    info = json.loads(txt2img(server, seed=8, override_settings={"sd_model_checkpoint": "tiny-sd2v"})["info"])
    assert info["sd_model_name"] == "tiny-sd2v"  # this job only:
    assert requests.get(server.api + "/options").json()["sd_model_checkpoint"] == sd1_title(server)


def test_override_settings_kept_when_not_restored(server):
    before = requests.get(server.api + "/options").json()["eta_noise_seed_delta"]
    info = json.loads(txt2img(server, seed=3, sampler_name="Euler a",
                              override_settings={"eta_noise_seed_delta": before + 5})["info"])
    assert "ENSD: " + str(before + 5) in info["infotexts"][0]
    assert requests.get(server.api + "/options").json()["eta_noise_seed_delta"] == before  # restored by default
    txt2img(server, seed=3, override_settings={"eta_noise_seed_delta": before + 5},
            override_settings_restore_afterwards=False)
    assert requests.get(server.api + "/options").json()["eta_noise_seed_delta"] == before + 5
    requests.post(server.api + "/options", json={"eta_noise_seed_delta": before})


def test_unload_and_reload_checkpoint(server):
    assert requests.post(server.api + "/unload-checkpoint", timeout=120).status_code == 200
    assert len(txt2img(server, seed=9)["images"]) == 1  # loads again on demand
    assert requests.post(server.api + "/reload-checkpoint", timeout=300).status_code == 200


# -- queue: progress, interrupt, concurrency -------------------------------------------------------------------------
def test_progress_then_interrupt_returns_early(server):
    result: dict = {}

    def run() -> None:
        result["response"] = requests.post(server.api + "/txt2img", json={**FAST, "steps": 40, "n_iter": 10, "seed": 1},
                                           timeout=300)

    worker = threading.Thread(target=run)
    started = time.time()
    worker.start()

    def second_image_sampling() -> dict | None:
        prog = requests.get(server.api + "/progress").json()
        return prog if prog["state"]["job_no"] >= 1 and prog["state"]["sampling_step"] > 0 else None

    prog = wait_until(second_image_sampling, timeout=120, interval=0.05, message="the second image is sampling")
    state = prog["state"]
    assert state["job_count"] == 10 and state["sampling_steps"] >= 40
    assert 0 < prog["progress"] <= 1 and prog["eta_relative"] >= 0 and state["job"]
    assert decode(prog["current_image"]).size == (64, 64)  # the live preview of the running job
    assert requests.get(server.api + "/progress", params={"skip_current_image": "true"}).json()["current_image"] is None
    assert requests.post(server.api + "/interrupt").json() == {}
    worker.join(120)
    r = result["response"]
    assert r.status_code == 200, r.text
    n = len(r.json()["images"])
    assert 1 <= n < 10
    assert time.time() - started < 60
    idle = requests.get(server.api + "/progress").json()
    assert idle["state"]["job_count"] == 0 and idle["progress"] == 0


def test_concurrent_clients_all_get_their_images(server):
    def one(seed: int) -> tuple[int, dict]:
        r = requests.post(server.api + "/txt2img", json={**FAST, "seed": seed, "prompt": f"p{seed}"}, timeout=300)
        return r.status_code, r.json()

    queued: list[int] = []
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(one, seed) for seed in range(500, 506)]
        while not all(f.done() for f in futures):  # samples the queue size until all answered (an observation)
            queued.append(requests.get(server.api + "/progress").json()["queue_size"])
            time.sleep(0.02)
        results = [f.result() for f in futures]
    assert max(queued) >= 1  # the other clients wait in the shared FIFO queue
    for seed, (status, data) in zip(range(500, 506), results, strict=True):
        assert status == 200, data
        info = json.loads(data["info"])
        assert len(data["images"]) == 1 and info["seed"] == seed and info["prompt"] == f"p{seed}"


# -- the PyPI webuiapi client -----------------------------------------------------------------------------------------
def test_webuiapi_client(server):
    import webuiapi

    api = webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler", steps=2)
    res = api.txt2img(prompt="a cat", width=64, height=64, n_iter=2, seed=21)
    assert len(res.images) == 2 and res.info["all_seeds"] == [21, 22] and res.images[0].size == (64, 64)
    assert res.parameters["steps"] == 2
    res2 = api.img2img(images=[res.image], prompt="a dog", width=64, height=64, seed=5, denoising_strength=0.6)
    assert len(res2.images) == 1 and res2.info["seed"] == 5
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    res3 = api.img2img(images=[res.image], mask_image=mask, prompt="inpaint", width=64, height=64, seed=6)
    assert len(res3.images) == 1
    info = api.png_info(res.image)
    assert "Seed: 21" in info.info
    opts = api.get_options()
    assert "sd_model_checkpoint" in opts
    api.set_options({"jpeg_quality": 81})
    assert api.get_options()["jpeg_quality"] == 81
    api.util_set_model(sd1_title(server), find_closest=False)  # its fuzzy lower-cased match could pick another file
    assert api.util_get_current_model() == sd1_title(server)
    prog = api.get_progress()
    assert prog["state"]["job_count"] == 0
    api.interrupt()
    api.skip()
    assert [s["name"] for s in api.get_samplers()][0] == "DPM++ 2M"
    assert api.get_sd_models() and api.get_cmd_flags()["nowebui"] is True
    ups = [u["name"] for u in api.get_upscalers()]
    esrgan = next(n for n in ups if "tiny-esrgan" in n)
    up = api.extra_single_image(res.image, upscaler_1=esrgan, upscaling_resize=2)
    assert up.image.size == (128, 128) and "Postprocess upscaler" in up.info


def test_router_not_mounted_without_api(tmp_path):
    from fastapi.testclient import TestClient

    from app.cli import parse_args
    from app.runtime import Runtime
    from app.server import build_app

    args = parse_args(["--data-dir", str(tmp_path), "--nowebui"], environ={})
    args.api = False
    client = TestClient(build_app(Runtime(args)))
    assert client.get("/sdapi/v1/samplers").status_code == 404
    assert client.get("/docs").status_code == 404


# -- authentication, secrets, server stop ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def auth_server(tiny_data_dir, tmp_path_factory):
    data = tmp_path_factory.mktemp("api-auth") / "data"
    data.mkdir()
    shutil.copytree(tiny_data_dir / "models", data / "models")
    srv = Server(data, data.parent / "server.log", "--api-auth", "alice:s3cr3t-pw,bob:other-pw",
                 "--api-server-stop", "--test-server")
    yield srv
    srv.stop()


def test_auth_and_secret_masking(auth_server):
    api = auth_server.api
    r = requests.get(api + "/cmd-flags")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].lower().startswith("basic")
    assert "X-Process-Time" in r.headers
    assert requests.get(api + "/samplers", auth=("alice", "wrong")).status_code == 401
    assert requests.post(api + "/txt2img", json=FAST).status_code == 401
    r = requests.get(api + "/cmd-flags", auth=("alice", "s3cr3t-pw"))
    assert r.status_code == 200
    assert "s3cr3t-pw" not in r.text and "other-pw" not in r.text and r.json()["api_auth"] == "***"
    assert requests.get(api + "/samplers", auth=("bob", "other-pw")).status_code == 200
    import webuiapi

    client = webuiapi.WebUIApi(host="127.0.0.1", port=auth_server.port)
    client.set_auth("alice", "s3cr3t-pw")
    assert client.get_options()["sd_model_checkpoint"]


def test_server_restart_route(auth_server):
    auth = ("alice", "s3cr3t-pw")
    assert requests.post(auth_server.api + "/options", json={"jpeg_quality": 55}, auth=auth).status_code == 200
    config = auth_server.data_dir / "config.json"
    config.write_text(config.read_text().replace('"jpeg_quality": 55', '"jpeg_quality": 66'))
    assert requests.get(auth_server.api + "/options", auth=auth).json()["jpeg_quality"] == 55  # still in memory
    assert requests.post(auth_server.api + "/server-restart", auth=auth).status_code == 200

    def quality() -> int | None:
        try:
            return requests.get(auth_server.api + "/options", auth=auth, timeout=5).json()["jpeg_quality"]
        except requests.RequestException:
            return None

    # a fresh process read config.json again
    wait_until(lambda: quality() == 66, timeout=90, interval=0.3, message=auth_server.log_tail)
    assert auth_server.proc.poll() is None


def test_server_stop_route(auth_server):
    r = requests.post(auth_server.api + "/server-stop", auth=("alice", "s3cr3t-pw"))
    assert r.status_code == 200
    auth_server.proc.wait(30)
    assert auth_server.proc.returncode == 0
