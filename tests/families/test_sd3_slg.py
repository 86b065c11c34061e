"""SD3.5 skip-layer guidance through a whole app job on the tiny SD3.5 files: the image equals diffusers'
``StableDiffusion3Pipeline`` with the same ``skip_guidance_layers`` / ``skip_layer_guidance_*`` settings, the skipped
joint blocks really are left out of the extra forward (forward hooks), the infotext carries the settings and pastes
back to the same image, a block the model does not have is a clear error, and a model without joint blocks ignores the
settings with a warning. The reference comparison is set up as in ``test_sd3_reference`` (Simple sigmas given to the
pipeline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.app_side import AppBench

PROMPT = "a red fox in the snow"
NEGATIVE = "blurry, low quality"
SEED = 1234


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from app.devtools.tiny_sd3 import write_tiny_sd3

    data = Path(tmp_path_factory.mktemp("sd3-slg"))
    write_tiny_sd3(data)
    bench = AppBench(data, {})
    yield bench
    bench.close()


def _ckpt(app) -> str:
    return next(t for t in app.catalog.checkpoint_titles() if t.split(" [")[0].rsplit("/", 1)[-1].startswith("sd3.5_medium."))


def _params(app, steps: int, cfg: float = 4.5, **slg):
    params = app.params(_ckpt(app), PROMPT, NEGATIVE, steps, 64, 64, cfg, "Euler", SEED, 1)
    params.scheduler = "Simple"
    for key, value in slg.items():
        setattr(params, key, value)
    return params


def _run(app, params):
    return app.run(params)


def _pipe_image(app, steps: int, cfg: float = 4.5, **slg):
    pipe = app.manager.get(_ckpt(app)).loaded.pipe
    simple = list(np.linspace(1.0, 1.0 / steps, steps))
    return pipe(prompt=PROMPT, negative_prompt=NEGATIVE, height=64, width=64, num_inference_steps=steps, sigmas=simple,
                guidance_scale=cfg, generator=torch.Generator("cpu").manual_seed(SEED), max_sequence_length=256,
                **slg).images[0]


def _diff(a, b) -> int:
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


SLG = {"skip_guidance_layers": [1], "skip_layer_guidance_scale": 2.8, "skip_layer_guidance_start": 0.01,
       "skip_layer_guidance_stop": 0.6}


@pytest.mark.parametrize("layers", [[1], [0, 2]])
def test_slg_matches_sd3_pipeline(app, layers):
    slg = {**SLG, "skip_guidance_layers": layers}
    ours = _run(app, _params(app, 6, **slg))
    theirs = _pipe_image(app, 6, **slg)
    plain = _run(app, _params(app, 6)).images[0]
    assert _diff(ours.images[0], theirs) <= 2
    assert _diff(ours.images[0], plain) > 4  # SLG changed the image (steps 1, 2, 3 of 6)
    info = ours.infotexts[0]
    layers_text = {1: "1", 2: '"0, 2"'}[len(layers)]  # quoted when it holds a comma (A1111's infotext quoting)
    assert f"SLG scale: 2.8, SLG layers: {layers_text}, SLG start: 0.01, SLG stop: 0.6" in info


def test_slg_default_window_matches_the_pipeline_defaults(app):
    """12 steps with diffusers' default fraction 0.01..0.2: steps 1 and 2 get the extra forward."""
    ours = _run(app, _params(app, 12, skip_guidance_layers=[2], skip_layer_guidance_scale=2.8))
    assert _diff(ours.images[0], _pipe_image(app, 12, skip_guidance_layers=[2])) <= 2


def test_skipped_blocks_are_not_run(app):
    """6 steps, window 0.01..0.6 -> steps 1, 2, 3 run one more forward without block 1: block 0 and 2 run 6 + 3
    times (the CFG forward is one batched call), block 1 only 6 times."""
    blocks = app.manager.get(_ckpt(app)).loaded.pipe.transformer.transformer_blocks
    calls = [0] * len(blocks)
    handles = [block.register_forward_hook(lambda *_a, i=i: calls.__setitem__(i, calls[i] + 1))
               for i, block in enumerate(blocks)]
    try:
        _run(app, _params(app, 6, **SLG))
        assert calls == [9, 6, 9]
        calls[:] = [0] * len(blocks)
        _run(app, _params(app, 6))  # off by default: no extra forward
        assert calls == [6, 6, 6]
        calls[:] = [0] * len(blocks)
        _run(app, _params(app, 6, **{**SLG, "skip_layer_guidance_scale": 0.0}))  # scale 0 = off
        assert calls == [6, 6, 6]
    finally:
        for handle in handles:
            handle.remove()


def test_slg_at_cfg_1_still_guides(app):
    """At CFG 1 (one forward per step) the SLG term is still added, as ComfyUI's post-CFG node does."""
    plain = _run(app, _params(app, 6, cfg=1.0)).images[0]
    guided = _run(app, _params(app, 6, cfg=1.0, **SLG))
    assert _diff(guided.images[0], plain) > 4 and "SLG scale: 2.8" in guided.infotexts[0]


def test_infotext_pastes_back_to_the_same_image(app):
    from app.infotext.parse import parse_generation_parameters
    from app.infotext.paste import infotext_to_params

    first = _run(app, _params(app, 6, **{**SLG, "skip_layer_guidance_scale": 3.0}))
    pasted, _ = infotext_to_params(parse_generation_parameters(first.infotexts[0]), base=_params(app, 6), kind="txt2img")
    assert (pasted.skip_layer_guidance_scale, pasted.skip_guidance_layers) == (3.0, [1])
    assert (pasted.skip_layer_guidance_start, pasted.skip_layer_guidance_stop) == (0.01, 0.6)
    pasted.save_images = pasted.save_grid = False
    assert _run(app, pasted).images[0].tobytes() == first.images[0].tobytes()


def test_a_block_the_model_lacks_is_a_clear_error(app):
    from app.jobs.job import JobFailed

    with pytest.raises(JobFailed, match=r"7, 8, 9 not in this model's joint blocks 0\.\.2"):
        app.run(_params(app, 4, **{**SLG, "skip_guidance_layers": [7, 8, 9]}))  # SD3.5 medium's; the tiny one has 3
    assert _run(app, _params(app, 4)).images  # the service keeps serving


def test_other_families_ignore_it_with_a_warning(tiny_data_dir):
    bench = AppBench(tiny_data_dir, {})
    try:
        title = bench.catalog.checkpoint_titles()[0]
        base = bench.params(title, "a cat", "", 3, 64, 64, 7.0, "Euler", 1, 1)
        plain = _run(bench, base)
        asked = base.copy()
        asked.skip_layer_guidance_scale = 3.0
        result = _run(bench, asked)
        assert result.images[0].tobytes() == plain.images[0].tobytes()
        assert any("skip-layer guidance is for SD3.5" in w for w in result.warnings)
        assert "SLG" not in result.infotexts[0]
    finally:
        bench.close()


def test_hires_pass_gets_it_too(app):
    """Both passes run through the same sampler set-up: the hires pass's extra forwards fire in its own window."""
    blocks = app.manager.get(_ckpt(app)).loaded.pipe.transformer.transformer_blocks
    calls = [0, 0]
    handles = [blocks[i].register_forward_hook(lambda *_a, i=i: calls.__setitem__(i, calls[i] + 1)) for i in (0, 1)]
    params = _params(app, 6, **SLG)
    params.hires.enabled, params.hires.scale, params.hires.steps = True, 2.0, 6
    params.hires.denoising_strength = 1.0  # all 6 hires steps run: steps 1, 2, 3 get the extra forward
    params.hires.upscaler = "Latent"
    try:
        result = _run(app, params)
    finally:
        for handle in handles:
            handle.remove()
    assert result.images[0].size == (128, 128) and "SLG scale: 2.8" in result.infotexts[0]
    assert calls[0] - calls[1] == 6  # 3 extra forwards in each pass, none of them through block 1
