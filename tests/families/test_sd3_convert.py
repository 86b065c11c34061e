"""SD3 key conversion and detection: our table against diffusers' own SD3 converter (MMDiT-X with ``attn2`` and the
pre-only last block, both directions), the architecture of SD3.5 large / medium read from real-shaped headers (meta
tensors, nothing allocated) and checked against diffusers' own model-type detection, and the file roles and part
choice by widths (CLIP-L vs CLIP-G, T5 width)."""

from __future__ import annotations

import pytest
import torch

from app.models.load import sd3_convert as sc

LARGE = {"sample_size": 128, "patch_size": 2, "in_channels": 16, "num_layers": 38, "attention_head_dim": 64,
         "num_attention_heads": 38, "joint_attention_dim": 4096, "caption_projection_dim": 2432,
         "pooled_projection_dim": 2048, "out_channels": 16, "pos_embed_max_size": 192, "dual_attention_layers": (),
         "qk_norm": "rms_norm"}
MEDIUM = {**LARGE, "num_layers": 24, "num_attention_heads": 24, "caption_projection_dim": 1536,
          "pos_embed_max_size": 384, "dual_attention_layers": tuple(range(13))}


def _meta_original(config: dict) -> dict[str, torch.Tensor]:
    from diffusers import SD3Transformer2DModel

    with torch.device("meta"):
        model = SD3Transformer2DModel(**config)
    return sc.diffusers_to_original(model.state_dict())


@pytest.mark.parametrize(("config", "variant", "theirs"), [(LARGE, "sd3.5-large", "sd35_large"),
                                                          (MEDIUM, "sd3.5-medium", "sd35_medium")])
def test_real_shapes_give_the_real_config(config, variant, theirs):
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    original = {sc.SD3_PREFIX + k: v for k, v in _meta_original(config).items()}
    assert sc.is_sd3_transformer(list(original))
    assert sc.infer_transformer_config({k: tuple(v.shape) for k, v in original.items()}) == config
    assert sc.variant(list(original)) == variant
    assert infer_diffusers_model_type(original) == theirs


def test_matches_diffusers_converter_both_ways():
    from diffusers import SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    torch.manual_seed(0)
    model = SD3Transformer2DModel(sample_size=16, num_layers=3, attention_head_dim=8, num_attention_heads=4,
                                  joint_attention_dim=48, caption_projection_dim=32, pooled_projection_dim=24,
                                  pos_embed_max_size=16, dual_attention_layers=(0, 1), qk_norm="rms_norm")
    sd = {k: torch.randn(v.shape) for k, v in model.state_dict().items()}
    original = sc.diffusers_to_original(sd)
    assert "joint_blocks.2.context_block.attn.proj.weight" not in original  # the pre-only last text block
    assert "joint_blocks.1.x_block.attn2.qkv.weight" in original
    theirs = convert_sd3_transformer_checkpoint_to_diffusers({sc.SD3_PREFIX + k: v for k, v in original.items()})
    ours = sc.original_to_diffusers({sc.SD3_PREFIX + k: v for k, v in original.items()})
    assert set(ours) == set(theirs) == set(sd)
    assert all(torch.equal(ours[k], theirs[k]) and torch.equal(ours[k], sd[k]) for k in sd)


def _clip_shapes(width: int) -> dict[str, tuple[int, ...]]:
    return {"text_model.embeddings.token_embedding.weight": (49408, width),
            "text_model.encoder.layers.0.self_attn.q_proj.weight": (width, width)}


def test_roles_and_parts_by_width():
    from app.models.catalog.parts import ModuleFile, resolve_parts
    from app.models.load.detect import detect_role

    clip_l, clip_g = detect_role(_clip_shapes(768)), detect_role(_clip_shapes(1280))
    assert (clip_l.family, clip_g.family) == ("clip_l", "clip_g")
    t5 = {"shared.weight": (32128, 4096), "encoder.block.0.layer.0.SelfAttention.q.weight": (4096, 4096)}
    model = detect_role({k: tuple(v.shape) for k, v in _meta_original(MEDIUM).items()})
    assert (model.family, model.role, model.detail["pooled_dim"], model.detail["context_dim"]) == (
        "sd3", "diffusion_model", 2048, 4096)
    mods = [ModuleFile("ae.safetensors", "/m/ae.safetensors", "vae", "flux_vae"),
            ModuleFile("clip_g.safetensors", "/m/clip_g.safetensors", "text_encoder", "clip_g", clip_g.detail),
            ModuleFile("clip_l.safetensors", "/m/clip_l.safetensors", "text_encoder", "clip_l", clip_l.detail),
            ModuleFile("sd3.5_vae.safetensors", "/m/sd3.5_vae.safetensors", "vae", "flux_vae"),
            ModuleFile("t5_small.safetensors", "/m/t5_small.safetensors", "text_encoder", "t5xxl", {"hidden_size": 512}),
            ModuleFile("t5xxl_fp16.safetensors", "/m/t5xxl_fp16.safetensors", "text_encoder", "t5xxl",
                       detect_role(t5).detail)]
    parts = {k: v.name for k, v in resolve_parts("sd3", model.detail, mods).items()}
    assert parts == {"text_encoder": "clip_l.safetensors", "text_encoder_2": "clip_g.safetensors",
                     "text_encoder_3": "t5xxl_fp16.safetensors", "vae": "sd3.5_vae.safetensors"}
    flux = {"pooled_dim": 768, "context_dim": 4096}  # FLUX takes CLIP-L, never the CLIP-G that sorts first
    assert resolve_parts("flux", flux, mods)["text_encoder"].name == "clip_l.safetensors"


def test_comfyui_scaled_fp8_checkpoint_keeps_block_linears_fp8_with_their_scale(tmp_path):
    """ComfyUI's ``*_fp8_scaled`` files store weight / scale in float8 plus ``scale_weight``: loaded, the MMDiT's block
    linears stay fp8 with their scale (the fused qkv's split with it) and compute with fp8 x scale (not the raw fp8
    value); scaled weights outside the blocks are folded into the compute dtype; no scale / marker tensor is left."""
    from safetensors.torch import load_file, save_file

    from app.devtools.tiny_sd3 import write_tiny_sd3
    from app.models.load.fp8_store import Fp8Linear, fp8_linears
    from app.models.load.loader import load_pipeline

    paths = write_tiny_sd3(tmp_path)
    sd = load_file(str(paths["sd3:all_in_one"]))
    key = sc.SD3_PREFIX + "joint_blocks.0.x_block.attn.qkv.weight"
    outside = sc.SD3_PREFIX + "context_embedder.weight"
    expected = {}
    for name in [k for k in sd if k.startswith(sc.SD3_PREFIX) and k.endswith(".weight") and sd[k].ndim == 2]:
        w = sd[name].float()
        scale = w.abs().max() / 448.0
        sd[name] = (w / scale).to(torch.float8_e4m3fn)
        sd[name.removesuffix(".weight") + ".scale_weight"] = scale.reshape(1)
        sd[name.removesuffix(".weight") + ".scale_input"] = torch.ones(1)
        expected[name] = sd[name].float() * scale
    sd[sc.SD3_PREFIX + "scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    scaled = tmp_path / "models" / "Stable-diffusion" / "sd3.5_medium_fp8_scaled.safetensors"
    save_file(sd, str(scaled))
    transformer = load_pipeline(scaled).pipe.transformer
    attn = transformer.transformer_blocks[0].attn
    assert all(isinstance(m, Fp8Linear) and m.scale_weight is not None for m in (attn.to_q, attn.to_k, attn.to_v))
    assert len(fp8_linears(transformer)) > 10 and not any(k.endswith("scale_weight") for k in transformer.state_dict())
    got = torch.cat([m.weight.float() * m.scale_weight for m in (attn.to_q, attn.to_k, attn.to_v)]).detach()
    torch.testing.assert_close(got, expected[key], rtol=0, atol=0)
    assert not torch.equal(got, sd[key].float())  # the raw fp8 values would be wrong by the scale
    assert transformer.context_embedder.weight.dtype == torch.float32  # outside the blocks: folded
    torch.testing.assert_close(transformer.context_embedder.weight.detach(), expected[outside], rtol=0, atol=0)
    x = torch.randn(2, attn.to_q.in_features)
    torch.testing.assert_close(attn.to_q(x), torch.nn.functional.linear(x, got[: attn.to_q.out_features], attn.to_q.bias))
