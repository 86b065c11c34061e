"""The memory check before an allocation (``app.models.memory_check``): model bytes from the file headers, a load or a
job refused with the numbers and what to do when the (faked) free memory is too small, and the app still serving."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.devices import DevicePolicy
from app.models.load.fp8_store import parameter_bytes
from app.models.memory_check import (
    LOAD_MARGIN,
    GiB,
    InsufficientMemoryError,
    MiB,
    check_job,
    check_load,
    file_bytes,
    job_bytes,
    job_size,
)


def _probe(cpu: int, gpu: int = 0):
    """A free-memory probe: *cpu* bytes of RAM, *gpu* bytes on any GPU; records the devices asked."""
    asked: list[str] = []

    def free(device):
        asked.append(torch.device(device).type)
        return cpu if torch.device(device).type == "cpu" else gpu

    free.asked = asked  # type: ignore[attr-defined]
    return free


def _gpu(offload: str = "none") -> DevicePolicy:
    return DevicePolicy(device=torch.device("cuda", 0), dtype=torch.bfloat16, vae_dtype=torch.bfloat16, offload=offload)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from app.devtools.tiny_flux import write_tiny_flux
    from app.devtools.tiny_gguf import write_tiny_flux_gguf

    root = Path(tmp_path_factory.mktemp("memcheck"))
    written = write_tiny_flux(root, "dev")
    written.update(write_tiny_flux_gguf(root, "Q8_0", "dev"))
    return written


def test_file_bytes_match_the_loaded_parameters(files):
    from app.models.load.loader import load_pipeline

    loaded = load_pipeline(files["flux:diffusion_model_gguf"], parts={
        "text_encoder": files["flux:clip_l"], "text_encoder_2": files["flux:t5xxl"], "vae": files["flux:vae"]})
    # fp32 on the CPU: Q8_0 blocks at 34 bytes per 32 weights, the F32 embedders at 4 bytes
    assert file_bytes(files["flux:diffusion_model_gguf"], 4) == parameter_bytes(loaded.pipe.transformer)
    assert file_bytes(files["flux:vae"], 4) == parameter_bytes(loaded.pipe.vae)
    bf16 = file_bytes(files["flux:diffusion_model"], 2)
    assert file_bytes(files["flux:diffusion_model"], 4) == 2 * bf16  # floats counted in the compute dtype
    assert file_bytes(files["flux:diffusion_model_gguf"], 2) < 0.6 * bf16 * 2  # Q8_0 is about half of bf16


def test_fp8_weights_count_one_byte(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "m_fp8.safetensors"
    save_file({"w": torch.zeros(64, 32).to(torch.float8_e4m3fn), "b": torch.zeros(64)}, str(path))
    assert file_bytes(path, 2) == 64 * 32 + 64 * 2


def test_load_refused_when_ram_is_short_names_numbers_and_advice(files):
    need = sum(file_bytes(files[k], 4) for k in ("flux:diffusion_model", "flux:clip_l", "flux:t5xxl", "flux:vae"))
    parts = {"text_encoder": files["flux:clip_l"], "text_encoder_2": files["flux:t5xxl"], "vae": files["flux:vae"]}
    with pytest.raises(InsufficientMemoryError) as err:
        check_load(files["flux:diffusion_model"], parts, DevicePolicy.cpu(), free=_probe(cpu=need))
    text = str(err.value)
    assert "flux1-dev.safetensors" in text and "RAM" in text and "GB" in text and "quantization" in text
    got = check_load(files["flux:diffusion_model"], parts, DevicePolicy.cpu(), free=_probe(cpu=need + LOAD_MARGIN))
    assert got == {"ram": need, "device": 0}


def test_gpu_check_counts_what_stays_on_the_gpu(files):
    parts = {"text_encoder": files["flux:clip_l"], "text_encoder_2": files["flux:t5xxl"], "vae": files["flux:vae"]}
    dm = files["flux:diffusion_model_gguf"]
    # the diffusion model and VAE stay; each encoder visits the GPU alone: the need is the largest of those, not
    # their sum (in the tiny set an encoder is the largest: the transformer is 64 wide)
    resident = file_bytes(dm, 2) + file_bytes(files["flux:vae"], 2)
    encoders = [file_bytes(files["flux:clip_l"], 2), file_bytes(files["flux:t5xxl"], 2)]
    need = max(resident, *encoders)
    ok = check_load(dm, parts, _gpu(), free=_probe(cpu=64 * GiB, gpu=need + LOAD_MARGIN))
    assert ok["device"] == need < resident + sum(encoders)
    probe = _probe(cpu=64 * GiB, gpu=need + LOAD_MARGIN - 1)
    with pytest.raises(InsufficientMemoryError, match=r"cuda:0.*--medvram.*--lowvram"):
        check_load(dm, parts, _gpu(), free=probe)
    assert probe.asked == ["cpu", "cuda"]
    # with an offload mode the GPU is not checked (the offload is what makes it fit)
    probe = _probe(cpu=64 * GiB, gpu=1)
    assert check_load(dm, parts, _gpu("medvram"), free=probe)["device"] == 0 and probe.asked == ["cpu"]


def test_job_bytes_and_refusal():
    small = job_bytes(512, 512, 1, 4, 8, 2)
    assert small == 1 * 4 * 64 * 64 * 4 + 512 * 512 * 128 * 8 * 2 + 3 * 512 * 512 * 4
    assert job_bytes(1024, 1024, 2, 16, 8, 2) > 8 * small
    assert job_bytes(4096, 4096, 1, 16, 8, 2, tile_pixels=512 * 512) < job_bytes(4096, 4096, 1, 16, 8, 2) / 10
    with pytest.raises(InsufficientMemoryError, match=r"4096x4096 .*Tiled VAE"):
        check_job(4096, 4096, 1, 16, 8, 2, torch.device("cuda", 0), free=_probe(0, gpu=8 * GiB))
    assert check_job(4096, 4096, 1, 16, 8, 2, torch.device("cuda", 0), tile_pixels=512 * 512,
                     free=_probe(0, gpu=8 * GiB)) < 8 * GiB
    assert check_job(64, 64, 1, 4, 8, 4, "cpu", free=lambda d: None) > 0  # unknown free memory: not checked


def test_job_size_follows_hires_fix():
    from app.params import GenerationParams

    p = GenerationParams(width=512, height=768)
    assert job_size(p) == (512, 768)
    p.hires.enabled = True
    assert job_size(p) == (1024, 1536)
    p.hires.resize_x = 1000
    assert job_size(p) == (1000, 1500)


def test_manager_refuses_the_load_and_the_job_and_keeps_serving(tmp_path):
    from app.devtools.tiny_models import write_tiny_models
    from bench.app_side import AppBench

    write_tiny_models(tmp_path, families=("sd1",))
    bench = AppBench(tmp_path, {})
    try:
        ckpt = bench.catalog.checkpoint_titles()[0]
        bench.manager.memory_probe = _probe(cpu=1 * MiB)
        with pytest.raises(InsufficientMemoryError, match="tiny-sd1.safetensors"):
            bench.manager.get(ckpt)
        assert bench.manager.load_count == 0  # refused before reading
        bench.manager.memory_probe = _probe(cpu=64 * GiB)
        bench.manager.get(ckpt)
        bench.manager.memory_probe = _probe(cpu=400 * MiB)  # room for a 64² job, not for 2048²
        ok = bench.run(bench.params(ckpt, "a cat", "", 2, 64, 64, 7.0, "Euler", 1, 1))
        assert len(ok.images) == 1
        with pytest.raises(Exception, match=r"2048x2048 job.*needs about") as err:
            bench.run(bench.params(ckpt, "a cat", "", 2, 2048, 2048, 7.0, "Euler", 1, 1))
        assert "GB" in str(err.value)
        again = bench.run(bench.params(ckpt, "a cat", "", 2, 64, 64, 7.0, "Euler", 1, 1))
        assert len(again.images) == 1  # still serving
    finally:
        bench.close()


def test_ema_copies_are_not_counted_and_pickles_skip_the_gpu_side(tmp_path):
    from safetensors.torch import save_file

    st = tmp_path / "with-ema.safetensors"
    save_file({"model.diffusion_model.w": torch.zeros(100, 10), "model_ema.w": torch.zeros(100, 10)}, str(st))
    assert file_bytes(st, 2) == 100 * 10 * 2
    ckpt = tmp_path / "full-ema.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000, 100)}}, ckpt)
    probe = _probe(cpu=64 * GiB, gpu=1)
    # no header: its size on disk counts for RAM, and the GPU is not checked (EMA / optimizer state is dropped)
    assert check_load(ckpt, None, _gpu(), free=probe) == {"ram": ckpt.stat().st_size, "device": 0}
    assert probe.asked == ["cpu"]
    with pytest.raises(InsufficientMemoryError, match="full-ema.ckpt"):
        check_load(ckpt, None, _gpu(), free=_probe(cpu=ckpt.stat().st_size))
