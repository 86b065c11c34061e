"""FLUX key conversion: our table against diffusers' own BFL -> diffusers converter at FLUX's real width, both
directions, and the architecture read from shapes."""

from __future__ import annotations

import torch

from app.models.load import flux_convert as fc


def _real_width_original() -> dict[str, torch.Tensor]:
    """A BFL-layout state dict with FLUX.1's real row counts (width 3072) but one column, so it is small."""
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        model = FluxTransformer2DModel(num_layers=1, num_single_layers=1, joint_attention_dim=8,
                                       pooled_projection_dim=8, guidance_embeds=True)
    gen = torch.Generator().manual_seed(0)
    thin = {k: torch.randn((v.shape[0], 1) if v.ndim == 2 else v.shape, generator=gen)
            for k, v in model.state_dict().items()}
    return fc.diffusers_to_original(thin)


def test_matches_diffusers_converter_at_real_width():
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    original = _real_width_original()
    assert fc.is_flux_transformer(list(original))
    ours = fc.original_to_diffusers({fc.FLUX_PREFIX + k: v for k, v in original.items()})
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(original))
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


def test_round_trip_and_config():
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    cfg = {"num_layers": 2, "num_single_layers": 1, "attention_head_dim": 32, "num_attention_heads": 2,
           "joint_attention_dim": 32, "pooled_projection_dim": 16, "guidance_embeds": False,
           "axes_dims_rope": fc.rope_axes(32)}
    sd = FluxTransformer2DModel(**cfg).state_dict()
    original = fc.diffusers_to_original(sd)
    assert "guidance_in.in_layer.weight" not in original  # schnell: no distilled guidance
    back = fc.original_to_diffusers(original)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    inferred = fc.infer_transformer_config({k: tuple(v.shape) for k, v in original.items()})
    for key, value in cfg.items():
        assert inferred[key] == value, key
    assert inferred["in_channels"] == 64 and inferred["out_channels"] is None
    assert fc.rope_axes(128) == [16, 56, 56]
