"""GGUF files (city96's quantized diffusion models, llama.cpp text encoders) on the tiny Z-Image.

The tiny GGUF files hold the same weights as the tiny bf16 files (``app.devtools.tiny_gguf``), quantized. A whole app
job on the Q8_0 files is compared with the same job on the bf16 files, same seed, 4 Euler steps at 64²: the measured
max abs difference of the final latents is 0.012 for Q8_0, 0.021 for Q5_K_S, 0.046 for Q4_K_S (latents up to 4.3;
docs/FAMILIES.md); the test bounds Q8_0 at 0.05 and Q4_K_S at 0.2. The quantized linears stay quantized in memory
(``GGUFLinear``); a LoRA on them is added in the forward pass and removed exactly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.app_side import AppBench

PROMPT = "a red fox in the snow"


def _data_dir(root: Path, quant: str | None) -> Path:
    """A data dir with the tiny Z-Image VAE and, for *quant*, only the GGUF transformer and encoder (else bf16)."""
    from app.devtools.tiny_gguf import write_tiny_zimage_gguf
    from app.devtools.tiny_zimage import write_tiny_zimage

    written = write_tiny_zimage(root)
    if quant is not None:
        written["zimage:diffusion_model"].unlink()
        written["zimage:text_encoder"].unlink()
        write_tiny_zimage_gguf(root, quant)
    return root


@pytest.fixture(scope="module")
def benches(tmp_path_factory):
    made = {q: AppBench(_data_dir(Path(tmp_path_factory.mktemp(f"gguf-{q}")), q), {})
            for q in (None, "Q8_0", "Q4_K_S")}
    yield made
    for bench in made.values():
        bench.close()


def _ckpt(bench: AppBench) -> str:
    return next(t for t in bench.catalog.checkpoint_titles() if "z_image" in t)


def _latents(bench: AppBench, steps: int = 4) -> torch.Tensor:
    pipe = bench.manager.get(_ckpt(bench)).loaded.pipe
    out = pipe(prompt=PROMPT, height=64, width=64, num_inference_steps=steps, guidance_scale=0.0,
               generator=torch.Generator("cpu").manual_seed(1234), output_type="latent")
    return out.images.float()


def test_tiny_gguf_files_are_detected_with_their_quantization(tmp_path):
    from app.devtools.tiny_gguf import write_tiny_zimage_gguf
    from app.models.catalog.file_info import model_file_info
    from app.models.load.detect import detect_file_role

    for quant, label in (("Q8_0", "Q8_0"), ("Q5_K_S", "Q5_K"), ("Q4_K_S", "Q4_K")):
        paths = write_tiny_zimage_gguf(tmp_path, quant)
        dm = detect_file_role(paths["zimage:diffusion_model_gguf"])
        assert (dm.family, dm.role, dm.detail["format"], dm.detail["gguf_quant"]) == (
            "zimage", "diffusion_model", "gguf", label)
        te = detect_file_role(paths["zimage:text_encoder_gguf"])
        assert (te.family, te.role) == ("qwen3", "text_encoder")
        info = model_file_info(paths["zimage:diffusion_model_gguf"])
        assert info["family"] == "zimage" and info["format"] == "gguf" and info["quant"] == label
        assert info["size_bytes"] == paths["zimage:diffusion_model_gguf"].stat().st_size


@pytest.mark.parametrize(("bits", "name"), [(4, "Q4_K"), (5, "Q5_K")])
def test_k_quant_encoder_round_trips_through_the_gguf_decoder(bits, name):
    import gguf

    from app.devtools.tiny_gguf import _kquant

    rows = np.random.default_rng(0).normal(size=(3, 512)).astype(np.float32)
    blocks = _kquant(rows, bits)
    assert blocks.shape == (3, 2 * (144 if bits == 4 else 176))
    back = gguf.quants.dequantize(blocks, getattr(gguf.GGMLQuantizationType, name))
    # one quantization step of a 32-value sub-block is (max - min) / (2^bits - 1); the error is at most about half
    sub = rows.reshape(-1, 32)
    step = ((sub.max(1) - np.minimum(sub.min(1), 0)) / (2**bits - 1)).max()
    assert np.abs(back - rows).max() <= 0.6 * step + 1e-3


def test_gguf_model_is_listed_with_family_quant_and_size(benches):
    from app.models.catalog.file_info import model_file_info

    bench = benches["Q8_0"]
    names = bench.catalog.checkpoint_titles()
    assert any(n.startswith("z_image_turbo-Q8_0.gguf") for n in names)
    path = next(c.filename for c in bench.catalog.checkpoints() if c.filename.endswith(".gguf"))
    got = model_file_info(path)
    assert got["family"] == "zimage" and got["quant"] == "Q8_0" and got["format"] == "gguf"
    assert got["size_bytes"] > 0


def test_gguf_weights_stay_quantized_in_memory(benches):
    from diffusers.quantizers.gguf.utils import GGUFLinear

    loaded = benches["Q8_0"].manager.get(_ckpt(benches["Q8_0"])).loaded
    transformer, encoder = loaded.pipe.transformer, loaded.pipe.text_encoder
    linears = [m for m in transformer.modules() if isinstance(m, GGUFLinear)]
    assert len(linears) > 10 and all(m.weight.dtype == torch.uint8 for m in linears)
    assert any(isinstance(m, GGUFLinear) for m in encoder.modules())
    q_bytes = sum(m.weight.numel() for m in linears)  # Q8_0: 34 bytes per 32 weights
    logical = sum(m.in_features * m.out_features for m in linears)
    assert q_bytes == pytest.approx(logical * 34 / 32)
    assert loaded.extra["stored_dtypes"]["diffusion_model"][0] == "gguf:Q8_0"


def test_q8_job_is_close_to_bf16_on_the_same_seed(benches):
    ref = _latents(benches[None])
    q8 = _latents(benches["Q8_0"])
    q4 = _latents(benches["Q4_K_S"])
    assert ref.shape == q8.shape == (1, 16, 8, 8)
    d8, d4 = (q8 - ref).abs().max().item(), (q4 - ref).abs().max().item()
    assert 0 < d8 < 0.05, d8
    assert d8 < d4 < 0.2, d4


def test_app_job_on_gguf_gives_the_bf16_image(benches):
    images = {}
    for key in (None, "Q8_0"):
        bench = benches[key]
        params = bench.params(_ckpt(bench), PROMPT, "", 4, 64, 64, 1.0, "Euler", 1234, 1)
        params.scheduler = "Simple"
        images[key] = np.asarray(bench.run(params).images[0], dtype=np.int16)
    assert images["Q8_0"].std() > 1
    assert int(np.abs(images["Q8_0"] - images[None]).max()) <= 6


def test_truncated_gguf_is_a_clear_error(tmp_path):
    from app.devtools.tiny_gguf import write_tiny_zimage_gguf
    from app.models.load.checkpoint_io import CheckpointLoadError, read_state_dict

    path = write_tiny_zimage_gguf(tmp_path, "Q8_0")["zimage:diffusion_model_gguf"]
    cut = tmp_path / "cut.gguf"
    shutil.copy(path, cut)
    with open(cut, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    with pytest.raises(CheckpointLoadError, match="cut.gguf"):
        read_state_dict(cut)


# -- LoRA on a GGUF base: applied in the forward pass, the quantized weights never touched --------------------------

def test_lora_on_gguf_linear_is_added_in_the_forward_pass(benches):
    from app.models.lora.apply import apply_networks, restore_networks
    from app.models.lora.forward_delta import dequantized_weight
    from app.models.lora.network import network_from_state_dict

    pipe = benches["Q8_0"].manager.get(_ckpt(benches["Q8_0"])).loaded.pipe
    to_q = pipe.transformer.layers[0].attention.to_q
    blocks = to_q.weight.detach().clone()
    g = torch.Generator().manual_seed(5)
    down, up = torch.randn(4, to_q.in_features, generator=g) * 0.1, torch.randn(to_q.out_features, 4, generator=g) * 0.1
    net = network_from_state_dict({"transformer.layers.0.attention.to_q.lora_A.weight": down,
                                   "transformer.layers.0.attention.to_q.lora_B.weight": up}, "qlora")
    x = torch.randn(3, to_q.in_features, generator=g)
    plain = to_q(x)
    result = apply_networks(pipe, [(net, 1.0, 0.5)])
    assert result.applied and not result.refused and result.modules_patched == 1
    expected = torch.nn.functional.linear(x, dequantized_weight(to_q) + 0.5 * (up @ down))
    torch.testing.assert_close(to_q(x), expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(to_q.weight.detach(), blocks)  # never merged into the blocks
    restore_networks(pipe)
    assert not to_q._forward_hooks
    assert torch.equal(to_q(x), plain) and torch.equal(to_q.weight.detach(), blocks)


def _job(bench: AppBench, prompt: str) -> np.ndarray:
    params = bench.params(_ckpt(bench), prompt, "", 4, 64, 64, 1.0, "Euler", 1234, 1)
    params.scheduler = "Simple"
    return np.asarray(bench.run(params).images[0], dtype=np.int16)


def test_lora_job_on_gguf_matches_bf16_and_restores(benches):
    from diffusers.quantizers.gguf.utils import GGUFLinear

    from app.models.lora.handler import register_lora_handlers

    q8, ref = benches["Q8_0"], benches[None]
    for bench in (q8, ref):  # the server's Runtime registers these; the bare service does not
        register_lora_handlers(bench.manager.extra_networks)
    plain = _job(q8, PROMPT)
    transformer = q8.manager.get(_ckpt(q8)).loaded.pipe.transformer
    before = {n: p.detach().clone() for n, p in transformer.named_parameters()}
    lora_prompt = PROMPT + " <lora:tiny-zimage-lora:1>"
    with_lora = _job(q8, lora_prompt)
    assert int(np.abs(with_lora - plain).max()) > 10  # the LoRA changed the image
    assert int(np.abs(with_lora - _job(ref, lora_prompt)).max()) <= 8  # as on the bf16 base
    assert all(not m._forward_hooks for m in transformer.modules() if isinstance(m, GGUFLinear))
    after = dict(transformer.named_parameters())
    assert all(torch.equal(before[n], after[n].detach()) for n in before)
    assert np.array_equal(_job(q8, PROMPT), plain)  # restored exactly
