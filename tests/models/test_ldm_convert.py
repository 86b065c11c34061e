"""diffusers -> LDM key map: round trips through diffusers' own convert_ldm_* functions.

Tiny models are checked tensor by tensor; the real full-size SD1.5 / SD2 / SDXL architectures
(from the shipped configs, built on the meta device: no memory, no weights) are checked key by key
and shape by shape, and the loader's config inference must give back the shipped architecture.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from app.configs import load_family_config
from app.devtools import tiny_configs as tc
from app.models.load import config_infer as ci
from app.models.load import ldm_convert as lc


def _clip(cfg: dict, with_projection: bool = False, extra_layers: int = 0):
    conf = CLIPTextConfig(**{k: v for k, v in cfg.items() if k != "architectures"})
    conf.num_hidden_layers += extra_layers
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(conf)


def _same(a: dict, b: dict) -> None:
    assert set(a) == set(b), sorted(set(a) ^ set(b))[:10]
    for k in a:
        assert a[k].shape == b[k].shape, k
        if a[k].device.type != "meta":
            assert torch.equal(a[k], b[k]), k


def _no_pos_ids(sd: dict) -> dict:
    return {k: v for k, v in sd.items() if not k.endswith("position_ids")}


@pytest.mark.parametrize("family", ["sd1", "sd2v", "sdxl"])
def test_tiny_unet_and_vae_round_trip(family: str) -> None:
    torch.manual_seed(0)
    ucfg, vcfg = tc.tiny_unet_config(family), tc.tiny_vae_config(family)
    unet_sd = UNet2DConditionModel.from_config(ucfg).state_dict()
    vae_sd = AutoencoderKL.from_config(vcfg).state_dict()
    ldm = lc.unet_to_ldm(unet_sd, ucfg) | lc.vae_to_ldm(vae_sd, vcfg)
    assert all(k.startswith((lc.UNET_PREFIX, lc.VAE_PREFIX)) for k in ldm)
    assert "model.diffusion_model.input_blocks.0.0.weight" in ldm
    assert "model.diffusion_model.out.2.weight" in ldm
    _same(convert_ldm_unet_checkpoint(ldm, ucfg), unet_sd)
    _same(convert_ldm_vae_checkpoint(ldm, vcfg), vae_sd)


def test_vae_attention_becomes_1x1_conv() -> None:
    cfg = tc.tiny_vae_config("sd1")
    ldm = lc.vae_to_ldm(AutoencoderKL.from_config(cfg).state_dict(), cfg)
    c = cfg["block_out_channels"][-1]
    for name in ("q", "k", "v", "proj_out"):
        assert ldm[f"first_stage_model.encoder.mid.attn_1.{name}.weight"].shape == (c, c, 1, 1)
        assert ldm[f"first_stage_model.decoder.mid.attn_1.{name}.weight"].shape == (c, c, 1, 1)
    assert ldm["first_stage_model.encoder.mid.attn_1.norm.weight"].shape == (c,)
    # LDM numbers decoder levels from full resolution: up.0 (diffusers up_blocks.3) has no upsampler
    assert "first_stage_model.decoder.up.0.upsample.conv.weight" not in ldm
    assert "first_stage_model.decoder.up.3.upsample.conv.weight" in ldm


@pytest.mark.parametrize(
    ("diffusers_key", "ldm_key"),
    [
        ("conv_in.weight", "input_blocks.0.0.weight"),
        ("time_embedding.linear_2.bias", "time_embed.2.bias"),
        ("down_blocks.0.resnets.1.conv1.weight", "input_blocks.2.0.in_layers.2.weight"),
        ("down_blocks.0.attentions.1.proj_in.weight", "input_blocks.2.1.proj_in.weight"),
        ("down_blocks.0.downsamplers.0.conv.weight", "input_blocks.3.0.op.weight"),
        ("down_blocks.1.resnets.0.conv_shortcut.weight", "input_blocks.4.0.skip_connection.weight"),
        ("mid_block.resnets.1.time_emb_proj.weight", "middle_block.2.emb_layers.1.weight"),
        (
            "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight",
            "middle_block.1.transformer_blocks.0.attn2.to_k.weight",
        ),
        ("up_blocks.0.upsamplers.0.conv.weight", "output_blocks.2.1.conv.weight"),
        ("up_blocks.1.attentions.2.proj_out.weight", "output_blocks.5.1.proj_out.weight"),
        ("up_blocks.1.resnets.2.norm2.weight", "output_blocks.5.0.out_layers.0.weight"),
        ("conv_norm_out.weight", "out.0.weight"),
    ],
)
def test_tiny_sd1_unet_names(diffusers_key: str, ldm_key: str) -> None:
    cfg = tc.tiny_unet_config("sd1")
    with torch.device("meta"):
        sd = UNet2DConditionModel.from_config(cfg).state_dict()
    assert diffusers_key in sd
    assert lc.unet_to_ldm({diffusers_key: sd[diffusers_key]}, cfg) == {
        "model.diffusion_model." + ldm_key: sd[diffusers_key]
    }


def test_clip_l_gets_text_model_prefix_back() -> None:
    torch.manual_seed(1)
    te = _clip(tc.tiny_text_encoder_config("sd1"))
    sd = te.state_dict()
    assert not any(k.startswith("text_model.") for k in sd)  # transformers >= 5.6 flattened CLIPTextModel
    ldm = lc.clip_to_ldm(sd, lc.SD1_CLIP_PREFIX)
    assert "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight" in ldm
    back = {k.removeprefix("text_model."): v for k, v in convert_ldm_clip_checkpoint(ldm).items()}
    _same(back, _no_pos_ids(sd))


@pytest.mark.parametrize("prefix", [lc.SDXL_OPEN_CLIP_PREFIX, lc.SD2_OPEN_CLIP_PREFIX])
def test_open_clip_round_trip(prefix: str) -> None:
    torch.manual_seed(2)
    te = _clip(tc.tiny_text_encoder_config("sdxl", 2), with_projection=True)
    sd = te.state_dict()
    ldm = lc.open_clip_to_ldm(sd, prefix)
    hidden = te.config.hidden_size
    assert ldm[prefix + "transformer.resblocks.0.attn.in_proj_weight"].shape == (3 * hidden, hidden)
    assert ldm[prefix + "text_projection"].shape == (hidden, te.config.projection_dim)
    assert prefix + "positional_embedding" in ldm and prefix + "ln_final.weight" in ldm
    expected = _no_pos_ids(sd)
    if prefix == lc.SD2_OPEN_CLIP_PREFIX:  # diffusers' SD2 text encoder has no projection: it drops it
        expected.pop("text_projection.weight")
    _same(convert_open_clip_checkpoint(te, ldm, prefix=prefix), expected)


def _meta_ldm(family: str) -> tuple[dict, dict]:
    """Full-size LDM state dict (meta tensors) and the diffusers state dicts it came from."""
    base = family.removesuffix("-inpaint")
    ucfg, vcfg = load_family_config(family, "unet"), load_family_config(family, "vae")
    with torch.device("meta"):
        parts = {"unet": UNet2DConditionModel.from_config(ucfg).state_dict()}
        parts["vae"] = AutoencoderKL.from_config(vcfg).state_dict()
        te_cfg = load_family_config(family, "text_encoder")
        if base in ("sd2", "sd2v"):
            te = _clip(te_cfg, extra_layers=1)  # OpenCLIP-H: 24 resblocks, the last unused
        else:
            te = _clip(te_cfg)
        parts["te"] = te.state_dict()
        if base == "sdxl":
            parts["te2"] = _clip(load_family_config(family, "text_encoder_2"), with_projection=True).state_dict()
    ldm = lc.unet_to_ldm(parts["unet"], ucfg) | lc.vae_to_ldm(parts["vae"], vcfg)
    if base == "sd1":
        ldm |= lc.clip_to_ldm(parts["te"], lc.SD1_CLIP_PREFIX)
    elif base == "sdxl":
        ldm |= lc.clip_to_ldm(parts["te"], lc.SDXL_CLIP_PREFIX) | lc.open_clip_to_ldm(
            parts["te2"], lc.SDXL_OPEN_CLIP_PREFIX
        )
    else:
        ldm |= lc.open_clip_to_ldm(parts["te"], lc.SD2_OPEN_CLIP_PREFIX)
        if base == "sd2v":
            ldm["v_pred"] = torch.zeros(0)
    return ldm, parts


def _model_config(cls, cfg: dict) -> dict:
    with torch.device("meta"):
        model = cls.from_config(cfg)
    return {k: v for k, v in dict(model.config).items() if not k.startswith("_")}


@pytest.mark.parametrize(
    ("family", "n_keys"),
    [("sd1", 686 + 248 + 196), ("sd1-inpaint", 686 + 248 + 196), ("sd2v", None), ("sdxl", 2513)],
)
def test_full_size_architectures(family: str, n_keys: int | None) -> None:
    ldm, parts = _meta_ldm(family)
    if n_keys is not None:
        assert len(ldm) == n_keys
    assert ci.detect_family(ldm) == family
    ucfg, vcfg = load_family_config(family, "unet"), load_family_config(family, "vae")
    _same(convert_ldm_unet_checkpoint(ldm, ucfg), parts["unet"])
    _same(convert_ldm_vae_checkpoint(ldm, vcfg), parts["vae"])
    pooled = int(ldm[lc.SDXL_OPEN_CLIP_PREFIX + "text_projection"].shape[1]) if family == "sdxl" else None
    inferred = ci.infer_unet_config(ldm, family, pooled_dim=pooled)
    assert _model_config(UNet2DConditionModel, inferred) == _model_config(UNet2DConditionModel, ucfg)
    assert _model_config(AutoencoderKL, ci.infer_vae_config(ldm, family)) == _model_config(AutoencoderKL, vcfg)
    for which in (1, 2) if family == "sdxl" else (1,):
        shipped = load_family_config(family, "text_encoder" if which == 1 else "text_encoder_2")
        assert ci.infer_clip_config(ldm, family, which) == shipped


def test_unknown_diffusers_key_is_an_error() -> None:
    with pytest.raises(KeyError, match="no LDM name"):
        lc.unet_to_ldm({"bogus.weight": torch.zeros(1)}, tc.tiny_unet_config("sd1"))
    with pytest.raises(KeyError, match="no open_clip name"):
        lc.open_clip_to_ldm({"encoder.layers.0.weird.weight": torch.zeros(1)}, lc.SD2_OPEN_CLIP_PREFIX)
