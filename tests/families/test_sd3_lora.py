"""LoRA on an SD3.5 MMDiT in the formats users have: kohya (``lora_unet_joint_blocks_0_x_block_attn_qkv``, original
fused names, ``alpha``), ComfyUI (``diffusion_model.joint_blocks.0.x_block.attn2.qkv``: MMDiT-X's second attention)
and diffusers / peft (``transformer.transformer_blocks.0.attn.add_k_proj``); applied as weight deltas and restored
bit-exactly. A FLUX LoRA on SD3.5 is refused; the tiny kohya file is detected as an SD3 LoRA."""

from __future__ import annotations

import pytest
import torch

from app.devtools.tiny_sd3 import tiny_sd3_transformer
from app.models.lora.apply import apply_networks, restore_networks
from app.models.lora.network import network_from_state_dict

DIM = 64
RANK = 4


class _Pipe:
    """What the LoRA code reads of a pipeline: its transformer."""

    def __init__(self) -> None:
        self.transformer = tiny_sd3_transformer("medium", seed=5)


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


@pytest.mark.parametrize(("stream", "names"), [("x_block", ("to_q", "to_k", "to_v")),
                                                ("context_block", ("add_q_proj", "add_k_proj", "add_v_proj"))])
def test_kohya_fused_qkv_with_alpha(pipe, stream, names):
    before = _weights(pipe)
    down, up = _pair(3 * DIM, DIM, 1)
    flat = f"lora_unet_joint_blocks_1_{stream}_attn_qkv"
    sd = {f"{flat}.lora_down.weight": down, f"{flat}.lora_up.weight": up, f"{flat}.alpha": torch.tensor(2.0)}
    result = apply_networks(pipe, [(network_from_state_dict(sd, "kohya"), 1.0, 1.0)])
    assert result.applied and not result.refused
    delta = (up @ down) * (2.0 / RANK)
    attn = pipe.transformer.transformer_blocks[1].attn
    for i, name in enumerate(names):
        torch.testing.assert_close(getattr(attn, name).weight.detach(),
                                   before[f"transformer_blocks.1.attn.{name}.weight"] + delta[i * DIM:(i + 1) * DIM])
    restore_networks(pipe)
    assert _restored(pipe, before)


def test_comfyui_mmdit_x_attn2_and_mlp(pipe):
    before = _weights(pipe)
    down, up = _pair(3 * DIM, DIM, 2)
    down2, up2 = _pair(4 * DIM, DIM, 3)
    sd = {"diffusion_model.joint_blocks.0.x_block.attn2.qkv.lora_A.weight": down,
          "diffusion_model.joint_blocks.0.x_block.attn2.qkv.lora_B.weight": up,
          "diffusion_model.joint_blocks.2.x_block.mlp.fc1.lora_A.weight": down2,
          "diffusion_model.joint_blocks.2.x_block.mlp.fc1.lora_B.weight": up2}
    result = apply_networks(pipe, [(network_from_state_dict(sd, "comfy"), 1.0, 0.5)])
    assert result.applied and not result.refused
    block0 = pipe.transformer.transformer_blocks[0]
    torch.testing.assert_close(block0.attn2.to_v.weight.detach(),
                               before["transformer_blocks.0.attn2.to_v.weight"] + 0.5 * (up @ down)[2 * DIM:])
    torch.testing.assert_close(pipe.transformer.transformer_blocks[2].ff.net[0].proj.weight.detach(),
                               before["transformer_blocks.2.ff.net.0.proj.weight"] + 0.5 * (up2 @ down2))
    restore_networks(pipe)
    assert _restored(pipe, before)


def test_diffusers_peft_keys(pipe):
    before = _weights(pipe)
    down, up = _pair(DIM, DIM, 4)
    sd = {"transformer.transformer_blocks.0.attn.add_k_proj.lora_A.weight": down,
          "transformer.transformer_blocks.0.attn.add_k_proj.lora_B.weight": up}
    apply_networks(pipe, [(network_from_state_dict(sd, "peft"), 1.0, 1.0)])
    torch.testing.assert_close(pipe.transformer.transformer_blocks[0].attn.add_k_proj.weight.detach(),
                               before["transformer_blocks.0.attn.add_k_proj.weight"] + up @ down)
    restore_networks(pipe)
    assert _restored(pipe, before)


def test_flux_lora_is_refused(pipe):
    down, up = _pair(3 * DIM, DIM, 5)
    sd = {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": down,
          "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": up}
    before = _weights(pipe)
    result = apply_networks(pipe, [(network_from_state_dict(sd, "flux-lora"), 1.0, 1.0)])
    assert "flux-lora" in result.refused and "another model family" in result.refused["flux-lora"]
    assert _restored(pipe, before)


def test_tiny_lora_file_applies_everywhere_it_names(tmp_path, pipe):
    from safetensors.torch import load_file

    from app.devtools.tiny_sd3 import write_tiny_sd3
    from app.models.load.detect import detect_file_role

    paths = write_tiny_sd3(tmp_path)
    assert detect_file_role(paths["sd3:lora"]).family == "sd3"
    sd = {k: v.float() for k, v in load_file(str(paths["sd3:lora"])).items()}
    before = _weights(pipe)
    result = apply_networks(pipe, [(network_from_state_dict(sd, "tiny-sd3-lora"), 1.0, 1.0)])
    assert result.applied and not result.refused
    changed = [k for k, v in _weights(pipe).items() if not torch.equal(v, before[k])]
    assert any(".attn2." in k for k in changed) and any("add_q_proj" in k for k in changed)
    restore_networks(pipe)
    assert _restored(pipe, before)


def test_text_encoder_lora_reaches_the_cached_prompt(tmp_path):
    """A kohya ``lora_te2_`` (CLIP-G) LoRA changes SD3's conditioning although the prompt was cached: the LoRA handler
    sets the encoder's ``state_key``, which the SD3 encoder passes to its CLIP cache; restored, the original returns."""
    from app.devtools.tiny_sd3 import write_tiny_sd3
    from app.families.sd3_nets import SD3PromptEncoder
    from app.models.load.loader import load_pipeline

    paths = write_tiny_sd3(tmp_path)
    pipe = load_pipeline(paths["sd3:diffusion_model"]).pipe
    encoder = SD3PromptEncoder(pipe)
    before = encoder.encode(["a red fox"]).cond[0]
    q = pipe.text_encoder_2.text_model.encoder.layers[0].self_attn.q_proj.weight
    down, up = _pair(q.shape[0], q.shape[1], 6)
    sd = {"lora_te2_encoder_layers_0_self_attn_q_proj.lora_down.weight": down * 10,
          "lora_te2_encoder_layers_0_self_attn_q_proj.lora_up.weight": up * 10}
    result = apply_networks(pipe, [(network_from_state_dict(sd, "te-lora"), 1.0, 1.0)])
    assert result.applied and result.te_signature is not None
    encoder.state_key = ("lora", result.te_signature)
    changed = encoder.encode(["a red fox"]).cond[0]
    assert not torch.equal(changed[:77], before[:77]) and torch.equal(changed[77:], before[77:])  # CLIP part only
    restore_networks(pipe)
    encoder.state_key = None
    assert torch.equal(encoder.encode(["a red fox"]).cond[0], before)


def test_t5_lora_reaches_the_cached_prompt(tmp_path):
    """A kohya sd-scripts ``lora_te3_`` (T5) LoRA patches SD3.5's ``text_encoder_3``: the T5 tokens of a cached prompt
    change, the CLIP part does not; restored, the original returns."""
    from app.devtools.tiny_sd3 import write_tiny_sd3
    from app.families.sd3_nets import SD3PromptEncoder
    from app.models.load.loader import load_pipeline

    paths = write_tiny_sd3(tmp_path)
    pipe = load_pipeline(paths["sd3:diffusion_model"]).pipe
    encoder = SD3PromptEncoder(pipe)
    before = encoder.encode(["a red fox"]).cond[0]
    q = pipe.text_encoder_3.encoder.block[0].layer[0].SelfAttention.q.weight
    down, up = _pair(q.shape[0], q.shape[1], 7)
    sd = {"lora_te3_encoder_block_0_layer_0_SelfAttention_q.lora_down.weight": down * 10,
          "lora_te3_encoder_block_0_layer_0_SelfAttention_q.lora_up.weight": up * 10}
    original = q.detach().clone()
    result = apply_networks(pipe, [(network_from_state_dict(sd, "t5-lora"), 1.0, 1.0)])
    assert result.applied and not result.refused and result.te_signature is not None
    encoder.state_key = ("lora", result.te_signature)
    changed = encoder.encode(["a red fox"]).cond[0]
    assert torch.equal(changed[:77], before[:77]) and not torch.equal(changed[77:], before[77:])  # T5 part only
    restore_networks(pipe)
    assert torch.equal(q.detach(), original)
    encoder.state_key = None
    assert torch.equal(encoder.encode(["a red fox"]).cond[0], before)
