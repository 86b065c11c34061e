"""Refiner (A1111 1.6+): the switch step, the models that ran each step, infotext, compatibility and conversions."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
import torch

from app.engine.refiner import check_compatible, eps_to_v, model_sigma_table, v_to_eps


# ------------------------------------------------------------------------------ pure parts
def _handle(family: str, prediction: str = "epsilon", title: str = "m") -> SimpleNamespace:
    return SimpleNamespace(loaded=SimpleNamespace(family=family, prediction_type=prediction), info=SimpleNamespace(title=title))


def test_compatibility_names_both_models():
    assert check_compatible(_handle("sd1"), _handle("sdxl")) is None  # 4-channel latents: allowed, as A1111
    with pytest.raises(ValueError, match=r"refiner 'flux-dev' \(FLUX.1 dev\) cannot continue a Stable Diffusion 1.x image of 'base'"):
        check_compatible(_handle("sd1", title="base"), _handle("flux", "flow", "flux-dev"))
    with pytest.raises(ValueError, match="inpainting model"):
        check_compatible(_handle("sd1"), SimpleNamespace(loaded=SimpleNamespace(family="sd1-inpaint",
                         prediction_type="epsilon", is_inpainting=True), info=SimpleNamespace(title="i")))
    assert check_compatible(_handle("sd1"), _handle("sd2v", "v_prediction")) is v_to_eps
    assert check_compatible(_handle("sd2v", "v_prediction"), _handle("sd1")) is eps_to_v


def test_prediction_conversions_are_exact_inverses():
    x0, eps = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    sigma = 2.5
    alpha, sig = 1 / (1 + sigma**2) ** 0.5, sigma / (1 + sigma**2) ** 0.5
    x_t = alpha * x0 + sig * eps
    v = alpha * eps - sig * x0
    assert torch.allclose(v_to_eps(v, x_t, sigma), eps, atol=1e-5)
    assert torch.allclose(eps_to_v(eps, x_t, sigma), v, atol=1e-5)


# ------------------------------------------------------------------------------ end to end (tiny SD1 → tiny SD1)
@pytest.fixture(scope="module")
def env(tiny_data_dir, tmp_path_factory):
    """tiny-sd1 plus a second SD1 checkpoint with other weights (the refiner), tiny-sd2v (v prediction), tiny-sdxl and
    the tiny SD1 LoRA."""
    from safetensors.torch import save_file

    from app.devtools.tiny_models import tiny_checkpoint_state_dict
    from app.models.catalog.index import Catalog
    from app.models.manager import ModelManager
    from app.paths import Paths
    from app.settings import Settings

    root = tmp_path_factory.mktemp("refiner-data")
    ckpts = root / "models" / "Stable-diffusion"
    ckpts.mkdir(parents=True)
    for name in ("tiny-sd1.safetensors", "tiny-sd2v.safetensors", "tiny-sdxl.safetensors"):
        shutil.copy(tiny_data_dir / "models" / "Stable-diffusion" / name, ckpts / name)
    shutil.copytree(tiny_data_dir / "models" / "Lora", root / "models" / "Lora")
    save_file(tiny_checkpoint_state_dict("sd1", seed=4321), str(ckpts / "tiny-refiner.safetensors"),
              metadata={"format": "pt"})
    paths = Paths.from_data_dir(root)
    settings = Settings(None)
    manager = ModelManager(Catalog(paths), settings, None, paths=paths)
    return manager, settings


def _recorder(manager, names):
    """A forward hook on each UNet: the model that ran, once per step (cond and uncond run as one batch)."""
    ran: list[str] = []
    hooks = []
    for name in names:
        unet = manager.get(name).loaded.pipe.unet
        hooks.append(unet.register_forward_hook(lambda *_a, name=name: ran.append(name)))
    return ran, hooks


def _run(env, steps=10, refiner_checkpoint_override="tiny-refiner", **fields):
    from app.engine.modes.txt2img import run_txt2img
    from app.params import GenerationParams, SeedParams

    manager, settings = env
    params = GenerationParams(prompt=fields.pop("prompt", "a cat"), steps=steps, width=64, height=64, sampler_name="Euler",
                              checkpoint="tiny-sd1", save_images=False, seed=SeedParams(seed=3),
                              refiner_checkpoint=refiner_checkpoint_override, **fields)
    return run_txt2img(manager, params, settings)


@pytest.mark.slow
def test_refiner_takes_over_at_the_switch_step(env):
    from app.infotext.parse import parse_generation_parameters

    manager, _ = env
    ran, hooks = _recorder(manager, ["tiny-refiner", "tiny-sd1"])
    try:
        res = _run(env, refiner_switch_at=0.6, override_settings={"refiner_switch_by_sample_steps": True})
    finally:
        for h in hooks:
            h.remove()
    assert ran == ["tiny-sd1"] * 6 + ["tiny-refiner"] * 4
    pairs = parse_generation_parameters(res.infotexts[0])
    refiner = manager.catalog.find_checkpoint("tiny-refiner")
    assert pairs["Refiner"] == refiner.short_title and "[" in pairs["Refiner"]
    assert pairs["Refiner switch at"] == "0.6" and pairs["Refiner switch by sampling steps"] == "True"
    assert pairs["Model"] == "tiny-sd1"  # the job's model
    assert manager.current.model_name == "tiny-sd1"  # active again for the next job


@pytest.mark.slow
def test_refiner_switch_by_noise_level_as_a1111(env):
    """Default rule: the step's sigma → nearest of the model's 1000 sigmas → (999 - index) / 1000 >= switch_at."""
    from app.engine.sampling import schedulers as samplers
    from app.engine.sampling.schedulers import resolve_sampler

    manager, _ = env
    ran, hooks = _recorder(manager, ["tiny-refiner", "tiny-sd1"])
    try:
        res = _run(env, refiner_switch_at=0.5, scheduler="Karras")
    finally:
        for h in hooks:
            h.remove()
    # the same schedule, computed here: the sigmas of a 10-step Euler Karras run on this model
    loaded = manager.get("tiny-sd1").loaded
    sampler, schedule = resolve_sampler("Euler", "Karras")
    scheduler = samplers.build_scheduler(sampler, schedule, dict(loaded.scheduler_config), loaded.prediction_type,
                                         noise_seeds=[3])
    samplers.make_timesteps(scheduler, 10, sampler, schedule, device=torch.device("cpu"))
    table = model_sigma_table(scheduler)
    ratios = [(999 - int(torch.argmin((table - float(s)).abs()))) / 1000 for s in scheduler.sigmas[:10]]
    base_steps = next(i for i, r in enumerate(ratios) if r >= 0.5)
    assert 0 < base_steps < 10
    assert ran == ["tiny-sd1"] * base_steps + ["tiny-refiner"] * (10 - base_steps)
    assert "Refiner switch by sampling steps" not in res.infotexts[0]


@pytest.mark.slow
def test_refiner_never_switches_at_one_and_v_refiner_converts(env):
    manager, _ = env
    ran, hooks = _recorder(manager, ["tiny-refiner", "tiny-sd1"])
    try:
        res = _run(env, refiner_switch_at=1.0)
    finally:
        for h in hooks:
            h.remove()
    assert ran == ["tiny-sd1"] * 10 and "Refiner" not in res.infotexts[0]
    # a v-prediction refiner continues a noise-prediction run (its output converted); the image is finite
    res = _run(env, refiner_switch_at=0.5, override_settings={"refiner_switch_by_sample_steps": True})
    assert res.images and "Refiner: tiny-refiner" in res.infotexts[0]
    from app.engine.modes.txt2img import run_txt2img
    from app.params import GenerationParams

    params = GenerationParams(prompt="a cat", steps=4, width=64, height=64, sampler_name="Euler", checkpoint="tiny-sd1",
                              save_images=False, refiner_checkpoint="tiny-sd2v", refiner_switch_at=0.5)
    out = run_txt2img(manager, params, env[1])
    assert "Refiner: tiny-sd2v" in out.infotexts[0]
    assert manager.current.model_name == "tiny-sd1"


@pytest.mark.slow
def test_refiner_switch_at_none_runs_the_whole_pass_on_the_refiner(env):
    """A1111: ``refiner_switch_at`` None (the API's default) never holds the switch back, so the refiner takes over at
    the first model evaluation; the infotext has no ``Refiner switch at`` (A1111 leaves None values out)."""
    manager, _ = env
    ran, hooks = _recorder(manager, ["tiny-refiner", "tiny-sd1"])
    try:
        res = _run(env, steps=3, refiner_switch_at=None)
    finally:
        for h in hooks:
            h.remove()
    assert ran == ["tiny-refiner"] * 3
    assert "Refiner: tiny-refiner" in res.infotexts[0] and "Refiner switch at" not in res.infotexts[0]
    assert manager.current.model_name == "tiny-sd1"


@pytest.mark.slow
def test_refiner_in_img2img(env):
    from PIL import Image

    from app.engine.modes.runners import run_img2img
    from app.params import GenerationParams, Img2ImgParams

    manager, settings = env
    ran, hooks = _recorder(manager, ["tiny-refiner", "tiny-sd1"])
    params = GenerationParams(prompt="a cat", steps=10, width=64, height=64, sampler_name="Euler", checkpoint="tiny-sd1",
                              save_images=False, refiner_checkpoint="tiny-refiner", refiner_switch_at=0.5,
                              override_settings={"refiner_switch_by_sample_steps": True},
                              img2img=Img2ImgParams(init_images=[Image.new("RGB", (64, 64), "gray")],
                                                    denoising_strength=0.6))
    try:
        res = run_img2img(manager, params, settings)
    finally:
        for h in hooks:
            h.remove()
    # img2img runs int(0.6 * 10) + 1 = 7 steps; the refiner takes over at step 4 of 7 (4/7 >= 0.5)
    assert ran == ["tiny-sd1"] * 4 + ["tiny-refiner"] * 3
    assert "Refiner: tiny-refiner" in res.infotexts[0]


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "expected"), [
    ("second pass", ["b"] * 4 + ["b"] * 2 + ["r"] * 2),
    ("first pass", ["b"] * 2 + ["r"] * 2 + ["b"] * 4),
    ("both passes", ["b", "b", "r", "r"] * 2),
])
def test_refiner_with_hires_fix_follows_hires_fix_refiner_pass(env, mode, expected):
    """Each pass starts on the job's model (A1111 reloads it before the second pass); the setting says which pass the
    refiner may take over (4 first-pass steps, 4 hires steps, switch at half of each)."""
    from app.params import HiresParams

    manager, _ = env
    ran, hooks = _recorder(manager, ["tiny-refiner", "tiny-sd1"])
    try:
        res = _run(env, steps=4, refiner_switch_at=0.5, hires=HiresParams(enabled=True, steps=4, upscaler="Latent"),
                   override_settings={"refiner_switch_by_sample_steps": True, "hires_fix_refiner_pass": mode})
    finally:
        for h in hooks:
            h.remove()
    assert ran == [{"b": "tiny-sd1", "r": "tiny-refiner"}[x] for x in expected]
    assert ("Hires refiner: " + mode in res.infotexts[0]) == (mode != "second pass")
    assert res.images[0].size == (128, 128) and manager.current.model_name == "tiny-sd1"


@pytest.mark.slow
def test_missing_refiner_fails_before_the_first_step(env):
    from app.models.handle import ModelNotFoundError

    manager, _ = env
    ran, hooks = _recorder(manager, ["tiny-sd1"])
    try:
        with pytest.raises(ModelNotFoundError, match="refiner checkpoint 'gone' not found"):
            _run(env, steps=2, refiner_checkpoint_override="gone")
    finally:
        for h in hooks:
            h.remove()
    assert ran == [] and manager.current.model_name == "tiny-sd1"


# ------------------------------------------------------------------------------ LoRA on the refiner
def _weights(manager, name):
    """CPU copies of a checkpoint's UNet and text-encoder weights (to check bit-exact restores)."""
    pipe = manager.get(name).loaded.pipe
    return {f"{part}.{k}": v.detach().cpu().clone() for part in ("unet", "text_encoder")
            for k, v in getattr(pipe, part).state_dict().items()}


def _patched_recorder(manager, names):
    """Forward hooks on each UNet and text encoder: (model, part, whether LoRA deltas are applied to it) per call."""
    from app.models.lora.patch import patch_for

    seen: list[tuple[str, str, bool]] = []
    hooks = []
    for name in names:
        pipe = manager.get(name).loaded.pipe
        patch = patch_for(pipe.unet)
        for part in ("unet", "text_encoder"):
            hooks.append(getattr(pipe, part).register_forward_hook(
                lambda *_a, name=name, part=part, patch=patch: seen.append((name, part, patch.patched_modules > 0))))
    return seen, hooks


@pytest.mark.slow
@pytest.mark.parametrize("refiner", ["tiny-refiner", "tiny-sdxl"])
def test_lora_follows_the_model_that_runs_and_both_are_restored(env, refiner):
    """A1111 patches its networks into whichever model runs: after the switch the job's LoRA applies to the refiner
    (UNet and text encoder) where its keys fit (an SD1 LoRA on an SD1 refiner), and is skipped with a job warning where
    they do not (SDXL); the job's model gets it back for the next batch; both models are bit-exact after the job."""
    from app.models.lora.handler import register_lora_handlers, unregister_lora_handlers

    manager, _ = env
    names = [refiner, "tiny-sd1"]
    before = {name: _weights(manager, name) for name in names}
    register_lora_handlers(manager.extra_networks)
    seen, hooks = _patched_recorder(manager, names)
    try:
        res = _run(env, steps=4, refiner_checkpoint_override=refiner, refiner_switch_at=0.5, n_iter=2,
                   prompt="a cat <lora:tiny-lora:1>", override_settings={"refiner_switch_by_sample_steps": True})
    finally:
        for h in hooks:
            h.remove()
        unregister_lora_handlers(manager.extra_networks)
    fits = refiner == "tiny-refiner"
    unet_calls = [(n, p) for n, part, p in seen if part == "unet"]
    assert unet_calls == ([("tiny-sd1", True)] * 2 + [(refiner, fits)] * 2) * 2  # two batches
    assert (refiner, "text_encoder", fits) in seen and ("tiny-sd1", "text_encoder", True) in seen
    assert all(patched == (n == "tiny-sd1" or fits) for n, _part, patched in seen)
    refused = [w for w in res.warnings if "tiny-lora" in w]
    assert bool(refused) != fits, res.warnings
    if refused:
        assert all(manager.catalog.find_checkpoint(refiner).title in w for w in refused)
    assert "Lora hashes: " in res.infotexts[0]  # the job's model had it: the refiner's refusal does not drop it
    for name in names:
        after = _weights(manager, name)
        assert all(torch.equal(after[k], v) for k, v in before[name].items()), name


@pytest.mark.slow
def test_lora_follows_the_hires_checkpoint_too(env):
    """The same rule for hires fix's own checkpoint: its second pass runs with the job's LoRA applied."""
    from app.models.lora.handler import register_lora_handlers, unregister_lora_handlers
    from app.params import HiresParams

    manager, _ = env
    before = _weights(manager, "tiny-refiner")
    register_lora_handlers(manager.extra_networks)
    seen, hooks = _patched_recorder(manager, ["tiny-refiner", "tiny-sd1"])
    try:
        res = _run(env, steps=2, refiner_checkpoint_override="", prompt="a cat <lora:tiny-lora:1>",
                   hires=HiresParams(enabled=True, steps=2, upscaler="Latent", checkpoint="tiny-refiner"))
    finally:
        for h in hooks:
            h.remove()
        unregister_lora_handlers(manager.extra_networks)
    assert [(n, p) for n, part, p in seen if part == "unet"] == [("tiny-sd1", True)] * 2 + [("tiny-refiner", True)] * 2
    assert res.warnings == [] and manager.current.model_name == "tiny-sd1"
    after = _weights(manager, "tiny-refiner")
    assert all(torch.equal(after[k], v) for k, v in before.items())
