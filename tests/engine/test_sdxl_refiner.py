"""The SDXL refiner checkpoint (OpenCLIP bigG alone, aesthetic-score time ids): detected and loaded from its real LDM
key names, and used as the refiner of an SDXL base (the hand-over step, its 5 time ids with A1111's aesthetic scores)
or as a model of its own."""

from __future__ import annotations

import shutil

import pytest
import torch

from app.devtools.tiny_models import tiny_checkpoint_state_dict


def test_refiner_checkpoint_is_detected_by_its_keys():
    from app.models.load.config_infer import detect_family
    from app.models.load.detect import detect_role

    sd = tiny_checkpoint_state_dict("sdxl-refiner", seed=5)
    assert any(k.startswith("conditioner.embedders.0.model.transformer.resblocks.") for k in sd)
    assert not any(k.startswith("conditioner.embedders.1.") for k in sd)
    assert detect_family(sd) == "sdxl-refiner"
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    role = detect_role(shapes)
    assert (role.role, role.family) == ("checkpoint", "sdxl-refiner")


@pytest.fixture(scope="module")
def env(tiny_data_dir, tmp_path_factory):
    from safetensors.torch import save_file

    from app.models.catalog.index import Catalog
    from app.models.manager import ModelManager
    from app.paths import Paths
    from app.settings import Settings

    root = tmp_path_factory.mktemp("sdxl-refiner-data")
    ckpts = root / "models" / "Stable-diffusion"
    ckpts.mkdir(parents=True)
    shutil.copy(tiny_data_dir / "models" / "Stable-diffusion" / "tiny-sdxl.safetensors", ckpts / "tiny-sdxl.safetensors")
    save_file(tiny_checkpoint_state_dict("sdxl-refiner", seed=6000), str(ckpts / "tiny-sdxl-refiner.safetensors"),
              metadata={"format": "pt"})
    paths = Paths.from_data_dir(root)
    settings = Settings(None)
    return ModelManager(Catalog(paths), settings, None, paths=paths), settings


@pytest.mark.slow
def test_sdxl_base_then_sdxl_refiner(env):
    from app.engine.modes.txt2img import run_txt2img
    from app.params import GenerationParams, SeedParams

    manager, settings = env
    refiner = manager.get("tiny-sdxl-refiner")
    assert refiner.loaded.family == "sdxl-refiner" and refiner.loaded.pipe.text_encoder is None
    base = manager.get("tiny-sdxl")
    calls: list[tuple[str, torch.Tensor]] = []
    hooks = [
        handle.loaded.pipe.unet.register_forward_pre_hook(
            lambda _m, _a, kw, name=name: calls.append((name, kw["added_cond_kwargs"]["time_ids"].clone())),
            with_kwargs=True)
        for name, handle in (("base", base), ("refiner", refiner))
    ]
    params = GenerationParams(prompt="a cat", negative_prompt="blurry", steps=4, width=64, height=64,
                              sampler_name="Euler", checkpoint="tiny-sdxl", save_images=False, seed=SeedParams(seed=2),
                              refiner_checkpoint="tiny-sdxl-refiner", refiner_switch_at=0.5,
                              override_settings={"refiner_switch_by_sample_steps": True})
    try:
        res = run_txt2img(manager, params, settings)
    finally:
        for h in hooks:
            h.remove()
    assert [name for name, _ in calls] == ["base", "base", "refiner", "refiner"]
    assert calls[0][1].shape == (2, 6)  # the base: uncond and cond rows of (h, w, crop, target)
    ids = calls[2][1]  # the refiner: uncond then cond rows of (h, w, crop top, crop left, aesthetic score)
    assert ids.tolist() == [[64.0, 64.0, 0.0, 0.0, 2.5], [64.0, 64.0, 0.0, 0.0, 6.0]]
    assert "Refiner: tiny-sdxl-refiner [" in res.infotexts[0] and res.images[0].size == (64, 64)
    assert manager.current.model_name == "tiny-sdxl"

    # the refiner runs on its own too (A1111 lists it as a checkpoint like any other)
    alone = run_txt2img(manager, GenerationParams(prompt="a dog", steps=2, width=64, height=64, sampler_name="Euler",
                                                  checkpoint="tiny-sdxl-refiner", save_images=False), settings)
    assert alone.images[0].size == (64, 64) and "Model: tiny-sdxl-refiner" in alone.infotexts[0]
