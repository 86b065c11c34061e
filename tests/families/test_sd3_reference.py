"""The sampling core reproduces diffusers' own ``StableDiffusion3Pipeline`` on the same tiny SD3.5 files: a whole app
job (catalog, loader, family adapter, CLIP-L/CLIP-G/T5 conditioning, real CFG with a negative prompt, constant shift
3.0, flow model sampling, Euler + Simple, CPU noise) against ``StableDiffusion3Pipeline.__call__`` on the very modules
the app loaded, same seed.

The schedule: A1111's / ComfyUI's "Simple" on a flow model is the shifted ``linspace(1, 1/n, n)`` (what
``FluxPipeline`` uses by default); ``StableDiffusion3Pipeline`` left alone spaces its timesteps between 1000 and the
table's smallest (shifted) timestep and shifts again, so its last step lands at s = 0.009 instead of s = shift(1/n).
The pipeline is therefore given the Simple sigmas (``sigmas=``), which it then shifts like the app. Why not
bit-identical: the app starts at s = 4096/4097, not 1 (see ``test_zimage_reference``); everything else is the same
arithmetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.app_side import AppBench

PROMPT = "a red fox in the snow"
NEGATIVE = "blurry, low quality"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from app.devtools.tiny_sd3 import write_tiny_sd3

    data = Path(tmp_path_factory.mktemp("sd3-ref"))
    write_tiny_sd3(data)
    bench = AppBench(data, {})
    yield bench
    bench.close()


def _ckpt(app, name: str) -> str:
    return next(t for t in app.catalog.checkpoint_titles() if t.split(" [")[0].rsplit("/", 1)[-1].startswith(name + ".")
                or t.split(" [")[0] == name)


def _app_image(app, name: str, steps: int, cfg: float = 4.5, negative: str = NEGATIVE, size: int = 64,
               prompt: str = PROMPT, **extra):
    params = app.params(_ckpt(app, name), prompt, negative, steps, size, size, cfg, "Euler", 1234, 1)
    params.scheduler = "Simple"
    for key, value in extra.items():
        setattr(params, key, value)
    return app.run(params)


def _pipe_image(app, name: str, steps: int, cfg: float = 4.5, negative: str = NEGATIVE, size: int = 64):
    pipe = app.manager.get(_ckpt(app, name)).loaded.pipe
    generator = torch.Generator("cpu").manual_seed(1234)
    simple = list(np.linspace(1.0, 1.0 / steps, steps))
    return pipe(prompt=PROMPT, negative_prompt=negative, height=size, width=size, num_inference_steps=steps,
                sigmas=simple, guidance_scale=cfg, generator=generator, max_sequence_length=256).images[0]


def _diff(a, b) -> int:
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


@pytest.mark.parametrize("steps", [4, 12])
def test_medium_euler_simple_matches_sd3_pipeline(app, steps):
    result = _app_image(app, "sd3.5_medium", steps)
    theirs = _pipe_image(app, "sd3.5_medium", steps)
    ours = result.images[0]
    assert ours.size == theirs.size == (64, 64)
    assert np.asarray(ours).std() > 1  # a real image, not a constant
    assert _diff(ours, theirs) <= 2
    info = result.infotexts[0]
    assert "CFG scale: 4.5" in info and "Schedule type: Simple" in info and "Shift: 3.0" in info
    assert "Negative prompt: " + NEGATIVE in info


def test_large_checkpoint_with_folder_text_encoders_matches(app):
    result = _app_image(app, "sd3.5_large", 6, cfg=3.0)
    assert _diff(result.images[0], _pipe_image(app, "sd3.5_large", 6, cfg=3.0)) <= 2
    loaded = app.manager.get(_ckpt(app, "sd3.5_large")).loaded
    assert loaded.family == "sd3" and loaded.extra["variant"] == "sd3.5-large"
    assert loaded.extra["parts"]["vae"].endswith("sd3.5_large.safetensors")  # its own VAE
    assert loaded.extra["parts"]["text_encoder_2"].endswith("clip_g.safetensors")


def test_negative_prompt_and_cfg_matter(app):
    base = _app_image(app, "sd3.5_medium", 4).images[0]
    assert _diff(base, _app_image(app, "sd3.5_medium", 4, negative="").images[0]) > 2
    assert _diff(base, _app_image(app, "sd3.5_medium", 4, cfg=1.5).images[0]) > 2
    assert _diff(_app_image(app, "sd3.5_medium", 4, negative="").images[0],
                 _pipe_image(app, "sd3.5_medium", 4, negative="")) <= 2


def test_shift_reaches_the_sampler(app):
    shifted = _app_image(app, "sd3.5_medium", 4, shift=1.5)
    assert "Shift: 1.5" in shifted.infotexts[0]
    assert _diff(shifted.images[0], _app_image(app, "sd3.5_medium", 4).images[0]) > 2


def test_all_in_one_file_equals_split_files(app):
    split = _app_image(app, "sd3.5_medium", 4).images[0]
    whole = _app_image(app, "sd3.5_medium-aio", 4)
    assert whole.images[0].tobytes() == split.tobytes()
    loaded = app.manager.get(_ckpt(app, "sd3.5_medium-aio")).loaded
    assert loaded.family == "sd3" and loaded.extra["all_in_one"]


def test_prompt_weights_change_the_conditioning(app):
    plain = _app_image(app, "sd3.5_medium", 4).images[0]
    weighted = _app_image(app, "sd3.5_medium", 4, prompt="a red (fox:1.6) in the snow")
    assert _diff(weighted.images[0], plain) > 0
    assert "Prompt weights" not in weighted.infotexts[0]  # used on CLIP and T5, not ignored


@pytest.fixture(scope="module")
def app_without_t5(tmp_path_factory):
    from app.devtools.tiny_sd3 import write_tiny_sd3

    data = Path(tmp_path_factory.mktemp("sd3-no-t5"))
    paths = write_tiny_sd3(data)
    for label in ("sd3:t5xxl", "sd3:all_in_one"):
        paths[label].unlink()
    bench = AppBench(data, {})
    yield bench
    bench.close()


def test_without_t5_runs_on_the_clips_like_the_pipeline(app_without_t5):
    """No T5 file: the job runs (T5's tokens are zeros, as StableDiffusion3Pipeline without text_encoder_3), equals the
    pipeline, and warns."""
    app = app_without_t5
    result = _app_image(app, "sd3.5_medium", 4)
    loaded = app.manager.get(_ckpt(app, "sd3.5_medium")).loaded
    assert loaded.pipe.text_encoder_3 is None and "text_encoder_3" not in loaded.extra["parts"]
    assert _diff(result.images[0], _pipe_image(app, "sd3.5_medium", 4)) <= 2
    assert any("without a T5 text encoder" in w for w in result.warnings)


def test_larger_than_the_position_grid_is_a_clear_error(app):
    # the tiny model's grid is 32 patches a side: 512 px; a 576 px job fails with a message in pixels
    from app.families.sd3_nets import SD3Denoiser

    denoiser = SD3Denoiser(app.manager.get(_ckpt(app, "sd3.5_medium")).loaded.pipe.transformer)
    denoiser.check_size(64, 64)
    with pytest.raises(ValueError, match="at most 512x512 pixels"):
        denoiser.check_size(72, 64)
