"""Parsed infotext -> GenerationParams + override settings (spec §4.4 paste mapping)."""

from __future__ import annotations

from PIL import Image

from app.infotext.format import create_infotext
from app.infotext.parse import parse_generation_parameters
from app.infotext.paste import infotext_to_params
from app.params import GenerationParams, HiresParams, Img2ImgParams, SeedParams
from tests.infotext.test_infotext import EXAMPLE_A, EXAMPLE_B, EXAMPLE_C


def test_example_a_maps_to_ui_fields() -> None:
    params, overrides = infotext_to_params(parse_generation_parameters(EXAMPLE_A))
    assert (params.prompt, params.negative_prompt) == ("a photo of a cat", "blurry")
    assert (params.steps, params.sampler_name, params.scheduler, params.cfg_scale) == (20, "DPM++ 2M", "Karras", 7.0)
    assert (params.seed.seed, params.width, params.height, params.clip_skip) == (1234, 512, 512, 1)
    assert params.checkpoint == "" and params.hires.enabled is False
    assert isinstance(params.steps, int) and isinstance(params.cfg_scale, float)
    assert overrides == {}


def test_example_b_enables_hires_and_sets_vae_and_clip_skip() -> None:
    params, overrides = infotext_to_params(parse_generation_parameters(EXAMPLE_B), allow_checkpoint_swap=True)
    assert params.hires.enabled and params.hires.scale == 2.0 and params.hires.upscaler == "Latent"
    assert params.hires.denoising_strength == 0.7
    assert (params.hires.resize_x, params.hires.checkpoint, params.hires.sampler_name, params.hires.scheduler) == (0, "", "", "")
    assert params.clip_skip == 2 and params.vae == "vae-ft-mse-840000-ema-pruned.safetensors"
    assert params.checkpoint == "6ce0161689"
    assert (params.width, params.height, params.seed.seed) == (512, 768, 3071412937)
    assert overrides == {}


def test_example_c_into_img2img() -> None:
    params, overrides = infotext_to_params(parse_generation_parameters(EXAMPLE_C), kind="img2img")
    i2i = params.img2img
    assert i2i is not None
    assert (i2i.denoising_strength, i2i.mask_blur_x, i2i.mask_blur_y, i2i.inpainting_fill) == (0.75, 4, 4, 0)
    assert (i2i.inpaint_full_res, i2i.inpaint_full_res_padding, i2i.inpainting_mask_invert) == (False, 32, 0)
    assert overrides == {"eta_ancestral": 0.0}
    # pasted into txt2img, Denoising strength with the (default) Hires resize key enables hires, as A1111 does
    txt, _ = infotext_to_params(parse_generation_parameters(EXAMPLE_C))
    assert txt.img2img is None and txt.hires.enabled and txt.hires.denoising_strength == 0.75


def test_overrides_only_when_different_and_casts() -> None:
    text = "p\nSteps: 5, Seed: 1, RNG: CPU, ENSD: 31337, Eta: 1.0, Pad conds: True, Discard penultimate sigma: False, Emphasis: No norm"
    parsed = parse_generation_parameters(text)
    _, overrides = infotext_to_params(parsed)
    assert overrides == {"randn_source": "CPU", "eta_noise_seed_delta": 31337, "pad_cond_uncond": True, "emphasis": "No norm"}
    _, overrides = infotext_to_params(parsed, current_settings={"randn_source": "CPU", "emphasis": "Original",
                                                                "always_discard_next_to_last_sigma": True})
    assert overrides == {"eta_noise_seed_delta": 31337, "pad_cond_uncond": True, "emphasis": "No norm",
                         "always_discard_next_to_last_sigma": False}


def test_bad_values_are_ignored_and_base_kept() -> None:
    base = GenerationParams(steps=33, cfg_scale=5.0, prompt="old")
    params, _ = infotext_to_params({"Steps": "abc", "CFG scale": "6.5", "Seed": "12.0", "Masked content": "??"}, base)
    assert (params.steps, params.cfg_scale, params.seed.seed, params.prompt) == (33, 6.5, 12, "old")
    assert base.cfg_scale == 5.0  # base is not mutated


def test_skip_fields_and_model_name_fallback() -> None:
    parsed = parse_generation_parameters("p\nSteps: 5, Seed: 7, Model: foo, Size: 64x32")
    params, _ = infotext_to_params(parsed, allow_checkpoint_swap=True, skip_fields=["Seed"])
    assert params.checkpoint == "foo" and params.seed.seed == -1 and (params.width, params.height) == (64, 32)


def test_round_trip_params_through_infotext() -> None:
    original = GenerationParams(
        prompt="a (red:1.2) fox", negative_prompt="ugly, blurry", sampler_name="DPM++ SDE", scheduler="Exponential",
        steps=12, cfg_scale=4.5, width=320, height=448, clip_skip=3, tiling=True,
        seed=SeedParams(seed=11, subseed=22, subseed_strength=0.3, seed_resize_from_w=256, seed_resize_from_h=256),
        hires=HiresParams(enabled=True, scale=1.5, upscaler="Latent (bicubic)", steps=7, denoising_strength=0.45,
                          sampler_name="Euler", scheduler="Karras", prompt="a fox, detailed", negative_prompt="n2"),
    )
    text = create_infotext(original, prompt=original.prompt, negative_prompt=original.negative_prompt, seed=11,
                           subseed=22, extra={"Hires schedule type": "Karras"})
    params, overrides = infotext_to_params(parse_generation_parameters(text))
    assert params.to_dict() == original.to_dict()
    assert overrides == {}  # the parsed default Emphasis "Original" equals the setting default


def test_round_trip_img2img_params() -> None:
    original = GenerationParams(prompt="x", img2img=Img2ImgParams(
        denoising_strength=0.4, mask=Image.new("L", (8, 8)), mask_blur_x=6, mask_blur_y=6, inpainting_fill=2,
        inpaint_full_res=True, inpaint_full_res_padding=48, inpainting_mask_invert=1, initial_noise_multiplier=0.9))
    text = create_infotext(original, prompt="x", negative_prompt="", seed=-5)
    params, overrides = infotext_to_params(parse_generation_parameters(text), GenerationParams(img2img=Img2ImgParams()))
    expected = original.copy_without_images().to_dict()
    expected["seed"]["seed"] = -5
    expected["scheduler"] = "Karras"  # DPM++ 2M + Automatic is written (and so read back) as Karras
    expected["clip_skip"] = 1  # no Clip skip key means 1
    assert params.to_dict() == expected
    assert overrides == {"initial_noise_multiplier": 0.9}


def test_shift_and_unconditional_first_steps_round_trip() -> None:
    """Flow models write `Shift`, and any model `Unconditional first steps` when > 0; paste reads both back."""
    params = GenerationParams(prompt="a cat", sampler_name="res_multistep", scheduler="Simple", steps=8, cfg_scale=1.0)
    text = create_infotext(params, prompt="a cat", negative_prompt="", seed=7,
                           extra={"Shift": 3.0, "Unconditional first steps": 2})
    assert "Shift: 3.0" in text and "Unconditional first steps: 2" in text
    back, overrides = infotext_to_params(parse_generation_parameters(text))
    assert (back.shift, back.unconditional_first_steps, back.sampler_name, back.scheduler) == (3.0, 2, "res_multistep",
                                                                                              "Simple")
    assert overrides == {}
    plain, _ = infotext_to_params(parse_generation_parameters("a cat\nSteps: 20, Sampler: Euler, Seed: 1"))
    assert (plain.shift, plain.unconditional_first_steps) == (None, 0)
