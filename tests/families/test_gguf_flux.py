"""GGUF FLUX.1 diffusion models (city96's ``flux1-dev-Q8_0.gguf`` layout) and GGUF T5 encoders (city96's
``t5-v1_1-xxl-encoder-Q8_0.gguf``, llama.cpp names) on the tiny FLUX.1 dev.

The GGUF files hold the same weights as the tiny bf16 / fp16 files (``app.devtools.tiny_gguf.write_tiny_flux_gguf``),
quantized. Measured (same seed, 4 Euler steps at 64², guidance 3.5, FluxPipeline latents of magnitude up to 4.0):
the max abs latent difference to the bf16 files is 0.0024 for Q8_0 and 0.0069 for Q4_K_S (the tiny model is 64
wide: only its 256-wide rows, the MLP outputs, take Q4_K blocks, the rest fall back to Q8_0); the tests bound Q8_0
at 0.03. The T5 Q8_0 encoder's output differs from the fp32 one by under 2 % of its largest value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.app_side import AppBench

PROMPT = "a red fox in the snow"


def _data_dir(root: Path, quant: str | None) -> Path:
    """The tiny FLUX.1 dev files; with *quant* the diffusion model and T5 are GGUF files instead."""
    from app.devtools.tiny_flux import write_tiny_flux
    from app.devtools.tiny_gguf import write_tiny_flux_gguf

    written = write_tiny_flux(root, "dev")
    written["flux:all_in_one"].unlink()
    if quant is not None:
        written["flux:diffusion_model"].unlink()
        written["flux:t5xxl"].unlink()
        write_tiny_flux_gguf(root, quant, "dev")
    return root


@pytest.fixture(scope="module")
def benches(tmp_path_factory):
    made = {q: AppBench(_data_dir(Path(tmp_path_factory.mktemp(f"fluxgguf-{q}")), q), {})
            for q in (None, "Q8_0", "Q4_K_S")}
    yield made
    for bench in made.values():
        bench.close()


def _ckpt(bench: AppBench) -> str:
    return next(t for t in bench.catalog.checkpoint_titles() if t.startswith("flux1-dev"))


def _latents(bench: AppBench) -> torch.Tensor:
    pipe = bench.manager.get(_ckpt(bench)).loaded.pipe
    out = pipe(prompt=PROMPT, height=64, width=64, num_inference_steps=4, guidance_scale=3.5,
               generator=torch.Generator("cpu").manual_seed(1234), output_type="latent")
    return out.images.float()


def test_gguf_flux_and_t5_files_are_detected_and_listed(tmp_path):
    from app.devtools.tiny_gguf import write_tiny_flux_gguf
    from app.models.catalog.file_info import model_file_info
    from app.models.load.detect import detect_file_role

    for quant, label in (("Q8_0", "Q8_0"), ("Q4_K_S", "Q8_0")):  # tiny rows (64) are too short for K blocks
        paths = write_tiny_flux_gguf(tmp_path / quant, quant)
        dm = detect_file_role(paths["flux:diffusion_model_gguf"])
        assert (dm.family, dm.role, dm.detail["variant"], dm.detail["format"]) == ("flux", "diffusion_model", "flux",
                                                                                   "gguf")
        assert dm.detail["gguf_quant"] == label and "F32" in dm.detail["gguf_types"]  # embedders kept F32
        te = detect_file_role(paths["flux:t5xxl_gguf"])
        assert (te.family, te.role, te.detail["vocab_size"]) == ("t5xxl", "text_encoder", 32128)
        info = model_file_info(paths["flux:diffusion_model_gguf"])
        assert (info["family"], info["format"], info["quant"]) == ("flux", "gguf", label)
        assert info["size_bytes"] == paths["flux:diffusion_model_gguf"].stat().st_size
    schnell = write_tiny_flux_gguf(tmp_path / "s", "Q8_0", "schnell")["flux-schnell:diffusion_model_gguf"]
    assert detect_file_role(schnell).detail["variant"] == "flux-schnell"


def test_gguf_flux_is_in_the_catalog_with_the_gguf_t5(benches):
    bench = benches["Q8_0"]
    assert any(t.startswith("flux1-dev-Q8_0.gguf") for t in bench.catalog.checkpoint_titles())
    loaded = bench.manager.get(_ckpt(bench)).loaded
    assert loaded.family == "flux"
    assert loaded.extra["parts"]["text_encoder_2"].endswith("t5-v1_1-xxl-encoder-Q8_0.gguf")
    assert loaded.extra["stored_dtypes"]["diffusion_model"][0] == "gguf:Q8_0"


def test_gguf_flux_and_t5_stay_quantized_in_memory(benches):
    from diffusers.quantizers.gguf.utils import GGUFLinear

    pipe = benches["Q8_0"].manager.get(_ckpt(benches["Q8_0"])).loaded.pipe
    linears = [m for m in pipe.transformer.modules() if isinstance(m, GGUFLinear)]
    # every block linear is quantized; the input embedders and the final layer were stored F32 and are dense
    assert len(linears) == 2 * 14 + 2 * 6
    assert all(m.weight.dtype == torch.uint8 for m in linears)
    assert sum(m.weight.numel() for m in linears) == pytest.approx(
        sum(m.in_features * m.out_features for m in linears) * 34 / 32)
    assert type(pipe.transformer.x_embedder) is torch.nn.Linear
    t5_linears = [n for n, m in pipe.text_encoder_2.named_modules() if isinstance(m, GGUFLinear)]
    assert len(t5_linears) == 2 * 6  # q, k, v, o, wi_0, wi_1 per block; wo is dequantized (read by dtype)
    assert not any(n.endswith("wo") for n in t5_linears)


def test_q8_flux_latents_are_close_to_bf16_on_the_same_seed(benches):
    ref, q8, q4 = (_latents(benches[k]) for k in (None, "Q8_0", "Q4_K_S"))
    assert ref.shape == q8.shape == (1, 16, 64)
    d8, d4 = (q8 - ref).abs().max().item(), (q4 - ref).abs().max().item()
    assert 0 < d8 < 0.03, d8
    assert d8 < d4 < 0.2, d4
    assert ref.abs().max() > 1


def test_app_job_on_gguf_flux_gives_the_bf16_image(benches):
    images = {}
    for key in (None, "Q8_0"):
        bench = benches[key]
        params = bench.params(_ckpt(bench), PROMPT, "", 4, 64, 64, 1.0, "Euler", 1234, 1)
        params.scheduler = "Simple"
        images[key] = np.asarray(bench.run(params).images[0], dtype=np.int16)
    assert images["Q8_0"].std() > 1
    assert int(np.abs(images["Q8_0"] - images[None]).max()) <= 6


def test_t5_q8_gguf_encoder_output_is_close_to_fp32(tmp_path):
    from app.devtools.tiny_gguf import write_tiny_flux_gguf
    from app.devtools.tiny_t5 import tiny_t5_file_tensors
    from app.models.load.t5_load import build_t5_encoder, load_t5_file

    gguf_path = write_tiny_flux_gguf(tmp_path, "Q8_0")["flux:t5xxl_gguf"]
    quantized = load_t5_file(gguf_path, torch.float32)
    reference = build_t5_encoder(tiny_t5_file_tensors(3, torch.float16), torch.float32, "fp16")
    ids = torch.tensor([[71, 1842, 3, 9, 5095, 16, 8, 4356, 1] + [0] * 7])
    with torch.no_grad():
        a = reference(input_ids=ids).last_hidden_state
        b = quantized(input_ids=ids).last_hidden_state
    err = (a - b).abs().max().item()
    assert 0 < err < 0.02 * a.abs().max().item(), (err, a.abs().max().item())


# -- LoRA on a GGUF FLUX base: applied in the forward pass ---------------------------------------------------------

def _job(bench: AppBench, prompt: str) -> np.ndarray:
    params = bench.params(_ckpt(bench), prompt, "", 4, 64, 64, 1.0, "Euler", 1234, 1)
    params.scheduler = "Simple"
    return np.asarray(bench.run(params).images[0], dtype=np.int16)


def test_kohya_lora_job_on_gguf_flux_matches_bf16_and_restores(benches):
    from diffusers.quantizers.gguf.utils import GGUFLinear

    from app.models.lora.handler import register_lora_handlers

    q8, ref = benches["Q8_0"], benches[None]
    for bench in (q8, ref):  # the server's Runtime registers these; the bare service does not
        register_lora_handlers(bench.manager.extra_networks)
    plain = _job(q8, PROMPT)
    transformer = q8.manager.get(_ckpt(q8)).loaded.pipe.transformer
    before = {n: p.detach().clone() for n, p in transformer.named_parameters()}
    lora_prompt = PROMPT + " <lora:tiny-flux-lora:0.6>"
    with_lora = _job(q8, lora_prompt)
    assert int(np.abs(with_lora - plain).max()) > 10  # the LoRA changed the image
    assert int(np.abs(with_lora - _job(ref, lora_prompt)).max()) <= 8  # as on the bf16 base
    assert all(not m._forward_hooks for m in transformer.modules() if isinstance(m, GGUFLinear))
    after = dict(transformer.named_parameters())
    assert all(torch.equal(before[n], after[n].detach()) for n in before)
    assert np.array_equal(_job(q8, PROMPT), plain)  # restored exactly
