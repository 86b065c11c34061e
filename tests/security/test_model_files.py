"""Issue 12, findings 1 and 6: a model file never runs code, and all-NaN weights are refused by name.

Written as an attacker would: hostile files are dropped into the model folders of a real (tiny) data
dir, then selected through the public HTTP API of the real app (in-process TestClient on a Runtime).
Every payload writes a marker file when it runs; the tests assert the marker never appears, the answer
is a 4xx whose message names the file and the reason, and the server keeps serving afterwards.

The payloads are real: ``test_payloads_really_run_on_unprotected_loaders`` shows each one writes its
marker through the loaders the app used before the fix (spandrel's load-from-path, full unpickling).
"""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

PAYLOAD_TEXT = "PWNED"


# -- hostile files ------------------------------------------------------------------------------------------------
class HostileScript(torch.nn.Module):
    """A TorchScript module whose ``__setstate__`` (run by ``torch.jit.load``) writes a file with
    ``torch.from_file(shared=True)``: the same primitive can overwrite any file the server may write."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(4))
        self.marker = marker
        self.scratch = torch.zeros(0, dtype=torch.uint8)

    @torch.jit.export
    def __getstate__(self) -> tuple[str, torch.Tensor, bool]:
        return (self.marker, self.weight, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, torch.Tensor, bool]) -> None:
        self.marker = state[0]
        self.weight = state[1]
        self.training = state[2]
        mapped = torch.from_file(self.marker, shared=True, size=5, dtype=torch.uint8)
        mapped.copy_(torch.tensor([80, 87, 78, 69, 68], dtype=torch.uint8))  # "PWNED"
        self.scratch = mapped

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def write_torchscript_bomb(path: Path, marker: Path) -> Path:
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, not gone
        torch.jit.save(torch.jit.script(HostileScript(str(marker))), str(path))
    return path


class PicklePayload:
    """Unpickling it runs Python code (``exec``) that writes the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write({PAYLOAD_TEXT!r})",))


def write_pickle_bomb(path: Path, marker: Path, tensors: dict[str, torch.Tensor], legacy: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**tensors, "payload": PicklePayload(marker)}, path, _use_new_zipfile_serialization=not legacy)
    return path


def b64_png(size: tuple[int, int] = (16, 16)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (40, 120, 200)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


# -- the app with hostile model folders ---------------------------------------------------------------------------
class Hostile:
    def __init__(self, root: Path) -> None:
        self.data = root / "data"
        self.markers = root / "markers"
        self.markers.mkdir(parents=True)

    def marker(self, name: str) -> Path:
        return self.markers / name

    def fired(self) -> list[str]:
        return sorted(p.name for p in self.markers.iterdir())


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    from safetensors.torch import load_file, save_file

    from app.devtools.tiny_models import write_tiny_models

    h = Hostile(tmp_path_factory.mktemp("hostile-models"))
    write_tiny_models(h.data, families=("sd1",))
    models = h.data / "models"
    good_esrgan = torch.load(models / "ESRGAN" / "tiny-esrgan-4x.pth", weights_only=True)

    # upscalers: TorchScript as .pt and renamed .pth; pickles with a payload; a pickle named .safetensors
    write_torchscript_bomb(models / "ESRGAN" / "evil-script.pt", h.marker("esrgan-script-pt"))
    write_torchscript_bomb(models / "ESRGAN" / "evil-script-renamed.pth", h.marker("esrgan-script-pth"))
    write_torchscript_bomb(models / "RealESRGAN" / "evil-script-real.pt", h.marker("realesrgan-script"))
    write_pickle_bomb(models / "ESRGAN" / "evil-pickle.pth", h.marker("esrgan-pickle"), good_esrgan)
    write_pickle_bomb(models / "SwinIR" / "evil-legacy.pth", h.marker("swinir-legacy"), good_esrgan, legacy=True)
    write_pickle_bomb(models / "DAT" / "evil-disguised.safetensors", h.marker("dat-disguised"), good_esrgan)
    # LoRA, embeddings, checkpoints
    lora = load_file(str(models / "Lora" / "tiny-lora.safetensors"))
    write_pickle_bomb(models / "Lora" / "evil-lora.pt", h.marker("lora-pickle"), lora)
    save_file({k: torch.full_like(v, float("nan")) for k, v in lora.items()}, str(models / "Lora" / "nan-lora.safetensors"))
    torch.save({k: torch.full_like(v, float("nan")) for k, v in good_esrgan.items()}, models / "ESRGAN" / "nan-esrgan.pth")
    write_torchscript_bomb(models / "Lora" / "evil-lora-script.safetensors", h.marker("lora-script"))
    emb = {"emb_params": torch.randn(2, 32) * 0.1}
    write_pickle_bomb(h.data / "embeddings" / "evil-emb.pt", h.marker("embedding-pickle"), emb)
    write_torchscript_bomb(h.data / "embeddings" / "evil-emb-script.bin", h.marker("embedding-script"))
    ckpt = load_file(str(models / "Stable-diffusion" / "tiny-sd1.safetensors"))
    write_pickle_bomb(models / "Stable-diffusion" / "evil.ckpt", h.marker("ckpt-pickle"), {"state_dict": ckpt})
    write_torchscript_bomb(models / "Stable-diffusion" / "evil-script.ckpt", h.marker("ckpt-script"))
    # a diffusers folder naming its own code file and an arbitrary module as components
    folder = models / "Stable-diffusion" / "evil-folder"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "evil_unet.py").write_text(
        f"open({str(h.marker('folder-code'))!r}, 'w').write({PAYLOAD_TEXT!r})\nclass Evil: pass\n")
    (folder / "model_index.json").write_text(json.dumps(
        {"_class_name": "StableDiffusionPipeline", "unet": ["evil_unet", "Evil"], "scheduler": ["os", "system"]}))
    # all-NaN weights: a checkpoint, a VAE, an embedding
    save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in ckpt.items()},
              str(models / "Stable-diffusion" / "all-nan.safetensors"))
    vae = load_file(str(models / "VAE" / "tiny.vae.safetensors"))
    save_file({k: torch.full_like(v, float("inf")) for k, v in vae.items()}, str(models / "VAE" / "all-inf.vae.safetensors"))
    emb_width = next(v for k, v in ckpt.items() if k.endswith("token_embedding.weight")).shape[1]
    save_file({"emb_params": torch.full((2, emb_width), float("nan"))}, str(h.data / "embeddings" / "nan-emb.safetensors"))

    from app.cli import parse_args
    from app.runtime import Runtime

    rt = Runtime(parse_args(["--data-dir", str(h.data), "--nowebui"], environ={}))
    with TestClient(rt.build_app()) as client:
        h.client = client
        h.runtime = rt
        # the first checkpoint by name is all-nan.safetensors: start from the good one
        r = client.post(f"{API}/options", json={"sd_model_checkpoint": "tiny-sd1.safetensors"})
        assert r.status_code == 200, r.text
        yield h
    rt.shutdown()
    assert h.fired() == [], "a hostile model file ran its code"


API = "/sdapi/v1"
FAST = {"prompt": "a tree", "steps": 2, "width": 64, "height": 64, "seed": 1, "sampler_name": "Euler"}


def assert_refused(r, *needles: str, status: tuple[int, ...] = (400, 404, 422)) -> str:
    assert r.status_code in status, r.text
    body = r.json()
    message = body.get("errors") or body.get("detail") or ""
    message = message if isinstance(message, str) else str(message)
    for needle in needles:
        assert needle in message, message
    return message


def assert_still_serving(h: Hostile) -> None:
    r = h.client.post(f"{API}/extra-single-image", json={"image": b64_png(), "upscaler_1": "Lanczos",
                                                         "upscaling_resize": 2})
    assert r.status_code == 200, r.text
    assert h.client.get(f"{API}/upscalers").status_code == 200


# -- the payloads are real ----------------------------------------------------------------------------------------
def test_payloads_really_run_on_unprotected_loaders(tmp_path):
    """Control: without the fix these files execute (spandrel's path loading, full unpickling)."""
    import spandrel

    for name in ("attack.pt", "attack.pth"):
        marker = tmp_path / f"marker-{name}"
        path = write_torchscript_bomb(tmp_path / name, marker)
        with pytest.raises(Exception):  # noqa: B017 - not an upscaler, but the code has already run
            spandrel.ModelLoader().load_from_file(str(path))
        assert marker.read_text() == PAYLOAD_TEXT, name
    marker = tmp_path / "marker-pickle"
    path = write_pickle_bomb(tmp_path / "attack.ckpt", marker, {"w": torch.ones(1)})
    torch.load(path, weights_only=False)
    assert marker.read_text() == PAYLOAD_TEXT


# -- finding 1: upscalers -----------------------------------------------------------------------------------------
def test_torchscript_upscaler_via_extras_single_is_refused(hostile):
    listed = [u["name"] for u in hostile.client.get(f"{API}/upscalers").json()]
    assert "evil-script" in listed  # listing never loads a file
    r = hostile.client.post(f"{API}/extra-single-image", json={"image": b64_png(), "upscaler_1": "evil-script"})
    assert_refused(r, "evil-script.pt", "TorchScript", "not supported")
    assert hostile.fired() == []
    assert_still_serving(hostile)


def test_torchscript_renamed_pth_via_extras_batch_is_detected_by_bytes(hostile):
    body = {"imageList": [{"data": b64_png(), "name": "a.png"}], "upscaler_1": "evil-script-renamed",
            "upscaling_resize": 2}
    r = hostile.client.post(f"{API}/extra-batch-images", json=body)
    assert_refused(r, "evil-script-renamed.pth", "TorchScript")
    r = hostile.client.post(f"{API}/extra-single-image",
                            json={"image": b64_png(), "upscaler_1": "Lanczos", "upscaler_2": "evil-script-real",
                                  "extras_upscaler_2_visibility": 0.5})
    assert_refused(r, "evil-script-real.pt", "TorchScript")
    assert hostile.fired() == []
    assert_still_serving(hostile)


def test_torchscript_upscaler_via_txt2img_hires_is_refused(hostile):
    body = {**FAST, "enable_hr": True, "hr_upscaler": "evil-script", "hr_scale": 2, "denoising_strength": 0.5,
            "hr_second_pass_steps": 1}
    r = hostile.client.post(f"{API}/txt2img", json=body)
    assert_refused(r, "evil-script.pt", "TorchScript")
    assert hostile.fired() == []
    r = hostile.client.post(f"{API}/txt2img", json=FAST)
    assert r.status_code == 200 and len(r.json()["images"]) == 1


def test_torchscript_upscaler_via_sd_upscale_script_is_refused(hostile):
    body = {**FAST, "init_images": [b64_png((64, 64))], "denoising_strength": 0.3,
            "script_name": "SD upscale", "script_args": ["", 16, "evil-script", 2.0]}
    r = hostile.client.post(f"{API}/img2img", json=body)
    assert_refused(r, "evil-script.pt", "TorchScript")
    assert hostile.fired() == []
    assert_still_serving(hostile)


def test_torchscript_upscaler_in_the_ui_extras_tab_shows_an_error(hostile):
    """The web UI's Extras handler runs the same job: the refusal is shown as an error box."""
    from app.ui.common import ERROR_CLASS, stream_job
    from app.ui.extras import extras_params

    image = Image.new("RGB", (16, 16), (1, 2, 3))
    params = extras_params(image, "Scale by", 2, 64, 64, True, "evil-script", "None", 0)
    updates = list(stream_job(hostile.runtime.service, params, "extras", poll=0.05))
    final = updates[-1]
    assert final.done and final.error and ERROR_CLASS in final.info
    assert "evil-script.pt" in final.error and "TorchScript" in final.error
    assert hostile.fired() == []
    assert_still_serving(hostile)


@pytest.mark.parametrize(("name", "filename"), [
    ("evil-pickle", "evil-pickle.pth"),
    ("evil-legacy", "evil-legacy.pth"),
    ("evil-disguised", "evil-disguised.safetensors"),  # a pickle named .safetensors: read as what it is
])
def test_pickle_upscaler_payload_is_refused(hostile, name, filename):
    r = hostile.client.post(f"{API}/extra-single-image", json={"image": b64_png(), "upscaler_1": name})
    assert_refused(r, filename, "refused", "not executed")
    assert hostile.fired() == []
    assert_still_serving(hostile)


def test_real_upscaler_still_works(hostile):
    r = hostile.client.post(f"{API}/extra-single-image",
                            json={"image": b64_png(), "upscaler_1": "tiny-esrgan-4x", "upscaling_resize": 2})
    assert r.status_code == 200, r.text
    out = Image.open(io.BytesIO(base64.b64decode(r.json()["image"])))
    assert out.size == (32, 32)


# -- finding 1: LoRA, embeddings, checkpoints ---------------------------------------------------------------------
@pytest.mark.parametrize(("lora", "reason"), [
    ("evil-lora", "not executed"),
    ("evil-lora-script", "TorchScript"),  # named .safetensors: detected by its bytes
    ("nan-lora", "NaN/Inf"),
])
def test_hostile_lora_never_runs(hostile, lora, reason, caplog):
    with caplog.at_level(logging.WARNING):
        r = hostile.client.post(f"{API}/txt2img", json={**FAST, "prompt": f"a tree <lora:{lora}:1>"})
    assert hostile.fired() == []
    if r.status_code == 200:  # A1111: a LoRA that cannot be loaded is reported, the image is still made
        told = r.json()["info"] + caplog.text
        assert lora in told and reason in told, told[-2000:]
    else:
        assert_refused(r, lora, reason)
    assert_still_serving(hostile)


def test_hostile_embeddings_are_not_loaded(hostile, caplog):
    with caplog.at_level(logging.WARNING, logger="app.models.embeddings"):
        assert hostile.client.post(f"{API}/refresh-embeddings").status_code == 200
        loaded = hostile.client.get(f"{API}/embeddings").json()
    assert hostile.fired() == []
    names = set(loaded["loaded"]) | set(loaded["skipped"])
    assert "evil-emb" not in names and "evil-emb-script" not in names and "nan-emb" not in names
    assert "tiny-emb" in loaded["loaded"]  # the good ones are still there
    log = caplog.text
    assert "evil-emb.pt" in log and "not executed" in log
    assert "evil-emb-script.bin" in log and "TorchScript" in log
    assert "nan-emb.safetensors" in log and "NaN" in log
    r = hostile.client.post(f"{API}/txt2img", json={**FAST, "prompt": "evil-emb evil-emb-script"})
    assert r.status_code == 200 and hostile.fired() == []


@pytest.mark.parametrize(("title", "reason"), [("evil.ckpt", "not executed"), ("evil-script.ckpt", "TorchScript")])
def test_hostile_checkpoint_is_refused(hostile, title, reason):
    r = hostile.client.post(f"{API}/options", json={"sd_model_checkpoint": title})
    assert_refused(r, title, reason)
    assert hostile.fired() == []
    r = hostile.client.post(f"{API}/txt2img", json={**FAST, "override_settings": {"sd_model_checkpoint": title}})
    assert_refused(r, title, reason)
    assert hostile.fired() == []
    r = hostile.client.post(f"{API}/txt2img", json=FAST)
    assert r.status_code == 200, r.text


def test_diffusers_folder_cannot_name_its_own_code(hostile):
    titles = [m["title"] for m in hostile.client.get(f"{API}/sd-models").json()]
    title = next(t for t in titles if "evil-folder" in t)
    r = hostile.client.post(f"{API}/options", json={"sd_model_checkpoint": title})
    assert_refused(r, "evil-folder", "model_index.json", "evil_unet", "never run")
    assert hostile.fired() == []
    r = hostile.client.post(f"{API}/txt2img", json=FAST)
    assert r.status_code == 200, r.text


# -- finding 6: all-NaN weights are refused by name ---------------------------------------------------------------
def test_all_nan_checkpoint_is_refused_by_name(hostile):
    r = hostile.client.post(f"{API}/options", json={"sd_model_checkpoint": "all-nan.safetensors"})
    message = assert_refused(r, "all-nan.safetensors", "NaN")
    assert "no-half-vae" not in message
    r = hostile.client.post(f"{API}/txt2img", json=FAST)
    assert r.status_code == 200, r.text
    assert "tiny-sd1" in r.json()["info"]


def test_all_nan_upscaler_is_refused_by_name(hostile):
    r = hostile.client.post(f"{API}/extra-single-image", json={"image": b64_png(), "upscaler_1": "nan-esrgan"})
    assert_refused(r, "nan-esrgan.pth", "NaN/Inf")
    assert_still_serving(hostile)


def test_all_inf_vae_is_refused_by_name(hostile):
    r = hostile.client.post(f"{API}/options", json={"sd_vae": "all-inf.vae.safetensors"})
    if r.status_code == 200:  # the VAE is applied with the next job
        r = hostile.client.post(f"{API}/txt2img", json=FAST)
    try:
        message = assert_refused(r, "all-inf.vae.safetensors", "NaN/Inf")
        assert "no-half-vae" not in message
    finally:
        assert hostile.client.post(f"{API}/options", json={"sd_vae": "Automatic"}).status_code == 200
    r = hostile.client.post(f"{API}/txt2img", json=FAST)
    assert r.status_code == 200, r.text


def test_nan_check_cost_is_small():
    """The check reads at most 3 x 256 values per tensor, however large the tensor is."""
    import time

    from app.models.load.checkpoint_io import FINITE_SAMPLE, _sample, check_finite

    big = torch.zeros(64 * 1024 * 1024, dtype=torch.float16)  # 128 MB
    assert _sample(big).numel() == 3 * FINITE_SAMPLE
    weights = {f"t{i}": big[i * 32768 : (i + 1) * 32768] for i in range(2000)}
    start = time.perf_counter()
    check_finite(weights, "big.safetensors")
    assert time.perf_counter() - start < 2.0
    big[:32768].fill_(float("nan"))
    with pytest.raises(ValueError, match=r"big\.safetensors: 1 of 2000 .*NaN/Inf \(t0\)"):
        check_finite(weights, "big.safetensors")
    for dtype in (torch.float8_e4m3fn, torch.bfloat16):  # fp8 checkpoints: isfinite has no fp8 kernel
        check_finite({"w": torch.zeros(4096).to(dtype)}, "fp8.safetensors")
        with pytest.raises(ValueError, match=r"fp8\.safetensors: all"):
            check_finite({"w": torch.full((4096,), float("nan")).to(dtype)}, "fp8.safetensors")



def test_detection_looks_inside_the_archive_not_at_its_name(tmp_path):
    """``torch.save`` names the archive after the file: a plain ``code.pth`` / ``constants.pth`` state dict
    is not TorchScript, and a TorchScript file stays TorchScript under any name or extension."""
    from app.models.load.checkpoint_io import TorchScriptError, detect_file_format, read_state_dict

    for name in ("code.pth", "constants.pth"):
        torch.save({"w": torch.ones(2)}, tmp_path / name)
        assert detect_file_format(tmp_path / name) == "torch-zip"
        assert torch.equal(read_state_dict(tmp_path / name)["w"], torch.ones(2))
    marker = tmp_path / "marker"
    for name in ("code.pt", "weights.safetensors", "model.ckpt", "learned_embeds.bin"):
        path = write_torchscript_bomb(tmp_path / name, marker)
        assert detect_file_format(path) == "torchscript"
        with pytest.raises(TorchScriptError, match=name.replace(".", r"\.") + ".*TorchScript"):
            read_state_dict(path, allow_unsafe=True)  # --disable-safe-unpickle never allows TorchScript
    assert not marker.exists()
