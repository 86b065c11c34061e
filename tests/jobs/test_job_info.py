"""The API `info` JSON of a finished job (spec §10.2 keys)."""

from __future__ import annotations

import json

from app.infotext.format import DEFAULT_VERSION
from app.jobs.info import INFO_KEYS, info_json, info_to_string
from app.params import GenerationParams, HiresParams, Img2ImgParams, SeedParams

SPEC_KEYS = (
    "prompt, all_prompts, negative_prompt, all_negative_prompts, seed, all_seeds, subseed, all_subseeds, "
    "subseed_strength, width, height, sampler_name, cfg_scale, steps, batch_size, restore_faces, "
    "face_restoration_model, sd_model_name, sd_model_hash, sd_vae_name, sd_vae_hash, seed_resize_from_w, "
    "seed_resize_from_h, denoising_strength, extra_generation_params, index_of_first_image, infotexts, styles, "
    "job_timestamp, clip_skip, is_using_inpainting_conditioning, version"
).split(", ")


def test_info_keys_match_spec_and_values() -> None:
    params = GenerationParams(prompt="cat", negative_prompt="dog", styles=["s"], sampler_name="Euler", steps=3,
                              cfg_scale=7.0, width=64, height=64, batch_size=2, clip_skip=2,
                              seed=SeedParams(seed=5, subseed=9, subseed_strength=0.5),
                              hires=HiresParams(denoising_strength=0.6))
    info = info_json(
        params, all_prompts=["cat a", "cat b"], all_negative_prompts=["dog", "dog"], all_seeds=[5, 5],
        all_subseeds=[9, 10], infotexts=["t1", "t2"], sd_model_name="tiny", sd_model_hash="abcdef0123",
        extra_generation_params={"Lora hashes": "x: 1", "Hires prompt": lambda **_: None, "Per": [1, 2]},
        job_timestamp="20240506070809",
    )
    assert list(info) == list(INFO_KEYS) == SPEC_KEYS
    assert (info["prompt"], info["negative_prompt"], info["seed"], info["subseed"]) == ("cat a", "dog", 5, 9)
    assert (info["all_subseeds"], info["infotexts"], info["styles"]) == ([9, 10], ["t1", "t2"], ["s"])
    assert (info["denoising_strength"], info["clip_skip"], info["version"]) == (0.6, 2, DEFAULT_VERSION)
    assert info["extra_generation_params"] == {"Lora hashes": "x: 1", "Hires prompt": None, "Per": [1, 2]}
    assert info["face_restoration_model"] is None and info["restore_faces"] is False
    assert json.loads(info_to_string(info)) == info


def test_img2img_denoising_and_fallbacks() -> None:
    params = GenerationParams(prompt="p", img2img=Img2ImgParams(denoising_strength=0.3, init_images=[object()]))
    info = info_json(params, all_prompts=[], all_negative_prompts=[], all_seeds=[], all_subseeds=[], infotexts=[],
                     restore_faces=True, face_restoration_model="CodeFormer", version="v9", denoising_strength=None)
    assert (info["prompt"], info["seed"], info["subseed"], info["clip_skip"]) == ("p", -1, -1, 1)
    assert info["denoising_strength"] is None and info["face_restoration_model"] == "CodeFormer"
    assert info["version"] == "v9"
    info = info_json(params, all_prompts=["p"], all_negative_prompts=[""], all_seeds=[1], all_subseeds=[2],
                     infotexts=["x"])
    assert info["denoising_strength"] == 0.3
    assert info["version"] == DEFAULT_VERSION
    assert info_json(params, all_prompts=[], all_negative_prompts=[], all_seeds=[], all_subseeds=[], infotexts=[],
                     version=None)["version"] is None
    assert info_to_string({"a": object()}) == '{"a": null}'
