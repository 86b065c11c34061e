"""Built-in scripts on the tiny SD1 model through the job service: Prompt matrix (images, prompts, seeds, grid),
Prompts from file (line options, seeds, warnings), Loopback (denoising per pass), Poor man's outpainting and
Outpainting mk2 (output sizes, masks keep the original), plus the pure parts (curves, parsing, geometry, noise)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from app.engine.modes.runners import register_runners
from app.engine.scripts import common
from app.engine.scripts.loopback import strength_at
from app.engine.scripts.outpaint_noise import match_histogram, matched_noise
from app.engine.scripts.prompt_matrix import combinations
from app.engine.scripts.prompts_from_file import parse_line, parse_lines
from app.params import GenerationParams, Img2ImgParams, ScriptParams, SeedParams
from app.paths import Paths


@pytest.fixture(scope="module")
def service(tiny_data_dir, tmp_path_factory):
    from app.jobs.service import JobService
    from app.models.catalog.index import Catalog
    from app.models.manager import ModelManager
    from app.settings import Settings

    out = tmp_path_factory.mktemp("scripts-out")
    paths = Paths.from_data_dir(tiny_data_dir)
    settings = Settings(None)
    for key in ("outdir_txt2img_samples", "outdir_img2img_samples", "outdir_txt2img_grids", "outdir_img2img_grids"):
        settings.set(key, str(out / key), save=False)
    svc = JobService(ModelManager(Catalog(paths), settings, None, paths=paths), settings)
    register_runners(svc)
    yield svc
    svc.shutdown()


def _init(size: int = 64) -> Image.Image:
    rs = np.random.RandomState(5)
    return Image.fromarray((rs.rand(size, size, 3) * 255).astype(np.uint8))


def _params(script: str, args: list, img2img: bool = False, **kw) -> GenerationParams:
    base = dict(prompt="a castle", steps=2, width=64, height=64, sampler_name="Euler", checkpoint="tiny-sd1",
                cfg_scale=1.0, save_images=False, seed=SeedParams(seed=kw.pop("seed", 100)))
    base.update(kw)
    i2i = Img2ImgParams(init_images=[_init()], denoising_strength=0.5) if img2img else None
    return GenerationParams(img2img=i2i, script=ScriptParams(script, list(args)), **base)


def _run(service, params: GenerationParams):
    job = service.submit(params, kind="img2img" if params.img2img is not None else "txt2img")
    result = job.wait(600)
    assert job.error is None, job.error
    return job, result


# ---------------------------------------------------------------------------------------------- pure parts
def test_matrix_combinations_in_a1111_order():
    parts, prompts = combinations("base|a|b")
    assert parts == ["base", "a", "b"]
    assert prompts == ["base", "base, a", "base, b", "base, a, b"]
    assert combinations("base| a,|b", " ", put_at_start=True)[1] == ["base", "a base", "b base", "a b base"]


def test_prompt_line_options():
    opts = parse_line('--prompt "a red fox" in snow --steps 20 --negative_prompt blurry --cfg_scale 5.5 '
                      '--tiling true --sampler_name euler')
    assert opts == {"prompt": "a red fox in snow", "steps": 20, "negative_prompt": "blurry", "cfg_scale": 5.5,
                    "tiling": True, "sampler_name": "euler"}
    with pytest.raises(ValueError, match="unknown commandline option: --bogus"):
        parse_line("--bogus 1")
    with pytest.raises(ValueError, match="missing argument"):
        parse_line("--steps")
    warnings: list[str] = []
    jobs = parse_lines("plain prompt\n\n--steps x\n--prompt ok --seed 5", warnings.append)
    assert jobs == [{"prompt": "plain prompt"}, {"prompt": "--steps x"}, {"prompt": "ok", "seed": 5}]
    assert len(warnings) == 1 and "line 2" in warnings[0] and "--steps" in warnings[0]


def test_loopback_curves():
    assert strength_at(0, 4, 0.2, 0.8, "Linear") == 0.2
    assert strength_at(3, 4, 0.2, 0.8, "Linear") == pytest.approx(0.8)
    assert strength_at(1, 4, 0.2, 0.8, "Linear") == pytest.approx(0.4)
    assert strength_at(1, 4, 0.2, 0.8, "Aggressive") == pytest.approx(0.2 + 0.6 * math.sin(math.pi / 6))
    assert strength_at(1, 4, 0.2, 0.8, "Lazy") == pytest.approx(0.2 + 0.6 * (1 - math.cos(math.pi / 6)))
    assert strength_at(0, 1, 0.3, 0.9, "Lazy") == 0.3


def test_expand_geometry_rounds_to_64():
    assert common.expand_geometry(64, 64, 32, ["left", "right", "up", "down"]) == (128, 128, 32, 32, 32, 32)
    assert common.expand_geometry(64, 64, 8, ["left"]) == (128, 64, 64, 0, 0, 0)
    assert common.expand_geometry(100, 64, 8, ["right", "down"]) == (128, 128, 0, 28, 0, 64)


def test_matched_noise_keeps_known_pixels_and_matches_colours():
    image = np.zeros((32, 32, 3))
    image[:, :16] = [0.8, 0.2, 0.1]
    mask = np.zeros((32, 32))
    mask[:, 16:] = 1.0
    out = matched_noise(image, mask, 1.0, 0.05)
    assert np.allclose(out[:, :16], image[:, :16])
    assert np.allclose(out[:, 16:].mean(axis=(0, 1)), [0.8, 0.2, 0.1], atol=1e-6)  # one colour to match
    values = np.array([3.0, 1.0, 2.0])
    assert np.allclose(match_histogram(values, np.array([10.0, 20.0, 30.0])), [30.0, 10.0, 20.0])


# ---------------------------------------------------------------------------------------------- on the model
@pytest.mark.slow
def test_prompt_matrix_txt2img(service):
    job, res = _run(service, _params("Prompt matrix", [False, True, "positive", "comma", 4],
                                     prompt="cat|red|hat", seed=7))
    assert len(res.images) == 5  # grid + 4
    assert res.all_prompts == ["cat", "cat, red", "cat, hat", "cat, red, hat"]
    assert res.seeds == [7, 8, 9, 10]
    assert res.info["index_of_first_image"] == 1
    grid = res.images[0]
    assert grid.width > 2 * 64 + 4 and grid.height > 2 * 64 + 4  # 2x2 cells, margin, labels
    assert "Seed: 8" in res.infotexts[2] and res.infotexts[2].startswith("cat, red\n")
    assert job.progress.job_count == 4


@pytest.mark.slow
def test_prompt_matrix_negative_same_seed_img2img(service):
    _, res = _run(service, _params("Prompt matrix", [True, False, "negative", "space", 0], img2img=True,
                                   negative_prompt="ugly|blur", seed=3))
    assert res.all_negative_prompts == ["ugly", "blur ugly"]
    assert res.seeds == [3, 3]
    assert len(res.images) == 3 and res.images[0].size == (128, 64 + res.images[0].height - 64)


@pytest.mark.slow
def test_prompts_from_file(service):
    text = 'first line\n--prompt "second" --steps 3 --seed 42 --negative_prompt bad\n--prompt third --n_iter 2'
    _, res = _run(service, _params("Prompts from file or textbox", [True, False, "end", text], seed=10,
                                   negative_prompt="neg"))
    assert res.all_prompts == ["a castle first line", "a castle second", "a castle third", "a castle third"]
    assert res.all_negative_prompts[1] == "neg bad"
    assert res.seeds == [10, 42, 12, 13]  # iterate: +1 (batch 1 x count 1) per line; line 2 sets its own
    assert "Steps: 3" in res.infotexts[1] and "Steps: 2" in res.infotexts[0]
    assert len(res.images) == 4 and res.info["index_of_first_image"] == 0


@pytest.mark.slow
def test_loopback_denoising_per_loop(service):
    job, res = _run(service, _params("Loopback", [3, 0.9, "Linear", "None"], img2img=True, seed=5))
    assert len(res.images) == 4  # one-row grid + 3 passes
    assert res.images[0].size == (3 * 64, 64)
    texts = res.infotexts[1:]
    for text, strength in zip(texts, ("0.5", "0.7", "0.9"), strict=True):
        assert f"Denoising strength: {strength}" in text
        assert "Final denoising strength: 0.9" in text and "Denoising curve: Linear" in text
    assert res.seeds == [5, 6, 7]
    assert job.progress.job_count == 3


def test_loopback_refuses_interrogator(service):
    from app.jobs.job import JobFailed

    job = service.submit(_params("Loopback", [2, 0.5, "Linear", "CLIP"], img2img=True), kind="img2img")
    with pytest.raises(JobFailed, match="no interrogator"):
        job.wait(60)


@pytest.mark.slow
def test_poor_mans_outpainting_size(service):
    init = _init()
    _, res = _run(service, _params("Poor man's outpainting", [32, 4, "original", ["left", "right"]], img2img=True))
    assert len(res.images) == 1
    out = res.images[0]
    assert out.size == (128, 64)
    assert "Size: 128x64" in res.infotexts[0]
    assert res.info["width"] == 128
    assert init.size == (64, 64)


@pytest.mark.slow
def test_outpainting_mk2_size_and_batch(service):
    _, res = _run(service, _params("Outpainting mk2", ["", 32, 8, ["left", "down"], 1.0, 0.05], img2img=True,
                                   batch_size=2, seed=11))
    assert len(res.images) == 3  # grid + 2
    assert all(im.size == (128, 128) for im in res.images[1:])  # 64+32 rounds up to 128 on each axis
    assert res.seeds == [11, 12]
    assert "Size: 128x128" in res.infotexts[1]
