"""LoRA on a FLUX.1 transformer in the three formats users have: kohya (``lora_unet_double_blocks_0_img_attn_qkv``,
original fused names, ``alpha``), ComfyUI / ai-toolkit (``diffusion_model.single_blocks.0.linear1``: q, k, v and the
MLP input fused, split by rows of unequal size) and diffusers / peft (``transformer.transformer_blocks.0.attn.to_q``);
applied as weight deltas and restored bit-exactly. A Z-Image LoRA on FLUX is refused."""

from __future__ import annotations

import pytest
import torch

from app.devtools.tiny_flux import tiny_flux_transformer
from app.models.lora.apply import apply_networks, restore_networks
from app.models.lora.network import network_from_state_dict

DIM = 64
RANK = 4


class _Pipe:
    """What the LoRA code reads of a pipeline: its transformer (text encoders are not needed here)."""

    def __init__(self) -> None:
        self.transformer = tiny_flux_transformer("dev", seed=5)


@pytest.fixture()
def pipe():
    return _Pipe()


def _pair(rows: int, cols: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(RANK, cols, generator=g) * 0.1, torch.randn(rows, RANK, generator=g) * 0.1


def _weights(pipe) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in pipe.transformer.state_dict().items()}


def _restored(pipe, before) -> bool:
    after = _weights(pipe)
    return all(torch.equal(before[k], after[k]) for k in before)


def test_kohya_fused_qkv_with_alpha(pipe):
    before = _weights(pipe)
    down, up = _pair(3 * DIM, DIM, 1)
    sd = {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": down,
          "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": up,
          "lora_unet_double_blocks_0_img_attn_qkv.alpha": torch.tensor(2.0)}
    result = apply_networks(pipe, [(network_from_state_dict(sd, "kohya"), 1.0, 1.0)])
    assert result.applied and not result.refused
    delta = (up @ down) * (2.0 / RANK)
    attn = pipe.transformer.transformer_blocks[0].attn
    for i, proj in enumerate((attn.to_q, attn.to_k, attn.to_v)):
        key = f"transformer_blocks.0.attn.to_{'qkv'[i]}.weight"
        torch.testing.assert_close(proj.weight.detach(), before[key] + delta[i * DIM:(i + 1) * DIM])
    restore_networks(pipe)
    assert _restored(pipe, before)


def test_comfyui_single_block_linear1_split_by_unequal_rows(pipe):
    before = _weights(pipe)
    rows = 3 * DIM + 4 * DIM  # q, k, v and the 4x-wide MLP input
    down, up = _pair(rows, DIM, 2)
    sd = {"diffusion_model.single_blocks.1.linear1.lora_A.weight": down,
          "diffusion_model.single_blocks.1.linear1.lora_B.weight": up}
    result = apply_networks(pipe, [(network_from_state_dict(sd, "comfy"), 1.0, 0.5)])
    assert result.applied and not result.refused
    delta = 0.5 * (up @ down)
    block = pipe.transformer.single_transformer_blocks[1]
    torch.testing.assert_close(block.proj_mlp.weight.detach(),
                               before["single_transformer_blocks.1.proj_mlp.weight"] + delta[3 * DIM:])
    torch.testing.assert_close(block.attn.to_v.weight.detach(),
                               before["single_transformer_blocks.1.attn.to_v.weight"] + delta[2 * DIM:3 * DIM])
    restore_networks(pipe)
    assert _restored(pipe, before)


def test_diffusers_peft_keys(pipe):
    before = _weights(pipe)
    down, up = _pair(DIM, DIM, 3)
    sd = {"transformer.transformer_blocks.1.attn.to_add_out.lora_A.weight": down,
          "transformer.transformer_blocks.1.attn.to_add_out.lora_B.weight": up}
    apply_networks(pipe, [(network_from_state_dict(sd, "peft"), 1.0, 1.0)])
    torch.testing.assert_close(pipe.transformer.transformer_blocks[1].attn.to_add_out.weight.detach(),
                               before["transformer_blocks.1.attn.to_add_out.weight"] + up @ down)
    restore_networks(pipe)
    assert _restored(pipe, before)


def test_zimage_lora_is_refused(pipe):
    down, up = _pair(DIM, DIM, 4)
    sd = {"diffusion_model.layers.0.attention.to_q.lora_A.weight": down,
          "diffusion_model.layers.0.attention.to_q.lora_B.weight": up}
    before = _weights(pipe)
    result = apply_networks(pipe, [(network_from_state_dict(sd, "zimage-lora"), 1.0, 1.0)])
    assert "zimage-lora" in result.refused and "another model family" in result.refused["zimage-lora"]
    assert _restored(pipe, before)
