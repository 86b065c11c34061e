"""ComfyUI's scaled fp8 files kept small (``app.models.load.fp8_store``): the block linears of a ``*_fp8_scaled``
FLUX.1 / Z-Image / SD3 diffusion model and of a scaled T5 / Qwen3 encoder stay ``float8_e4m3fn`` with their float32
scale, computed as ``weight * scale`` in the compute dtype; the image equals the one of the same model with every
scaled weight folded at load (bit for bit up to float summation order, <= 1e-5), is within 2e-2 of the old
fold-to-bf16 file's (the bf16 rounding of the folded weights: measured 4.4e-3 on the tiny FLUX, 5.1e-3 on the tiny
Z-Image, latents up to 4.3), and a LoRA on such a base is added in the forward pass and restored exactly."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from app.models.load.checkpoint_io import read_state_dict
from app.models.load.fp8_store import Fp8Linear, fold, fp8_linears, parameter_bytes, pop_scales
from bench.app_side import AppBench

PROMPT = "a red fox in the snow"
#: max |latent difference| to the same file folded to bf16 at read (the old path), on the CPU's fp32 compute dtype
FOLDED_BF16_TOLERANCE = 2e-2


def _folded(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of *model* whose ``Fp8Linear`` are plain linears holding ``weight * scale`` in the compute dtype."""
    twin = copy.deepcopy(model)
    for module in fp8_linears(twin):
        scale = module.scale_weight
        weight = module.weight.data.to(module.compute_dtype)
        module.weight.data = weight if scale is None else fold(module.weight.data, scale, module.compute_dtype)
        del module._buffers["scale_weight"]
        module.__class__ = torch.nn.Linear
    return twin


def _write_folded_copy(path: Path, out: Path) -> Path:
    """*path* read the old way (scaled weights folded to bf16) and saved as *out*: the reference file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in read_state_dict(path).items()}, str(out))
    return out


def _check_small(model: torch.nn.Module, expected: int, per_row: bool = False) -> None:
    """*expected* fp8 linears, every one with a float32 scale (one, or one per row); one byte per weight plus four
    per scale value."""
    linears = fp8_linears(model)
    assert len(linears) == expected
    assert all(m.weight.dtype == torch.float8_e4m3fn and m.scale_weight is not None
               and m.scale_weight.dtype == torch.float32 for m in linears)
    weights = sum(m.weight.numel() for m in linears)
    scale_bytes = sum(m.scale_weight.numel() * 4 for m in linears)
    upcast = {t.data_ptr(): t.numel() * (4 if t.is_floating_point() else t.element_size())
              for t in (*model.parameters(), *model.buffers())}
    # fp32 (the CPU compute dtype) would take 4 bytes per weight; kept, 1 byte (a bf16 fold: 2): about half of bf16
    assert parameter_bytes(model) == sum(upcast.values()) - 3 * weights
    assert scale_bytes == 4 * (sum(m.out_features for m in linears) if per_row else len(linears))
    if not per_row:  # one byte per weight: about half of a bf16 fold (per row, a tiny model's rows are short)
        assert weights + scale_bytes <= 0.51 * 2 * weights


def _latents(pipe, **kw) -> torch.Tensor:
    out = pipe(prompt=PROMPT, height=64, width=64, num_inference_steps=3,
               generator=torch.Generator("cpu").manual_seed(7), output_type="latent", **kw)
    return out.images.float()


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    from app.devtools.tiny_models import write_tiny_models

    root = Path(tmp_path_factory.mktemp("fp8-scaled-flux"))
    paths = write_tiny_models(root, families=("flux",), flux_weights="fp8_scaled")
    paths["flux:all_in_one"].unlink()
    ref = root.parent / f"{root.name}-ref"
    paths["ref:diffusion_model"] = _write_folded_copy(paths["flux:diffusion_model"], ref / "flux1-dev-folded.safetensors")
    paths["ref:t5xxl"] = _write_folded_copy(paths["flux:t5xxl"], ref / "t5xxl_folded.safetensors")
    bench = AppBench(root, {})
    yield bench, paths
    bench.close()


def _ckpt(bench: AppBench, start: str) -> str:
    return next(t for t in bench.catalog.checkpoint_titles() if t.startswith(start))


def test_scaled_fp8_keeps_the_scales_when_asked(tmp_path):
    from app.devtools.tiny_fp8 import scaled_fp8_tensors

    w = torch.randn(6, 4)
    path = tmp_path / "x_fp8_scaled.safetensors"
    save_file(scaled_fp8_tensors({"blocks.0.lin.weight": w, "blocks.0.lin.bias": torch.ones(6)}), str(path))
    sd = read_state_dict(path, keep_fp8_scales=True)
    assert set(sd) == {"blocks.0.lin.weight", "blocks.0.lin.bias", "blocks.0.lin.scale_weight"}  # no input scale, marker
    scales = pop_scales(sd)
    assert set(sd) == {"blocks.0.lin.weight", "blocks.0.lin.bias"} and scales["blocks.0.lin.weight"].shape == (6, 1)
    folded = read_state_dict(path)["blocks.0.lin.weight"]  # the old path: bf16 at read
    assert torch.equal(fold(sd["blocks.0.lin.weight"], scales["blocks.0.lin.weight"], torch.bfloat16), folded)
    torch.testing.assert_close(folded.float(), w, rtol=0.07, atol=0.0)  # fp8's 3 mantissa bits


def test_scaled_linear_equals_the_folded_weight_in_bf16_bit_for_bit():
    from app.models.load.fp8_store import to_fp8_linears

    g = torch.Generator().manual_seed(1)
    for scale in (torch.tensor([[0.0123]]), torch.rand(16, 1, generator=g) + 0.01):  # per tensor, per row
        model = torch.nn.Sequential(torch.nn.Linear(8, 16))
        fp8 = (torch.randn(16, 8, generator=g) * 100).to(torch.float8_e4m3fn)
        model[0].weight.data = fp8
        to_fp8_linears(model, {"0"}, torch.float32, {"0.weight": scale})
        model.to(torch.bfloat16)  # the buffer stays float32: a bf16 scale would shift the whole matrix
        assert model[0].scale_weight.dtype == torch.float32 and model[0].weight.dtype == torch.float8_e4m3fn
        x = torch.randn(3, 8, generator=g).to(torch.bfloat16)
        expected = torch.nn.functional.linear(x, (fp8.float() * scale).to(torch.bfloat16), model[0].bias)
        assert torch.equal(model(x), expected)


def test_flux_scaled_fp8_stays_fp8_and_matches_the_folded_image(flux):
    from app.models.load.flux_load import load_flux

    bench, paths = flux
    loaded = bench.manager.get(_ckpt(bench, "flux1-dev-fp8_scaled")).loaded
    assert loaded.extra["parts"]["text_encoder_2"].endswith("t5xxl_fp8_e4m3fn_scaled.safetensors")
    pipe = loaded.pipe
    transformer, t5 = pipe.transformer, pipe.text_encoder_2
    _check_small(transformer, 2 * 14 + 2 * 6)
    _check_small(t5, 2 * 6)
    assert type(transformer.x_embedder) is torch.nn.Linear and transformer.x_embedder.weight.dtype == torch.float32
    kept = _latents(pipe, guidance_scale=3.5)
    originals = (pipe.transformer, pipe.text_encoder_2)
    pipe.transformer, pipe.text_encoder_2 = _folded(transformer), _folded(t5)
    try:
        folded = _latents(pipe, guidance_scale=3.5)
    finally:
        pipe.transformer, pipe.text_encoder_2 = originals
    assert kept.abs().max() > 0.5
    assert (kept - folded).abs().max().item() <= 1e-5
    old = load_flux(paths["ref:diffusion_model"], {"text_encoder": paths["flux:clip_l"],
                                                  "text_encoder_2": paths["ref:t5xxl"], "vae": paths["flux:vae"]})
    assert not fp8_linears(old.pipe.transformer)  # the reference: bf16 weights (folded at read), computed in fp32
    assert 0 < (kept - _latents(old.pipe, guidance_scale=3.5)).abs().max().item() <= FOLDED_BF16_TOLERANCE


def test_lora_job_on_scaled_fp8_flux_restores_bit_exactly(flux):
    from app.models.lora.apply import apply_networks, restore_networks
    from app.models.lora.forward_delta import dequantized_weight
    from app.models.lora.handler import register_lora_handlers
    from app.models.lora.network import network_from_state_dict

    bench, _ = flux
    title = _ckpt(bench, "flux1-dev-fp8_scaled")
    pipe = bench.manager.get(title).loaded.pipe
    to_q = pipe.transformer.transformer_blocks[0].attn.to_q
    assert isinstance(to_q, Fp8Linear) and to_q.scale_weight is not None
    stored, scale = to_q.weight.detach().clone(), to_q.scale_weight.clone()
    assert torch.equal(dequantized_weight(to_q), stored.float() * scale)  # what LoRA types reading the base see
    g = torch.Generator().manual_seed(5)
    down, up = torch.randn(4, to_q.in_features, generator=g) * 0.1, torch.randn(to_q.out_features, 4, generator=g) * 0.1
    net = network_from_state_dict({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": down,
                                   "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": up}, "fp8lora")
    x = torch.randn(3, to_q.in_features, generator=g)
    plain = to_q(x)
    assert apply_networks(pipe, [(net, 1.0, 0.5)]).modules_patched == 1
    expected = torch.nn.functional.linear(x, stored.float() * scale + 0.5 * (up @ down), to_q.bias)
    torch.testing.assert_close(to_q(x), expected, rtol=1e-4, atol=1e-5)
    restore_networks(pipe)
    assert torch.equal(to_q(x), plain) and torch.equal(to_q.weight.detach(), stored)

    register_lora_handlers(bench.manager.extra_networks)

    def job(prompt: str) -> np.ndarray:
        params = bench.params(title, prompt, "", 4, 64, 64, 1.0, "Euler", 1234, 1)
        params.scheduler = "Simple"
        return np.asarray(bench.run(params).images[0], dtype=np.int16)

    plain_image = job(PROMPT)
    before = {n: p.detach().clone() for n, p in pipe.transformer.named_parameters()}
    assert int(np.abs(job(PROMPT + " <lora:tiny-flux-lora:0.6>") - plain_image).max()) > 10
    after = dict(pipe.transformer.named_parameters())
    assert all(torch.equal(before[n], after[n].detach()) and before[n].dtype == after[n].dtype for n in before)
    assert all(not m._forward_hooks and torch.equal(m.scale_weight, m.scale_weight.float())
               for m in fp8_linears(pipe.transformer))
    assert np.array_equal(job(PROMPT), plain_image)


def test_zimage_scaled_fp8_per_row_stays_fp8_and_matches_the_folded_image(tmp_path):
    """Newer files: one scale per row (``weight_scale``); the fused qkv's scales split with it."""
    from app.devtools.tiny_fp8 import to_scaled_fp8_files
    from app.devtools.tiny_zimage import write_tiny_zimage
    from app.models.load.zimage_load import load_zimage

    paths = to_scaled_fp8_files(write_tiny_zimage(tmp_path), (":diffusion_model", ":text_encoder"), per_row=True)
    parts = {"text_encoder": paths["zimage:text_encoder"], "vae": paths["zimage:vae"]}
    pipe = load_zimage(paths["zimage:diffusion_model"], parts).pipe
    _check_small(pipe.transformer, len(fp8_linears(pipe.transformer)), per_row=True)
    _check_small(pipe.text_encoder, len(fp8_linears(pipe.text_encoder)), per_row=True)
    assert len(fp8_linears(pipe.transformer)) > 10 and len(fp8_linears(pipe.text_encoder)) > 10
    assert pipe.transformer.layers[0].attention.to_q.scale_weight.shape[0] > 1  # per row, split from qkv
    kept = _latents(pipe, guidance_scale=0.0)
    originals = (pipe.transformer, pipe.text_encoder)
    pipe.transformer, pipe.text_encoder = _folded(pipe.transformer), _folded(pipe.text_encoder)
    try:
        folded = _latents(pipe, guidance_scale=0.0)
    finally:
        pipe.transformer, pipe.text_encoder = originals
    assert kept.abs().max() > 0.5
    assert (kept - folded).abs().max().item() <= 1e-5
    ref = tmp_path / "ref"
    old = load_zimage(_write_folded_copy(paths["zimage:diffusion_model"], ref / "z_folded.safetensors"),
                      {**parts, "text_encoder": _write_folded_copy(paths["zimage:text_encoder"], ref / "q.safetensors")})
    assert (kept - _latents(old.pipe, guidance_scale=0.0)).abs().max().item() <= FOLDED_BF16_TOLERANCE


def test_flux_all_in_one_scaled_fp8_keeps_transformer_and_t5_and_folds_clip_and_vae(tmp_path):
    """One scaled file with every part (ComfyUI's checkpoint names): the transformer's and T5's block linears keep
    their scales; CLIP-L and the VAE (scaled too in this file) are folded into the compute dtype."""
    from safetensors.torch import load_file

    from app.devtools.tiny_flux import write_tiny_flux
    from app.devtools.tiny_fp8 import scaled_fp8_tensors
    from app.models.load.flux_load import load_flux

    paths = write_tiny_flux(tmp_path, "dev")
    sd = scaled_fp8_tensors(load_file(str(paths["flux:all_in_one"])), marker="model.diffusion_model.")
    path = paths["flux:all_in_one"].with_name("flux1-dev-aio-fp8_scaled.safetensors")
    save_file(sd, str(path))
    loaded = load_flux(path)
    assert loaded.extra["all_in_one"]
    pipe = loaded.pipe
    _check_small(pipe.transformer, 2 * 14 + 2 * 6)
    _check_small(pipe.text_encoder_2, 2 * 6)
    clip_q = "text_encoders.clip_l.transformer.text_model.encoder.layers.0.self_attn.q_proj"
    scale = sd[clip_q + ".scale_weight"].reshape(1, 1)
    got = pipe.text_encoder.get_submodule("encoder.layers.0.self_attn.q_proj").weight.detach()
    assert torch.equal(got, fold(sd[clip_q + ".weight"], scale, torch.float32))  # folded, not the raw fp8 values
    assert not any(p.dtype == torch.float8_e4m3fn for p in (*pipe.text_encoder.parameters(), *pipe.vae.parameters()))
    kept = _latents(pipe, guidance_scale=3.5)
    originals = (pipe.transformer, pipe.text_encoder_2)
    pipe.transformer, pipe.text_encoder_2 = _folded(pipe.transformer), _folded(pipe.text_encoder_2)
    try:
        folded = _latents(pipe, guidance_scale=3.5)
    finally:
        pipe.transformer, pipe.text_encoder_2 = originals
    assert kept.abs().max() > 0.5 and (kept - folded).abs().max().item() <= 1e-5
