"""txt2img end to end on the tiny models: samplers, seeds, CFG, prompt editing, AND, clip skip,
families, saving, overrides, tiling, interrupt — plus our loop vs the diffusers pipeline, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from app.engine.modes.runners import RUNNERS
from app.engine.modes.txt2img import run_txt2img
from app.engine.sampling.schedulers import SAMPLERS
from app.jobs.job import JobState
from app.jobs.service import JobService
from app.models.catalog.index import Catalog
from app.models.embeddings import EmbeddingDatabase
from app.models.manager import ModelManager
from app.params import GenerationParams, SeedParams
from app.paths import Paths
from app.settings import Settings
from tests.helpers import wait_for_step

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tiny_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("txt2img-out")
    paths = Paths.from_data_dir(tiny_data_dir)
    settings = Settings(None)
    settings.set("outdir_txt2img_samples", str(out / "samples"), save=False)
    settings.set("outdir_txt2img_grids", str(out / "grids"), save=False)
    manager = ModelManager(Catalog(paths), settings, None, embeddings=EmbeddingDatabase(paths.embeddings_dirs), paths=paths)
    return manager, settings, out


def _params(**kw) -> GenerationParams:
    seed = kw.pop("seed", 1234)
    base = dict(prompt="a photo of a cat", negative_prompt="blurry", steps=2, width=64, height=64,
                sampler_name="Euler a", checkpoint="tiny-sd1", save_images=False, save_grid=False)
    base.update(kw)
    return GenerationParams(seed=SeedParams(seed=seed), **base)


def _gen(env, **kw):
    manager, settings, _ = env
    return run_txt2img(manager, _params(**kw), settings)


def _arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


def _infotext_pairs(text: str) -> dict[str, str]:
    from app.infotext.parse import parse_generation_parameters

    return parse_generation_parameters(text)


# ---------------------------------------------------------------------------------------- loop
@pytest.mark.parametrize("kind", ["euler_a", "dpmpp_2m"])
def test_loop_is_bit_exact_with_diffusers_pipeline(env, kind):
    from diffusers import DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler
    from diffusers.utils.torch_utils import randn_tensor

    from app.engine.denoise import StepConds, sample

    manager, _, _ = env
    pipe = manager.get("tiny-sd1").pipe
    cfg = dict(manager.get("tiny-sd1").scheduler_config)

    def fresh():
        if kind == "euler_a":
            return EulerAncestralDiscreteScheduler.from_config(cfg)
        return DPMSolverMultistepScheduler.from_config(cfg, use_karras_sigmas=True, algorithm_type="dpmsolver++")

    with torch.no_grad():
        ids = [pipe.tokenizer(t, padding="max_length", max_length=77, return_tensors="pt").input_ids for t in ("a cat", "")]
        pos, neg = (pipe.text_encoder(i)[0] for i in ids)
        original = pipe.scheduler
        try:
            pipe.scheduler = fresh()
            ref = pipe(prompt_embeds=pos, negative_prompt_embeds=neg, num_inference_steps=4, height=64, width=64,
                       guidance_scale=7.0, generator=torch.Generator("cpu").manual_seed(99), output_type="latent").images
        finally:
            pipe.scheduler = original
        gen = torch.Generator("cpu").manual_seed(99)
        noise = randn_tensor((1, 4, 8, 8), generator=gen, dtype=pos.dtype)
        ours = sample(pipe.unet, fresh(), noise, StepConds.simple(pos, neg), 7.0, 4, generators=[gen]).latents
    assert torch.equal(ours, ref)


# ---------------------------------------------------------------------------------------- samplers
@pytest.mark.parametrize("sampler", [s.name for s in SAMPLERS])
def test_every_sampler_runs(env, sampler):
    res = _gen(env, sampler_name=sampler)
    assert len(res.images) == 1 and res.images[0].size == (64, 64)
    assert f"Sampler: {sampler}," in res.infotexts[0]
    assert np.isfinite(_arr(res.images[0])).all()


# ---------------------------------------------------------------------------------------- seeds
def test_same_seed_same_pixels_different_seed_differs(env):
    a = _gen(env).images[0]
    b = _gen(env).images[0]
    c = _gen(env, seed=4321).images[0]
    assert np.array_equal(_arr(a), _arr(b))
    assert not np.array_equal(_arr(a), _arr(c))


def test_batch_image_equals_single_image_with_seed_plus_one(env):
    batch = _gen(env, batch_size=2)
    single = _gen(env, seed=1235)
    assert batch.seeds == [1234, 1235]
    assert np.abs(_arr(batch.images[1]) - _arr(single.images[0])).max() <= 2
    assert "Seed: 1235," in batch.infotexts[1]


def test_n_iter_batches_and_grid(env):
    res = _gen(env, n_iter=2, save_images=True, save_grid=True)
    assert res.seeds == [1234, 1235]
    assert len(res.images) == 3 and res.info["index_of_first_image"] == 1  # grid first
    assert res.images[0].size == (128, 64)
    assert sum("grid-" in p for p in res.saved_paths) == 1
    unsaved = _gen(env, n_iter=2, override_settings={"grid_save": False}, save_images=True, save_grid=True)
    assert len(unsaved.images) == 3 and not any("grid-" in p for p in unsaved.saved_paths)  # returned, not saved
    no_grid = _gen(env, n_iter=2, save_images=True)
    assert len(no_grid.images) == 2 and no_grid.info["index_of_first_image"] == 0


# ---------------------------------------------------------------------------------------- guidance
def _count_unet_batches(unet):
    sizes: list[int] = []
    handle = unet.register_forward_pre_hook(lambda mod, args: sizes.append(args[0].shape[0]))
    return sizes, handle


def test_cfg_one_skips_the_uncond_pass(env):
    manager, _, _ = env
    unet = manager.get("tiny-sd1").pipe.unet
    sizes, handle = _count_unet_batches(unet)
    try:
        _gen(env, cfg_scale=1.0)
        one = list(sizes)
        sizes.clear()
        _gen(env, cfg_scale=7.0)
        seven = list(sizes)
    finally:
        handle.remove()
    assert one and set(one) == {1}
    assert seven and set(seven) == {2}


def test_prompt_editing_switches_conditioning(env):
    sizes = {}
    for prompt in ("a cat", "a dog", "a [cat:dog:1]"):
        sizes[prompt] = _arr(_gen(env, prompt=prompt, steps=3, sampler_name="Euler").images[0])
    edited = sizes["a [cat:dog:1]"]
    assert not np.array_equal(edited, sizes["a cat"])
    assert not np.array_equal(edited, sizes["a dog"])


def test_and_composition(env):
    cat = _arr(_gen(env, prompt="a cat", sampler_name="Euler").images[0])
    both = _arr(_gen(env, prompt="a cat AND a dog", sampler_name="Euler").images[0])
    zero = _arr(_gen(env, prompt="a cat AND a dog:0", sampler_name="Euler").images[0])
    assert not np.array_equal(cat, both)
    assert np.abs(zero - cat).max() <= 2  # weight 0 adds nothing


# ---------------------------------------------------------------------------------------- options
def test_clip_skip_changes_image_and_infotext(env):
    one = _gen(env)
    two = _gen(env, clip_skip=2)
    assert not np.array_equal(_arr(one.images[0]), _arr(two.images[0]))
    assert "Clip skip" not in one.infotexts[0]
    assert "Clip skip: 2," in two.infotexts[0]


def test_override_settings_apply_for_the_job_only(env):
    _, settings, _ = env
    res = _gen(env, override_settings={"CLIP_stop_at_last_layers": 2})
    assert "Clip skip: 2," in res.infotexts[0]
    assert settings.get("CLIP_stop_at_last_layers") == 1
    with pytest.raises(ValueError, match="CLIP_stop_at_last_layers"):
        _gen(env, override_settings={"CLIP_stop_at_last_layers": "lots"})


def test_vae_per_request_in_infotext(env):
    res = _gen(env, vae="tiny.vae.safetensors")
    pairs = _infotext_pairs(res.infotexts[0])
    assert pairs["VAE"] == "tiny.vae.safetensors" and len(pairs["VAE hash"]) == 10
    assert res.info["sd_vae_name"] == "tiny.vae.safetensors"
    plain = _gen(env, vae="None")
    assert "VAE" not in _infotext_pairs(plain.infotexts[0])


def test_tiling_changes_image_and_restores_convs(env):
    manager, _, _ = env
    plain = _arr(_gen(env).images[0])
    tiled = _gen(env, tiling=True)
    assert not np.array_equal(plain, _arr(tiled.images[0]))
    assert "Tiling: True" in tiled.infotexts[0]
    by_setting = _gen(env, override_settings={"tiling": True})
    assert np.array_equal(_arr(by_setting.images[0]), _arr(tiled.images[0])) and "Tiling: True" in by_setting.infotexts[0]
    convs = [m for m in manager.get("tiny-sd1").pipe.unet.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.padding_mode == "zeros" for c in convs)


def test_embedding_gives_ti_hashes(env):
    res = _gen(env, prompt="a photo of tiny-emb")
    assert "TI hashes:" in res.infotexts[0] and "tiny-emb: " in res.infotexts[0]


@pytest.mark.parametrize("family", ["sd2v", "sdxl"])
def test_other_families_run(env, family):
    res = _gen(env, checkpoint=f"tiny-{family}", sampler_name="DPM++ 2M")
    assert res.images[0].size == (64, 64)
    assert f"Model: tiny-{family}," in res.infotexts[0]


# ---------------------------------------------------------------------------------------- saving
def test_images_saved_with_infotext_before_done(env):
    _, _, out = env
    res = _gen(env, save_images=True, seed=777)
    path = res.saved_paths[0]
    assert "samples" in path and path.endswith("-777.png")
    with Image.open(path) as img:
        assert img.info["parameters"] == res.infotexts[0]
    nothing = _gen(env, seed=778)
    assert nothing.saved_paths == []
    assert not list((out / "samples").rglob("*-778.png"))


def test_write_failure_is_a_warning_and_image_is_returned(env, tmp_path):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    res = _gen(env, save_images=True, override_settings={"outdir_txt2img_samples": str(blocker / "sub")})
    assert len(res.images) == 1 and res.saved_paths == []
    assert res.warnings and "could not save image" in res.warnings[0]


# ---------------------------------------------------------------------------------------- service
def test_service_runs_txt2img_and_interrupts_long_job(env):
    manager, settings, _ = env
    svc = JobService(manager, settings, runners=RUNNERS)
    try:
        done = svc.submit(_params())
        assert done.wait(60).images and done.state == JobState.DONE
        long = svc.submit(_params(steps=50))
        wait_for_step(long, 2, timeout=60)
        svc.interrupt()
        res = long.wait(60)
        assert long.state == JobState.INTERRUPTED and len(res.images) == 1
        assert long.progress.sampling_step < 50
        bad = svc.submit(_params(checkpoint="no-such-checkpoint"))
        after = svc.submit(_params())
        with pytest.raises(Exception, match="no-such-checkpoint"):
            bad.wait(60)
        assert after.wait(60).images
    finally:
        svc.shutdown()


def test_override_checkpoint_and_live_previews(env):
    manager, settings, _ = env
    params = _params(checkpoint="", override_settings={"sd_model_checkpoint": "tiny-sd2v", "show_progress_every_n_steps": 1})
    svc = JobService(manager, settings, runners=RUNNERS)
    try:
        job = svc.submit(params)
        res = job.wait(60)
    finally:
        svc.shutdown()
    assert "Model: tiny-sd2v," in res.infotexts[0]
    assert settings.get("sd_model_checkpoint") in (None, "")
    assert job.progress.preview_id == 2  # every step, from the job's own settings view
    assert isinstance(job.progress.preview, Image.Image) and job.progress.preview.size == (64, 64)


def test_img2img_start_step_and_inpaint_hooks(env):
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel

    from app.engine.denoise import Inpainting, StepConds, StepsInfo, sample

    manager, _, _ = env
    handle = manager.get("tiny-sd1")
    g = torch.Generator().manual_seed(3)
    init, noise = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    cond, uncond = torch.randn(1, 77, 32, generator=g), torch.zeros(1, 77, 32)
    conds = StepConds.simple(cond, uncond)

    def run(mask=None, unet=handle.pipe.unet, extra=None):
        sched = EulerDiscreteScheduler.from_config(handle.scheduler_config)
        with torch.no_grad():
            return sample(unet, sched, noise, conds, 7.0, StepsInfo(10, start_step=6), init_latents=init,
                          inpainting=Inpainting(mask=mask, unet_extra_channels=extra))

    keep_all = run(mask=torch.zeros(1, 1, 8, 8))
    assert keep_all.total_steps == 4 and torch.equal(keep_all.latents, init)
    repaint = run(mask=torch.ones(1, 1, 8, 8))
    half = torch.zeros(1, 1, 8, 8)
    half[..., 4:] = 1
    mixed = run(mask=half)
    assert not torch.equal(repaint.latents, init)
    assert torch.equal(mixed.latents[..., :4], init[..., :4])
    # 9-channel inpainting UNet: mask + masked-image latents are concatenated to the model input
    unet9 = UNet2DConditionModel(sample_size=8, in_channels=9, out_channels=4, layers_per_block=1,
                                 block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                 attention_head_dim=8, norm_num_groups=32)
    seen = []
    hook = unet9.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[1]))
    res9 = run(unet=unet9, extra=torch.zeros(1, 5, 8, 8))
    hook.remove()
    assert set(seen) == {9} and res9.latents.shape == (1, 4, 8, 8)


def test_extra_network_tags_go_to_registered_handler(env):
    from app.engine import conditioning

    calls = []

    class Recorder(conditioning.ExtraNetworkHandler):
        def activate(self, plan, items):
            calls.append(("on", [p.items for p in items]))
            plan.extra["Testnet hashes"] = "foo: 123"

        def deactivate(self, plan):
            calls.append(("off", None))

    handlers = env[0].extra_networks  # the manager's registry
    handlers.register("testnet", Recorder())
    try:
        tagged = _gen(env, prompt="a photo of a cat <testnet:foo:0.5>")
    finally:
        handlers.unregister("testnet")
    plain = _gen(env, prompt="a photo of a cat ")
    assert calls == [("on", [["foo", "0.5"]]), ("off", None)]
    assert tagged.infotexts[0].startswith("a photo of a cat <testnet:foo:0.5>\n")
    assert 'Testnet hashes: "foo: 123"' in tagged.infotexts[0]
    assert np.array_equal(_arr(tagged.images[0]), _arr(plain.images[0]))  # the tag is not in the conditioning
    unknown = _gen(env, prompt="a cat <nosuchnet:x>")
    assert any("nosuchnet" in w for w in unknown.warnings)


@pytest.mark.parametrize("kind", ["Approx cheap", "Full", "TAESD"])
def test_preview_methods(env, kind):
    from app.engine.prepare import prepare
    from app.engine.preview import preview_image

    manager, settings, _ = env
    params = _params(batch_size=2, override_settings={"show_progress_type": kind})
    plan = prepare(manager, params, settings)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    grid = preview_image(plan, latents)
    assert grid is not None and grid.size == (128, 64)  # the batch as a 2x1 grid of 64x64 previews


def test_prepare_returns_the_effective_settings_and_leaves_the_context_alone(env):
    from types import SimpleNamespace

    from app.engine.prepare import prepare

    manager, settings, _ = env
    ctx = SimpleNamespace(settings=settings, paths=None)
    plan = prepare(manager, _params(override_settings={"show_progress_every_n_steps": 1}), settings, ctx)
    assert ctx.settings is settings  # the job mode, not prepare, hands plan.settings to its context
    assert plan.settings.get("show_progress_every_n_steps") == 1 and plan.settings.base is settings


def test_the_job_context_supplies_the_saver(env):
    from app.outputs.job import JobSaver

    manager, settings, _ = env
    made: list[JobSaver] = []

    def runner(ctx):
        default = ctx.saver

        def saver(*args):
            made.append(default(*args))
            return made[-1]

        ctx.saver = saver  # the job layer decides who writes the files; the engine only asks
        return RUNNERS["txt2img"](ctx)

    svc = JobService(manager, settings, runners={**RUNNERS, "txt2img": runner})
    try:
        res = svc.submit(_params(save_images=True)).wait(60)
    finally:
        svc.shutdown()
    assert len(made) == 1 and res.saved_paths and res.saved_paths == made[0].saved_paths


def test_bad_input_gives_clear_errors(env):
    with pytest.raises(ValueError, match="steps must be >= 1"):
        _gen(env, steps=0)
    with pytest.raises(ValueError, match="unknown sampler 'Nope'"):
        _gen(env, sampler_name="Nope")
    with pytest.raises(ValueError, match="at least 8"):
        _gen(env, width=0)
    odd = _gen(env, width=68, height=60)  # floored to the latent grid, as A1111 does
    assert odd.images[0].size == (64, 56) and "Size: 68x60" in odd.infotexts[0]


def test_variation_seed_and_ensd(env):
    manager, settings, _ = env
    base = _arr(_gen(env).images[0])
    params = _params()
    params.seed.subseed, params.seed.subseed_strength = 99, 0.5
    varied = run_txt2img(manager, params, settings)
    assert not np.array_equal(base, _arr(varied.images[0]))
    assert "Variation seed: 99, Variation seed strength: 0.5," in varied.infotexts[0]
    ensd_a = _gen(env, override_settings={"eta_noise_seed_delta": 31337})
    assert not np.array_equal(base, _arr(ensd_a.images[0]))  # ancestral noise comes from seed+ENSD
    assert "ENSD: 31337" in ensd_a.infotexts[0]
    euler = _arr(_gen(env, sampler_name="Euler").images[0])
    euler_ensd = _gen(env, sampler_name="Euler", override_settings={"eta_noise_seed_delta": 31337})
    assert np.array_equal(euler, _arr(euler_ensd.images[0])) and "ENSD" not in euler_ensd.infotexts[0]


def test_styles_are_applied_to_prompts_and_infotext(env):
    manager, _, _ = env
    styles_file = manager.paths.styles_file
    styles_file.write_text('name,prompt,negative_prompt\nfancy,"{prompt}, masterpiece",lowres\n', "utf-8")
    try:
        res = _gen(env, styles=["fancy", "missing"])
    finally:
        styles_file.unlink()
    assert res.infotexts[0].startswith("a photo of a cat, masterpiece\nNegative prompt: blurry, lowres\n")
    assert res.all_prompts == ["a photo of a cat, masterpiece"] and res.info["styles"] == ["fancy", "missing"]
    assert any("missing" in w for w in res.warnings)


def test_nan_in_half_precision_decode_retries_in_fp32(env):
    from app.engine.plan import EffectiveSettings
    from app.engine.prepare import prepare
    from app.engine.vae_io import decode

    manager, settings, _ = env
    plan = prepare(manager, _params(), settings)
    vae = plan.model.loaded.pipe.vae
    vae.to(dtype=torch.bfloat16)  # stands in for fp16 on a GPU
    hook = vae.decoder.register_forward_hook(
        lambda mod, args, out: torch.full_like(out, float("nan")) if out.dtype != torch.float32 else out
    )
    try:
        images = decode(plan, torch.randn(1, 4, 8, 8))
    finally:
        hook.remove()
        vae.to(dtype=torch.float32)
    assert torch.isfinite(images).all() and images.shape == (1, 3, 64, 64)
    assert plan.model.vae_fp32  # remembered: re-activating the model keeps the VAE in fp32
    settings_off = EffectiveSettings(settings, {"auto_vae_precision": False})
    plan.settings = settings_off
    vae.to(dtype=torch.bfloat16)
    hook = vae.decoder.register_forward_hook(lambda mod, args, out: torch.full_like(out, float("nan")))
    try:
        with pytest.raises(FloatingPointError, match="NaN"):
            decode(plan, torch.randn(1, 4, 8, 8))
    finally:
        hook.remove()
        vae.to(dtype=torch.float32)


def test_eta_reaches_samplers_that_take_it(env):
    plain = _gen(env, sampler_name="DPM++ 2S a")
    eta = _gen(env, sampler_name="DPM++ 2S a", eta=0.0)
    assert "Eta: 0.0" in eta.infotexts[0] and "Eta" not in plain.infotexts[0]
    assert not np.array_equal(_arr(plain.images[0]), _arr(eta.images[0]))
    ddim = _gen(env, sampler_name="DDIM", eta=0.5)
    assert "Eta DDIM: 0.5" in ddim.infotexts[0]
    assert not np.array_equal(_arr(ddim.images[0]), _arr(_gen(env, sampler_name="DDIM").images[0]))


def test_skip_ends_the_current_batch_and_the_job_goes_on(env):
    manager, settings, _ = env
    svc = JobService(manager, settings, runners=RUNNERS)
    steps_seen: list[tuple[int, int]] = []
    try:
        job = svc.submit(_params(steps=30, n_iter=2))
        job.add_listener(lambda ev, j: steps_seen.append((j.progress.job_no, j.progress.sampling_step)) if ev == "progress" else None)
        wait_for_step(job, 2, timeout=60)
        svc.skip()
        res = job.wait(120)
    finally:
        svc.shutdown()
    assert job.state == JobState.DONE and res.seeds == [1234, 1235]
    first = max(s for n, s in steps_seen if n == 0)
    second = max(s for n, s in steps_seen if n == 1)
    assert first < 30 and second == 30


def test_sigma_churn_reaches_euler(env):
    plain = _gen(env, sampler_name="Euler", steps=3)
    churned = _gen(env, sampler_name="Euler", steps=3, override_settings={"s_churn": 0.5, "s_tmax": 100.0})
    assert "Sigma churn: 0.5" in churned.infotexts[0] and "Sigma churn" not in plain.infotexts[0]
    assert not np.array_equal(_arr(plain.images[0]), _arr(churned.images[0]))
    again = _gen(env, sampler_name="Euler", steps=3, override_settings={"s_churn": 0.5, "s_tmax": 100.0})
    assert np.array_equal(_arr(again.images[0]), _arr(churned.images[0]))  # the churn noise is seeded


def test_ngms_skips_uncond_on_late_odd_steps(env):
    manager, _, _ = env
    unet = manager.get("tiny-sd1").pipe.unet
    sizes, handle = _count_unet_batches(unet)
    try:
        res = _gen(env, sampler_name="Euler", steps=4, override_settings={"s_min_uncond": 15.0})
    finally:
        handle.remove()
    assert sizes == [2, 1, 2, 1]  # every second step below the sigma runs the cond only
    assert "NGMS: 15.0" in res.infotexts[0]
    both = _gen(env, prompt="a cat AND a dog", sampler_name="Euler", steps=2, override_settings={"s_min_uncond": 15.0})
    assert both.images[0].size == (64, 64)


def test_skip_early_cfg_and_pad_conds(env):
    manager, _, _ = env
    unet = manager.get("tiny-sd1").pipe.unet
    sizes, handle = _count_unet_batches(unet)
    try:
        res = _gen(env, sampler_name="Euler", steps=4, override_settings={"skip_early_cond": 0.5})
    finally:
        handle.remove()
    assert sizes == [1, 1, 1, 2]  # steps 0..2 have i/total <= 0.5 (A1111 counts the same way)
    assert "Skip Early CFG: 0.5" in res.infotexts[0]
    long_neg = "blurry, " * 40  # two chunks: the prompt gets padded
    plain = _gen(env, negative_prompt=long_neg)
    padded = _gen(env, negative_prompt=long_neg, override_settings={"pad_cond_uncond": True})
    assert "Pad conds: True" in padded.infotexts[0]
    assert not np.array_equal(_arr(plain.images[0]), _arr(padded.images[0]))


def test_taesd_decode_method(env):
    from diffusers import AutoencoderTiny
    from safetensors.torch import save_file

    manager, _, _ = env
    full = _gen(env)
    missing = _gen(env, override_settings={"sd_vae_decode_method": "TAESD"})
    assert np.array_equal(_arr(full.images[0]), _arr(missing.images[0])) and missing.warnings
    folder = manager.paths.models_dir / "VAE-taesd"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "taesd_decoder.safetensors"
    torch.manual_seed(1)
    save_file({k: v.contiguous() for k, v in AutoencoderTiny().state_dict().items() if k.startswith("decoder.")}, str(target))
    try:
        fast = _gen(env, override_settings={"sd_vae_decode_method": "TAESD"})
    finally:
        target.unlink()
        manager._taesd.clear()
    assert fast.images[0].size == (64, 64) and "VAE Decoder: TAESD" in fast.infotexts[0]
    assert not np.array_equal(_arr(full.images[0]), _arr(fast.images[0]))


def test_sgm_noise_multiplier(env):
    plain = _gen(env, sampler_name="Euler")
    sgm = _gen(env, sampler_name="Euler", override_settings={"sgm_noise_multiplier": True})
    assert "SGM noise multiplier: True" in sgm.infotexts[0]
    assert not np.array_equal(_arr(plain.images[0]), _arr(sgm.images[0]))


@pytest.mark.parametrize("schedule", ["Simple", "Automatic"])
def test_lcm_runs_past_its_50_step_grid(env, schedule):
    """LCM with more steps than its 50-entry origin grid repeats the first timesteps; the job still runs every step
    (it used to fail with IndexError at the end)."""
    result = _gen(env, sampler_name="LCM", scheduler=schedule, steps=60, cfg_scale=1.0, width=32, height=32)
    assert len(result.images) == 1 and _arr(result.images[0]).std() > 0
