"""The real-shaped GGUF Q8_0 FLUX.1 benchmark row (``bench/flux.py --real-shaped --gguf Q8_0``), checked on the CPU:
the on-device Q8_0 encoder is ggml's reference bit for bit, the streamed writer gives a file the app loads as city96's
layout (quantized block linears, float embedders), the full shape is FLUX.1 dev's 11.9 B values, and the one command
runs end to end with ``--shape small`` (the same code with a reduced transformer and tiny parts)."""

from __future__ import annotations

import json
import math

import gguf
import numpy as np
import torch

from bench.flux_gguf import bfl_layout, q8_0, transformer_config, write_flux_gguf


def test_q8_0_matches_the_gguf_reference_quantizer():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 128, generator=g) * 3
    x[0, :32] = 0  # an all-zero block: d = 0
    x[1, :32] = torch.arange(32) - 15.5  # halves after scaling: ggml rounds them away from zero
    x[1, 0] = -127.0
    ref = gguf.quants.quantize(x.numpy(), gguf.GGMLQuantizationType.Q8_0)
    assert np.array_equal(q8_0(x).numpy(), ref)
    back = gguf.quants.dequantize(q8_0(x).numpy(), gguf.GGMLQuantizationType.Q8_0)
    assert np.abs(back - x.numpy()).max() <= x.abs().max().item() / 127  # one step of the coarsest block at most


def test_full_layout_is_flux1_dev():
    layout = bfl_layout(transformer_config("full"))
    assert len(layout) == 780 and round(sum(math.prod(s) for s in layout.values()) / 1e9, 2) == 11.9
    assert layout["double_blocks.18.img_attn.qkv.weight"] == (9216, 3072)
    assert layout["single_blocks.37.linear1.weight"] == (21504, 3072) and "guidance_in.in_layer.weight" in layout


def test_streamed_gguf_loads_as_city96_layout(tmp_path):
    from app.devtools.tiny_flux import write_tiny_flux
    from app.models.load.flux_load import load_flux
    from app.models.load.gguf_header import read_gguf_header

    path = write_flux_gguf(tmp_path / "models" / "diffusion_models" / "flux1-dev-Q8_0.gguf", "small")
    meta, tensors = read_gguf_header(path)
    layout = bfl_layout(transformer_config("small"))
    assert {k: s for k, (s, _) in tensors.items()} == layout
    assert tensors["single_blocks.0.linear1.weight"][1] == "Q8_0" and tensors["img_in.weight"][1] == "F32"
    assert tensors["double_blocks.0.img_attn.norm.query_norm.scale"][1] == "F32"
    parts = write_tiny_flux(tmp_path / "parts", "dev")
    loaded = load_flux(path, {"text_encoder": parts["flux:clip_l"], "text_encoder_2": parts["flux:t5xxl"],
                              "vae": parts["flux:vae"]})
    transformer = loaded.pipe.transformer
    assert loaded.family == "flux" and transformer.config.attention_head_dim == 128
    assert getattr(transformer.transformer_blocks[0].attn.to_q.weight, "quant_type", None) is not None
    assert transformer.x_embedder.weight.dtype == torch.float32  # F32 in the file, as city96 keeps it


def test_the_one_command_runs_with_the_small_shape(tmp_path, capsys):
    from bench.flux import main

    assert main(["--real-shaped", "--gguf", "Q8_0", "--shape", "small", "--steps", "1", "--runs", "1",
                 "--cache-dir", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["flux_gguf_checkpoint"] == "flux1-dev-Q8_0.gguf" and result["flux_gguf_size"] == 64
    assert result["flux_gguf_app_s"] > 0 and result["flux_gguf_diffusers_s"] > 0
    assert result["flux_gguf_max_pixel_diff_vs_diffusers"] <= 2  # the same GGUF modules on both sides
    assert not (tmp_path / "tiny-parts").exists()
