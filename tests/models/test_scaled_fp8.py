"""ComfyUI's "scaled fp8" files (``t5xxl_fp8_e4m3fn_scaled.safetensors``, ``flux1-dev-fp8_scaled``...): every loader
reads them through ``read_state_dict``, which multiplies each fp8 weight by its stored scale."""

from __future__ import annotations

import torch
from safetensors.torch import save_file

from app.models.load.checkpoint_io import read_state_dict


def test_scaled_fp8_weights_come_back_rescaled_and_the_scale_keys_dropped(tmp_path):
    g = torch.Generator().manual_seed(3)
    w = torch.randn(8, 4, generator=g)
    rows = torch.randn(6, 4, generator=g)
    row_scale = torch.rand(6, generator=g) + 0.5
    sd = {
        "encoder.block.0.layer.0.SelfAttention.q.weight": (w / 0.25).to(torch.float8_e4m3fn),
        "encoder.block.0.layer.0.SelfAttention.q.scale_weight": torch.tensor(0.25),
        "encoder.block.0.layer.0.SelfAttention.q.scale_input": torch.tensor(1.0),
        "double_blocks.0.img_mlp.0.weight": (rows / row_scale[:, None]).to(torch.float8_e4m3fn),
        "double_blocks.0.img_mlp.0.weight_scale": row_scale,
        "shared.weight": torch.ones(3, 4),  # not scaled: untouched
        "scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn),
    }
    path = tmp_path / "t5xxl_fp8_e4m3fn_scaled.safetensors"
    save_file(sd, str(path))
    out = read_state_dict(path)
    assert set(out) == {"encoder.block.0.layer.0.SelfAttention.q.weight", "double_blocks.0.img_mlp.0.weight",
                        "shared.weight"}
    q = out["encoder.block.0.layer.0.SelfAttention.q.weight"]
    assert q.dtype == torch.bfloat16 and torch.allclose(q.float(), w, rtol=0.15, atol=0.02)
    assert torch.allclose(out["double_blocks.0.img_mlp.0.weight"].float(), rows, rtol=0.15, atol=0.02)
    assert torch.equal(out["shared.weight"], torch.ones(3, 4))


def test_a_plain_fp8_file_is_left_as_stored(tmp_path):
    w = torch.randn(4, 4).to(torch.float8_e4m3fn)
    path = tmp_path / "t5xxl_fp8_e4m3fn.safetensors"
    save_file({"encoder.block.0.layer.0.SelfAttention.q.weight": w}, str(path))
    out = read_state_dict(path)
    assert out["encoder.block.0.layer.0.SelfAttention.q.weight"].dtype == torch.float8_e4m3fn
