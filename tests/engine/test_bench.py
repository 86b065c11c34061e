"""Benchmark harness and the speed paths it checks: SDPA attention, cfg=1 skip, conditioning cache,
optimisation settings, the diffusers reference built from our inferred config folder."""

from __future__ import annotations

import pytest
import torch

from app.models import optim
from app.params import GenerationParams, SeedParams

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench_app(tiny_data_dir):
    from bench.app_side import AppBench

    app = AppBench(tiny_data_dir)
    yield app
    app.close()


def _params(**kw) -> GenerationParams:
    base = dict(
        prompt="a red apple",
        negative_prompt="blurry",
        steps=2,
        width=64,
        height=64,
        sampler_name="Euler",
        checkpoint="tiny-sd1",
        save_images=False,
        save_grid=False,
        seed=SeedParams(seed=kw.pop("seed", 5)),
    )
    base.update(kw)
    return GenerationParams(**base)


def test_manager_applies_sdpa_attention(bench_app):
    handle = bench_app.manager.get("tiny-sd1")
    assert handle.optimisations["attention"] == "AttnProcessor2_0"
    assert set(optim.attention_summary(handle.loaded.pipe.unet)) == {"AttnProcessor2_0"}


@pytest.mark.parametrize(
    ("choice", "cls"),
    [
        ("Automatic", "AttnProcessor2_0"),
        ("sdp-no-mem", "AttnProcessor2_0"),
        ("xformers", "AttnProcessor2_0"),
        ("None", "AttnProcessor"),
    ],
)
def test_attention_choice_maps_to_processor(choice, cls):
    assert optim.attention_processor_class(choice).__name__ == cls


def test_attention_none_gives_the_same_output(bench_app):
    unet = bench_app.manager.get("tiny-sd1").loaded.pipe.unet
    x, c = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.randn(2, 77, 32)
    with torch.inference_mode():
        sdpa = unet(x, 10, encoder_hidden_states=c).sample
        try:
            assert optim.set_attention(unet, "None") > 0
            assert set(optim.attention_summary(unet)) == {"AttnProcessor"}
            plain = unet(x, 10, encoder_hidden_states=c).sample
        finally:
            optim.set_attention(unet, "Automatic")
    assert set(optim.attention_summary(unet)) == {"AttnProcessor2_0"}
    torch.testing.assert_close(plain, sdpa, rtol=1e-4, atol=1e-5)


def test_unknown_attention_choice_and_unsupported_settings_are_reported(bench_app):
    pipe = bench_app.manager.get("tiny-sd1").loaded.pipe
    with pytest.raises(ValueError, match="cross_attention_optimization.*'flash9'"):
        optim.apply_optimisations(pipe, None, {"cross_attention_optimization": "flash9"})
    report = optim.apply_optimisations(pipe, None, {"token_merging_ratio": 0.5, "deepcache_enabled": True})
    assert report["unsupported"] == ["token_merging_ratio"]  # DeepCache is applied by the sampler, not here
    assert report["attention_changed"] == 0  # already SDPA everywhere


@pytest.mark.parametrize(("cfg", "unet_batch"), [(1.0, 2), (7.0, 4)])
def test_cfg_one_skips_the_unconditional_pass(bench_app, cfg, unet_batch):
    unet = bench_app.unet("tiny-sd1")
    shapes: list[int] = []
    hook = unet.register_forward_pre_hook(lambda m, a: shapes.append(a[0].shape[0]))
    try:
        bench_app.run(_params(cfg_scale=cfg, batch_size=2))
    finally:
        hook.remove()
    assert shapes == [unet_batch] * 2


def test_conditioning_cache_hits_on_repeated_prompts(bench_app):
    te = bench_app.manager.get("tiny-sd1").loaded.pipe.text_encoder
    calls: list[int] = []
    hook = te.register_forward_pre_hook(lambda m, a, kw=None: calls.append(1), with_kwargs=False)
    try:
        bench_app.run(_params(prompt="a unique teapot 1", seed=1))
        first = len(calls)
        for seed in (2, 3):  # generate-forever: new seeds, same prompts
            bench_app.run(_params(prompt="a unique teapot 1", seed=seed))
    finally:
        hook.remove()
    assert first >= 1 and len(calls) == first


def test_unet_timer_measures_inside_and_span():
    from bench.app_side import UNetTimer

    now = [0.0]  # a fake clock: exact durations, whatever else runs on the machine

    class Slow(torch.nn.Module):
        def forward(self, x):
            now[0] += 0.02  # 20 ms inside the module
            return x

    mod = Slow()
    timer = UNetTimer(clock=lambda: now[0]).attach(mod)
    mod(torch.zeros(1))
    now[0] += 0.02  # 20 ms outside the module, between two calls
    mod(torch.zeros(1))
    timer.detach()
    mod(torch.zeros(1))  # detached: not counted
    assert timer.calls == 2
    assert timer.inside == pytest.approx(0.04) and timer.span == pytest.approx(0.06)
    assert timer.outside_share == pytest.approx(1 / 3)


def test_reference_pipeline_uses_the_inferred_architecture(tiny_data_dir, tmp_path, bench_app):
    from bench import reference

    ckpt = tiny_data_dir / "models" / "Stable-diffusion" / "tiny-sd1.safetensors"
    folder = reference.write_config_folder(ckpt, tmp_path / "cfg")
    pipe = reference.load_reference_pipeline(ckpt, folder, "Euler a")
    ours = bench_app.unet("tiny-sd1")
    assert list(pipe.unet.config.block_out_channels) == list(ours.config.block_out_channels)
    assert type(pipe.scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    for (name, a), (_, b) in zip(
        sorted(pipe.unet.state_dict().items()), sorted(ours.state_dict().items()), strict=True
    ):
        assert torch.equal(a, b), name
    images = reference.generate(pipe, "a cat", "", 2, 64, 64, 7.0, [1, 2])
    assert [im.size for im in images] == [(64, 64), (64, 64)]
    with pytest.raises(ValueError, match="sampler 'Heun'"):
        reference.make_scheduler("Heun", pipe.scheduler.config)


def test_reference_refuses_other_families(tiny_data_dir, tmp_path):
    from bench import reference

    with pytest.raises(ValueError, match="tiny-sdxl.safetensors.*SD1 checkpoints only.*sdxl"):
        reference.write_config_folder(
            tiny_data_dir / "models" / "Stable-diffusion" / "tiny-sdxl.safetensors", tmp_path / "x"
        )


# ---------------------------------------------------------------------------------------- DeepCache
@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_deepcache_interval_one_is_the_unet_bit_for_bit(family):
    from diffusers import UNet2DConditionModel

    from app.devtools.tiny_configs import tiny_unet_config
    from app.engine.sampling.deepcache import DeepCacheUNet

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(tiny_unet_config(family)).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    cond = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
    kw = {}
    if family == "sdxl":
        time_ids = torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)
        kw = {"added_cond_kwargs": {"text_embeds": torch.randn(2, 32, generator=g), "time_ids": time_ids}}
    with torch.inference_mode():
        for shape in ((2, 4, 16, 16), (2, 4, 13, 11)):  # odd sizes forward the upsample size
            x = torch.randn(*shape, generator=g)
            ref = unet(x, 500, encoder_hidden_states=cond, return_dict=False, **kw)[0]
            out = DeepCacheUNet(unet, 1)(x, 500, encoder_hidden_states=cond, **kw)[0]
            assert torch.equal(out, ref)
        cached = DeepCacheUNet(unet, 3)
        outs = [cached(x, 500, encoder_hidden_states=cond, **kw)[0] for _ in range(4)]
    assert cached.full_calls == 2  # calls 0 and 3
    for out in outs:  # same input every call: the reused deep features are exactly the fresh ones
        torch.testing.assert_close(out, ref)
    with pytest.raises(ValueError, match="deepcache_interval must be >= 1"):
        DeepCacheUNet(unet, 0)


def test_deepcache_setting_runs_fewer_deep_blocks_and_is_labelled(tiny_data_dir):
    from bench.app_side import AppBench

    unet_calls: dict[str, int] = {}

    def run(app, **settings):
        unet = app.unet("tiny-sd1")
        deep = unet.down_blocks[1]
        unet_calls["deep"] = 0
        hook = deep.register_forward_pre_hook(lambda m, a, **k: unet_calls.__setitem__("deep", unet_calls["deep"] + 1))
        try:
            return app.run(_params(steps=6, seed=11))
        finally:
            hook.remove()

    app = AppBench(tiny_data_dir)
    try:
        plain = run(app)
        assert unet_calls["deep"] == 6 and "DeepCache" not in plain.infotexts[0]
        app.settings.set("deepcache_enabled", True, save=False)
        app.settings.set("deepcache_interval", 3, save=False)
        fast = run(app)
        assert unet_calls["deep"] == 2  # steps 0 and 3 run the whole UNet
        assert "DeepCache interval: 3" in fast.infotexts[0]
        app.settings.set("deepcache_interval", 1, save=False)
        exact = run(app)
        assert unet_calls["deep"] == 6
    finally:
        app.close()
    import numpy as np

    assert np.array_equal(np.asarray(exact.images[0]), np.asarray(plain.images[0]))
    assert not np.array_equal(np.asarray(fast.images[0]), np.asarray(plain.images[0]))


def test_tune_allocator_is_applied_once_on_linux():
    import sys

    first = optim.tune_allocator()
    assert optim.tune_allocator() is first  # idempotent
    if sys.platform.startswith("linux"):
        assert first is True
    big = torch.empty(64 << 20, dtype=torch.uint8)  # 64 MB: served from the heap now, not mmap
    big.fill_(1)
    assert int(big.sum()) == 64 << 20
