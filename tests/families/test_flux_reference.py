"""The sampling core reproduces diffusers' own ``FluxPipeline`` on the same tiny FLUX.1 files: a whole app job
(catalog, split-file loader, family adapter with 2x2 packing, CLIP-L pooled + T5 conditioning, distilled guidance,
dynamic shift, flow model sampling, Euler + Simple, CPU noise) against ``FluxPipeline.__call__`` on the very modules
the app loaded, same seed. Why not bit-identical: the app starts at s = 4096/4097, not 1 (see
``test_zimage_reference``); everything else is the same arithmetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.app_side import AppBench

PROMPT = "a red fox in the snow"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from app.devtools.tiny_flux import write_tiny_flux

    data = Path(tmp_path_factory.mktemp("flux-ref"))
    write_tiny_flux(data, "dev")
    write_tiny_flux(data, "schnell")
    bench = AppBench(data, {})
    yield bench
    bench.close()


def _ckpt(app, name: str) -> str:
    return next(t for t in app.catalog.checkpoint_titles() if name in t and (("aio" in t) == ("aio" in name)))


def _app_image(app, name: str, steps: int, cfg: float = 1.0, negative: str = "", size: int = 64, **extra):
    params = app.params(_ckpt(app, name), PROMPT, negative, steps, size, size, cfg, "Euler", 1234, 1)
    params.scheduler = "Simple"
    for key, value in extra.items():
        setattr(params, key, value)
    return app.run(params)


def _pipe_image(app, name: str, steps: int, guidance: float, size: int = 64, true_cfg: float = 1.0,
                negative: str | None = None):
    pipe = app.manager.get(_ckpt(app, name)).loaded.pipe
    generator = torch.Generator("cpu").manual_seed(1234)
    return pipe(prompt=PROMPT, negative_prompt=negative, true_cfg_scale=true_cfg, height=size, width=size,
                num_inference_steps=steps, guidance_scale=guidance, generator=generator,
                max_sequence_length=256).images[0]


def _diff(a, b) -> int:
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


@pytest.mark.parametrize("steps", [4, 8, 20])
def test_dev_euler_simple_matches_flux_pipeline(app, steps):
    result = _app_image(app, "flux1-dev", steps)
    theirs = _pipe_image(app, "flux1-dev", steps, 3.5)
    ours = result.images[0]
    assert ours.size == theirs.size == (64, 64)
    assert np.asarray(ours).std() > 1  # a real image, not a constant
    assert _diff(ours, theirs) <= 2
    info = result.infotexts[0]
    assert "Distilled CFG Scale: 3.5" in info and "Schedule type: Simple" in info
    assert "Shift: 1.58" in info  # exp(mu) of 16 image tokens: the resolution-dependent shift
    written = info.split("Shift: ", 1)[1].split(",", 1)[0]
    assert len(written.split(".", 1)[1]) <= 4  # rounded before use: pasting it back runs the same sigmas


def test_pasting_the_dynamic_shift_back_gives_the_same_image(app):
    first = _app_image(app, "flux1-dev", 4)
    written = float(first.infotexts[0].split("Shift: ", 1)[1].split(",", 1)[0])
    again = _app_image(app, "flux1-dev", 4, shift=written)
    assert _diff(first.images[0], again.images[0]) == 0


def test_distilled_cfg_scale_and_shift_reach_the_network(app):
    ours = _app_image(app, "flux1-dev", 6, distilled_cfg_scale=7.0)
    assert _diff(ours.images[0], _pipe_image(app, "flux1-dev", 6, 7.0)) <= 2
    assert "Distilled CFG Scale: 7.0" in ours.infotexts[0]
    assert _diff(ours.images[0], _app_image(app, "flux1-dev", 6).images[0]) > 2
    shifted = _app_image(app, "flux1-dev", 6, shift=3.0)
    assert "Shift: 3.0" in shifted.infotexts[0]
    assert _diff(shifted.images[0], _app_image(app, "flux1-dev", 6).images[0]) > 2


def test_real_cfg_runs_the_negative_prompt(app):
    # FluxPipeline's true_cfg_scale is the A1111 CFG scale (neg + c·(pos − neg))
    ours = _app_image(app, "flux1-dev", 6, cfg=2.5, negative="blurry").images[0]
    theirs = _pipe_image(app, "flux1-dev", 6, 3.5, true_cfg=2.5, negative="blurry")
    assert _diff(ours, theirs) <= 2


def test_schnell_matches_flux_pipeline(app):
    result = _app_image(app, "flux1-schnell", 4)
    theirs = _pipe_image(app, "flux1-schnell", 4, 0.0)
    assert _diff(result.images[0], theirs) <= 2
    assert "Distilled CFG Scale" not in result.infotexts[0] and "Shift: 1.0" in result.infotexts[0]


def test_all_in_one_file_equals_split_files(app):
    split = _app_image(app, "flux1-dev", 4).images[0]
    whole = _app_image(app, "flux1-dev-aio", 4)
    assert whole.images[0].tobytes() == split.tobytes()
    loaded = app.manager.get(_ckpt(app, "flux1-dev-aio")).loaded
    assert loaded.family == "flux" and loaded.extra["all_in_one"]


def test_prompt_weights_change_the_t5_conditioning(app):
    plain = _app_image(app, "flux1-dev", 4).images[0]
    params = app.params(_ckpt(app, "flux1-dev"), "a red (fox:1.6) in the snow", "", 4, 64, 64, 1.0, "Euler", 1234, 1)
    params.scheduler = "Simple"
    weighted = app.run(params)
    assert _diff(weighted.images[0], plain) > 0
    assert "Prompt weights" not in weighted.infotexts[0]  # the weights were used, not ignored
