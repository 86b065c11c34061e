"""LoRA on a Z-Image transformer: diffusers/peft (``transformer.``), ComfyUI / ai-toolkit (``diffusion_model.``,
also the original fused ``attention.qkv`` and ``attention.out`` names) and kohya (``lora_unet_``) files; applied
as weight deltas and restored bit-exactly."""

from __future__ import annotations

import pytest
import torch

from app.models.lora.apply import apply_networks, restore_networks
from app.models.lora.network import network_from_state_dict
from tests.families.zimage_tiny import tiny_zimage_pipe

DIM = 64
RANK = 4


@pytest.fixture()
def pipe():
    return tiny_zimage_pipe(seed=3)


def _pair(rows: int, cols: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(RANK, cols, generator=g) * 0.1, torch.randn(rows, RANK, generator=g) * 0.1


def _weights(pipe) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in pipe.transformer.state_dict().items()}


def test_diffusers_keys_apply_and_restore(pipe):
    before = _weights(pipe)
    down, up = _pair(DIM, DIM, 1)
    sd = {
        "transformer.layers.0.attention.to_q.lora_A.weight": down,
        "transformer.layers.0.attention.to_q.lora_B.weight": up,
    }
    net = network_from_state_dict(sd, "zlora")
    result = apply_networks(pipe, [(net, 1.0, 0.5)])
    assert result.applied and not result.refused
    q = pipe.transformer.layers[0].attention.to_q.weight
    torch.testing.assert_close(q.detach(), before["layers.0.attention.to_q.weight"] + 0.5 * (up @ down))
    restore_networks(pipe)
    after = _weights(pipe)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_comfyui_fused_qkv_and_out(pipe):
    before = _weights(pipe)
    down, up = _pair(3 * DIM, DIM, 2)
    odown, oup = _pair(DIM, DIM, 3)
    sd = {
        "diffusion_model.layers.1.attention.qkv.lora_A.weight": down,
        "diffusion_model.layers.1.attention.qkv.lora_B.weight": up,
        "diffusion_model.layers.1.attention.out.lora_A.weight": odown,
        "diffusion_model.layers.1.attention.out.lora_B.weight": oup,
    }
    net = network_from_state_dict(sd, "comfy")
    result = apply_networks(pipe, [(net, 1.0, 1.0)])
    assert result.applied and not result.warnings
    delta = up @ down
    attn = pipe.transformer.layers[1].attention
    for i, name in enumerate(("to_q", "to_k", "to_v")):
        expect = before[f"layers.1.attention.{name}.weight"] + delta[i * DIM : (i + 1) * DIM]
        torch.testing.assert_close(getattr(attn, name).weight.detach(), expect)
    torch.testing.assert_close(attn.to_out[0].weight.detach(), before["layers.1.attention.to_out.0.weight"] + oup @ odown)
    restore_networks(pipe)
    after = _weights(pipe)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_kohya_keys_with_alpha(pipe):
    before = _weights(pipe)
    hidden = pipe.transformer.layers[0].feed_forward.w1.weight.shape[0]
    down, up = _pair(hidden, DIM, 4)
    sd = {
        "lora_unet_layers_0_feed_forward_w1.lora_down.weight": down,
        "lora_unet_layers_0_feed_forward_w1.lora_up.weight": up,
        "lora_unet_layers_0_feed_forward_w1.alpha": torch.tensor(2.0),
    }
    net = network_from_state_dict(sd, "kohya")
    apply_networks(pipe, [(net, 1.0, 1.0)])
    w1 = pipe.transformer.layers[0].feed_forward.w1.weight.detach()
    torch.testing.assert_close(w1, before["layers.0.feed_forward.w1.weight"] + (2.0 / RANK) * (up @ down))
    restore_networks(pipe)
    assert torch.equal(pipe.transformer.layers[0].feed_forward.w1.weight.detach(), before["layers.0.feed_forward.w1.weight"])


def test_sd_lora_on_zimage_is_refused_clearly(pipe):
    down, up = _pair(8, 8, 5)
    sd = {
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": down,
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": up,
    }
    net = network_from_state_dict(sd, "sdlora")
    result = apply_networks(pipe, [(net, 1.0, 1.0)])
    assert "sdlora" in result.refused and "another model family" in result.refused["sdlora"]
