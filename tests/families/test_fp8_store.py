"""fp8 files kept small in memory (``app.models.load.fp8_store``): Z-Image and FLUX.1 fp8 diffusion models and an fp8
T5 keep their block linears in ``float8_e4m3fn`` and compute in the compute dtype; the result equals the upcast
model's; a LoRA on an fp8 base is added in the forward pass and the fp8 weights never change."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from app.models.load.fp8_store import Fp8Linear, fp8_linears, parameter_bytes
from bench.app_side import AppBench

PROMPT = "a red fox in the snow"


def _upcast(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of *model* with every ``Fp8Linear`` turned back into a plain linear in its compute dtype (the old
    upcast-at-load path)."""
    twin = copy.deepcopy(model)
    for module in fp8_linears(twin):
        module.weight.data = module.weight.data.to(module.compute_dtype)
        module.__class__ = torch.nn.Linear
    return twin


@pytest.fixture(scope="module")
def zimage(tmp_path_factory):
    from app.devtools.tiny_models import write_tiny_models

    root = Path(tmp_path_factory.mktemp("fp8-zimage"))
    write_tiny_models(root, families=("zimage",), zimage_weights="fp8")
    bench = AppBench(root, {})
    yield bench
    bench.close()


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    from app.devtools.tiny_models import write_tiny_models

    root = Path(tmp_path_factory.mktemp("fp8-flux"))
    write_tiny_models(root, families=("flux",), flux_weights="fp8")
    (root / "models" / "Stable-diffusion" / "flux1-dev-aio.safetensors").unlink()
    bench = AppBench(root, {})
    yield bench
    bench.close()


def _ckpt(bench: AppBench, start: str) -> str:
    return next(t for t in bench.catalog.checkpoint_titles() if t.startswith(start))


def _upcast_bytes(model: torch.nn.Module) -> int:
    """The bytes *model*'s tensors would hold all upcast to fp32 (the CPU compute dtype); shared tensors once."""
    seen: dict[int, int] = {}
    for t in (*model.parameters(), *model.buffers()):
        seen[t.data_ptr()] = t.numel() * (4 if t.is_floating_point() else t.element_size())
    return sum(seen.values())


def _block_weight_bytes(model: torch.nn.Module) -> tuple[int, int]:
    """(bytes of the fp8 linears' weights, their element count)."""
    linears = fp8_linears(model)
    return sum(m.weight.numel() * m.weight.element_size() for m in linears), sum(m.weight.numel() for m in linears)


def test_zimage_fp8_transformer_and_encoder_stay_fp8(zimage):
    loaded = zimage.manager.get(_ckpt(zimage, "z_image_turbo_fp8")).loaded
    transformer, encoder = loaded.pipe.transformer, loaded.pipe.text_encoder
    for model in (transformer, encoder):
        linears = fp8_linears(model)
        assert len(linears) > 10
        assert all(m.weight.dtype == torch.float8_e4m3fn and m.compute_dtype == torch.float32 for m in linears)
        stored, count = _block_weight_bytes(model)
        assert stored == count  # one byte per weight
        # the fp8 blocks hold 1 byte per weight instead of 4 (fp32 on CPU): the model shrinks by 3 bytes per weight
        assert parameter_bytes(model) == _upcast_bytes(model) - 3 * count
        assert count > 0.5 * sum(p.numel() for p in model.parameters() if p.ndim == 2 and p.shape[0] < 1000)
    assert transformer.dtype == torch.float32  # what the pipeline reads stays the compute dtype
    assert type(transformer.t_embedder.mlp[0]) is torch.nn.Linear  # outside the blocks: compute dtype


def test_zimage_fp8_latents_equal_the_upcast_model(zimage):
    pipe = zimage.manager.get(_ckpt(zimage, "z_image_turbo_fp8")).loaded.pipe

    def latents() -> torch.Tensor:
        out = pipe(prompt=PROMPT, height=64, width=64, num_inference_steps=3, guidance_scale=0.0,
                   generator=torch.Generator("cpu").manual_seed(7), output_type="latent")
        return out.images.float()

    kept = latents()
    original = pipe.transformer
    pipe.transformer = _upcast(original)
    try:
        upcast = latents()
    finally:
        pipe.transformer = original
    assert kept.abs().max() > 0.5
    assert (kept - upcast).abs().max().item() <= 1e-5


def test_to_dtype_keeps_fp8_storage():
    from app.models.load.fp8_store import to_fp8_linears

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 4))
    model[1].weight.data = model[1].weight.data.to(torch.float8_e4m3fn)
    to_fp8_linears(model, {"1"}, torch.float32)
    stored = model[1].weight.detach().clone()
    model.to(torch.bfloat16)
    assert model[0].weight.dtype == torch.bfloat16 and model[1].weight.dtype == torch.float8_e4m3fn
    assert model[1].compute_dtype == torch.bfloat16 and torch.equal(model[1].weight.detach(), stored)
    x = torch.randn(2, 8, dtype=torch.bfloat16)
    expected = torch.nn.functional.linear(model[0](x), stored.to(torch.bfloat16), model[1].bias)
    assert torch.equal(model(x), expected)


def test_flux_fp8_transformer_and_t5_stay_fp8_and_match_the_upcast_image(flux):
    loaded = flux.manager.get(_ckpt(flux, "flux1-dev_fp8")).loaded
    assert loaded.extra["parts"]["text_encoder_2"].endswith("t5xxl_fp8_e4m3fn.safetensors")
    transformer, t5 = loaded.pipe.transformer, loaded.pipe.text_encoder_2
    assert len(fp8_linears(transformer)) == 2 * 14 + 2 * 6
    t5_names = [n for n, m in t5.named_modules() if isinstance(m, Fp8Linear)]
    assert len(t5_names) == 2 * 6 and not any(n.endswith("wo") for n in t5_names)  # wo: read by dtype, upcast
    for model in (transformer, t5):
        _, count = _block_weight_bytes(model)
        assert parameter_bytes(model) == _upcast_bytes(model) - 3 * count
    pipe = loaded.pipe

    def latents() -> torch.Tensor:
        out = pipe(prompt=PROMPT, height=64, width=64, num_inference_steps=3, guidance_scale=3.5,
                   generator=torch.Generator("cpu").manual_seed(7), output_type="latent")
        return out.images.float()

    kept = latents()
    originals = (pipe.transformer, pipe.text_encoder_2)
    pipe.transformer, pipe.text_encoder_2 = _upcast(transformer), _upcast(t5)
    try:
        upcast = latents()
    finally:
        pipe.transformer, pipe.text_encoder_2 = originals
    assert kept.abs().max() > 0.5
    assert (kept - upcast).abs().max().item() <= 1e-5


# -- LoRA on an fp8 base ----------------------------------------------------------------------------------------

def test_lora_on_fp8_linear_is_added_in_the_forward_pass(flux):
    from app.models.lora.apply import apply_networks, restore_networks
    from app.models.lora.network import network_from_state_dict

    pipe = flux.manager.get(_ckpt(flux, "flux1-dev_fp8")).loaded.pipe
    to_q = pipe.transformer.transformer_blocks[0].attn.to_q
    assert isinstance(to_q, Fp8Linear)
    stored = to_q.weight.detach().clone()
    g = torch.Generator().manual_seed(5)
    down, up = torch.randn(4, to_q.in_features, generator=g) * 0.1, torch.randn(to_q.out_features, 4, generator=g) * 0.1
    net = network_from_state_dict({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": down,
                                   "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": up}, "fp8lora")
    x = torch.randn(3, to_q.in_features, generator=g)
    plain = to_q(x)
    result = apply_networks(pipe, [(net, 1.0, 0.5)])
    assert result.applied and not result.refused and result.modules_patched == 1
    expected = torch.nn.functional.linear(x, stored.float() + 0.5 * (up @ down), to_q.bias)
    torch.testing.assert_close(to_q(x), expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(to_q.weight.detach(), stored)  # never merged into the fp8 weight
    restore_networks(pipe)
    assert not to_q._forward_hooks
    assert torch.equal(to_q(x), plain) and torch.equal(to_q.weight.detach(), stored)


def test_kohya_lora_job_on_fp8_flux_restores_bit_exactly(flux):
    from app.models.lora.handler import register_lora_handlers

    register_lora_handlers(flux.manager.extra_networks)

    def job(prompt: str) -> np.ndarray:
        params = flux.params(_ckpt(flux, "flux1-dev_fp8"), prompt, "", 4, 64, 64, 1.0, "Euler", 1234, 1)
        params.scheduler = "Simple"
        return np.asarray(flux.run(params).images[0], dtype=np.int16)

    plain = job(PROMPT)
    transformer = flux.manager.get(_ckpt(flux, "flux1-dev_fp8")).loaded.pipe.transformer
    before = {n: p.detach().clone() for n, p in transformer.named_parameters()}
    with_lora = job(PROMPT + " <lora:tiny-flux-lora:0.6>")
    assert int(np.abs(with_lora - plain).max()) > 10  # the LoRA changed the image
    assert all(not m._forward_hooks for m in fp8_linears(transformer))
    after = dict(transformer.named_parameters())
    assert all(torch.equal(before[n], after[n].detach()) and before[n].dtype == after[n].dtype for n in before)
    assert np.array_equal(job(PROMPT), plain)  # restored exactly
