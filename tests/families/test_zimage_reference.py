"""The sampling core reproduces diffusers' own ``ZImagePipeline`` on the same tiny Z-Image files: a whole app job
(catalog, loader, family adapter, flow model sampling, Euler + Simple + shift 3, CPU noise) against
``ZImagePipeline.__call__`` on the very modules the app loaded, same seed, CFG 1 and CFG > 1.

Why not bit-identical: the app runs the samplers in VE sigma space, where pure noise (s = 1) is sigma ≈ 4096 (the
zero-terminal-SNR convention, see ``app.engine.sampling.model_sampling``), so its first step starts at
s = 4096/4097 instead of 1; the pipeline steps in flow space directly. Everything else is the same arithmetic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.app_side import AppBench

PROMPT = "a red fox in the snow"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from app.devtools.tiny_zimage import write_tiny_zimage

    data = Path(tmp_path_factory.mktemp("zimage-ref"))
    write_tiny_zimage(data)
    bench = AppBench(data, {})
    yield bench
    bench.close()


def _ckpt(app) -> str:
    return next(t for t in app.catalog.checkpoint_titles() if "z_image" in t)


def _app_image(app, steps: int, cfg: float, negative: str = "", size: int = 64):
    params = app.params(_ckpt(app), PROMPT, negative, steps, size, size, cfg, "Euler", 1234, 1)
    params.scheduler = "Simple"
    return app.run(params).images[0]


def _pipe_image(app, steps: int, guidance: float, negative: str = "", size: int = 64):
    pipe = app.manager.get(_ckpt(app)).loaded.pipe
    generator = torch.Generator("cpu").manual_seed(1234)
    return pipe(prompt=PROMPT, negative_prompt=negative or None, height=size, width=size, num_inference_steps=steps,
                guidance_scale=guidance, generator=generator).images[0]


def _diff(a, b) -> int:
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


@pytest.mark.parametrize("steps", [4, 6, 8, 9])
def test_euler_simple_cfg1_matches_zimage_pipeline(app, steps):
    ours, theirs = _app_image(app, steps, 1.0), _pipe_image(app, steps, 0.0)
    assert ours.size == theirs.size == (64, 64)
    assert np.asarray(ours).std() > 1  # a real image, not a constant
    assert _diff(ours, theirs) <= 2


def test_cfg_matches_zimage_pipeline(app):
    # ZImagePipeline's guidance g gives pos + g·(pos − neg); the A1111 CFG scale c gives neg + c·(pos − neg): c = 1 + g
    ours, theirs = _app_image(app, 6, 3.0, "blurry"), _pipe_image(app, 6, 2.0, "blurry")
    assert _diff(ours, theirs) <= 2
    assert _diff(ours, _app_image(app, 6, 1.0)) > 2  # CFG changed the image


@pytest.mark.parametrize("sampler", ["Heun", "DPM2 a", "DPM++ 2M", "Euler a", "res_multistep", "UniPC"])
def test_automatic_schedule_is_simple_on_zimage(app, sampler):
    """"Automatic" on a flow family is Simple (Karras, the SD default of Heun/DPM2, starts far out on the flow
    noise scale); the image is finite and the infotext names the schedule."""
    params = app.params(_ckpt(app), PROMPT, "", 4, 64, 64, 1.0, sampler, 7, 1)
    result = app.run(params)
    image = np.asarray(result.images[0], dtype=np.float32)
    assert np.isfinite(image).all() and image.std() > 1
    assert "Schedule type: Simple" in result.infotexts[0]


def test_sizes_floor_to_the_family_grid(app):
    """A1111 floors sizes to the latent grid; Z-Image's grid is 16 (whole 2x2 patches): 100x72 → 96x64."""
    params = app.params(_ckpt(app), PROMPT, "", 2, 100, 72, 1.0, "Euler", 3, 1)
    result = app.run(params)
    assert result.images[0].size == (96, 64)
    assert app.manager.current.size_multiple == 16


def test_sd_upscale_variation_seeds_and_forever(app):
    """The rest of what a Z-Image user reaches for: the SD upscale script, variation seeds, generate forever."""
    from PIL import Image

    from app.params import Img2ImgParams, ScriptParams, replace_nested
    from app.ui.forever import ForeverLoop

    base = app.params(_ckpt(app), PROMPT, "", 3, 64, 64, 1.0, "Euler", 11, 1)
    init = Image.new("RGB", (64, 64), (120, 80, 40))
    up = replace_nested(base, img2img=Img2ImgParams(init_images=[init], denoising_strength=0.4),
                        script=ScriptParams("SD upscale", [32, "Lanczos", 2.0]))
    result = app.service.submit(up, kind="img2img").wait(300)
    assert result.images[0].size == (128, 128)
    plain = app.run(base).images[0]
    varied = app.run(replace_nested(base, seed__subseed=99, seed__subseed_strength=0.5))
    assert varied.images[0].tobytes() != plain.tobytes() and "Variation seed: 99" in varied.infotexts[0]
    loop = ForeverLoop(lambda: app.service, "txt2img", max_jobs=3)
    loop.start(replace_nested(base, seed__seed=-1))
    loop.wait()
    state = loop.snapshot()
    assert state.generation == 3 and not state.error
