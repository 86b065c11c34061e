"""The X/Y/Z plot on the tiny SD1 model through the job service: a 2×2×2 plot (Seed × Checkpoint name × Steps)
loads each checkpoint once (the checkpoint axis is the outer loop) and puts the job's checkpoint back; grid size
with the label bands, grid and cell infotexts, per-cell seeds; sub images and sub grids; "Keep -1 for seeds";
img2img's Denoising axis; bad axes and values are clear errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from app.engine.modes.runners import register_runners
from app.params import GenerationParams, Img2ImgParams, ScriptParams, SeedParams
from app.paths import Paths

SEED, STEPS, CHECKPOINT, PROMPT_SR, NOTHING = 1, 4, 11, 7, 0
XYZ = "X/Y/Z plot"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from app.devtools.tiny_models import write_tiny_models
    from app.jobs.service import JobService
    from app.models.catalog.index import Catalog
    from app.models.manager import ModelManager
    from app.settings import Settings

    data = tmp_path_factory.mktemp("xyz-data")
    written = write_tiny_models(data, families=("sd1",))
    shutil.copy(written["ckpt:sd1"], written["ckpt:sd1"].with_name("other-sd1.safetensors"))
    out = tmp_path_factory.mktemp("xyz-out")
    paths = Paths.from_data_dir(data)
    settings = Settings(None)
    for key in ("outdir_txt2img_samples", "outdir_img2img_samples", "outdir_txt2img_grids", "outdir_img2img_grids"):
        settings.set(key, str(out / key), save=False)
    settings.set("sd_checkpoint_cache", 0, save=False)  # one model in RAM: every switch is a load
    svc = JobService(ModelManager(Catalog(paths), settings, None, paths=paths), settings)
    register_runners(svc)
    yield svc
    svc.shutdown()


def _args(x=(SEED, "", []), y=(NOTHING, "", []), z=(NOTHING, "", []), legend=True, lone=False, subgrids=False,
          keep_seeds=False, margin=0) -> list:
    return [*x, *y, *z, legend, lone, subgrids, keep_seeds, False, False, False, margin, False]


def _params(args: list, img2img: bool = False, **kw) -> GenerationParams:
    base = dict(prompt="a cat", steps=1, width=64, height=64, sampler_name="Euler", checkpoint="tiny-sd1",
                cfg_scale=1.0, save_images=False, seed=SeedParams(seed=kw.pop("seed", 100)))
    base.update(kw)
    rs = np.random.RandomState(5)
    i2i = Img2ImgParams(init_images=[Image.fromarray((rs.rand(64, 64, 3) * 255).astype(np.uint8))],
                        denoising_strength=0.5) if img2img else None
    return GenerationParams(img2img=i2i, script=ScriptParams(XYZ, args), **base)


def _run(service, params: GenerationParams):
    job = service.submit(params, kind="img2img" if params.img2img is not None else "txt2img")
    try:
        result = job.wait(600)
    except Exception:  # noqa: BLE001 - the job's error is what the test checks
        return job, None
    return job, result


def test_2x2x2_loads_each_checkpoint_once(service):
    manager = service.manager
    manager.get("tiny-sd1")
    loads = manager.load_count
    args = _args(x=(SEED, "1, 2", []), y=(CHECKPOINT, "", ["other-sd1", "tiny-sd1"]), z=(STEPS, "1-2", []))
    job, result = _run(service, _params(args))
    assert job.error is None, job.error
    assert manager.load_count - loads == 2  # other-sd1 once, tiny-sd1 once (not once per cell)
    assert manager.current.info.name == "tiny-sd1.safetensors"  # the job's own checkpoint is back
    assert len(result.images) == 1  # the grid only (no sub images)
    grid = result.images[0]
    sub_w = 64 * 2 + 48  # two cells and the row-label band (3/4 of a cell)
    assert grid.width == 2 * sub_w and grid.height > 2 * 64 + 20  # plus the X and the Z label bands
    band = np.asarray(grid.convert("L"))[: grid.height - 128, :]
    assert band.min() < 128 and band.max() == 255  # text drawn on the white label area
    info = result.info
    assert info["index_of_first_image"] == 1 and len(info["infotexts"]) == 9
    assert info["all_seeds"] == [1, 2, 1, 2, 1, 2, 1, 2]
    head = info["infotexts"][0]
    for part in ("Script: X/Y/Z plot", "X Type: Seed", 'X Values: "1, 2"', 'Fixed X Values: "1, 2"',
                 "Y Type: Checkpoint name", 'Y Values: "other-sd1,tiny-sd1"', "Z Type: Steps", "Z Values: 1-2"):
        assert part in head, (part, head)
    cell5 = info["infotexts"][1 + 5]  # ix=1, iy=0, iz=1: seed 2, other-sd1, 2 steps
    assert "Seed: 2" in cell5 and "Steps: 2" in cell5 and "Model: other-sd1" in cell5 and "Script" not in cell5
    assert "Seed: 1" in info["infotexts"][1 + 2] and "Model: tiny-sd1" in info["infotexts"][1 + 2]


def test_refiner_checkpoint_axis(service):
    """A1111's "Refiner checkpoint" axis: "None" runs without a refiner, a checkpoint hands over to it."""
    args = _args(x=("Refiner checkpoint", "", ["None", "other-sd1"]))
    job, result = _run(service, _params(args, steps=4, refiner_switch_at=0.5))
    assert job.error is None, job.error
    first, second = result.info["infotexts"][1:]
    assert "Refiner:" not in first
    assert "Refiner: other-sd1" in second and "Refiner switch at: 0.5" in second
    assert 'X Values: "None,other-sd1"' in result.info["infotexts"][0]


def test_sub_images_sub_grids_and_prompt_sr(service):
    args = _args(x=(PROMPT_SR, "cat, dog", []), lone=True, subgrids=True, margin=4)
    job, result = _run(service, _params(args, seed=7))
    assert job.error is None, job.error
    assert len(result.images) == 4  # grid, its one sub grid, two cells
    assert result.images[2].size == (64, 64) and result.images[0].width == 64 * 2 + 4  # margin, no row labels
    assert result.info["all_prompts"][-2:] == ["a cat", "a dog"]
    assert result.info["all_seeds"][-2:] == [7, 7]
    assert result.info["infotexts"][-1].startswith("a dog\n")


def test_keep_minus_one_seeds(service):
    args = _args(x=(STEPS, "1, 1", []), keep_seeds=True, lone=True)
    job, result = _run(service, _params(args, seed=-1))
    assert job.error is None, job.error
    seeds = result.info["all_seeds"]
    assert len(seeds) == 2 and seeds[0] != seeds[1]  # each cell drew its own seed
    job, result = _run(service, _params(_args(x=(STEPS, "1, 1", [])), seed=-1))
    assert len(set(result.info["all_seeds"])) == 1  # fixed once for the whole plot
    assert f"Seed: {result.info['all_seeds'][0]}" in result.info["infotexts"][0]


def test_img2img_denoising_axis(service):
    job, result = _run(service, _params(_args(x=(24, "0.3, 0.6", []), lone=True), img2img=True))
    assert job.error is None, job.error
    assert "Denoising strength: 0.3" in result.info["infotexts"][1]
    assert "Denoising strength: 0.6" in result.info["infotexts"][2]
    assert "X Type: Denoising" in result.info["infotexts"][0]


@pytest.mark.parametrize("args, message", [
    (_args(x=(PROMPT_SR, "horse, dog", [])), "Prompt S/R did not find horse"),
    (_args(x=(40, "Enable", [])), "FP8 mode"),
    (_args(x=(CHECKPOINT, "", ["no-such-model"])), "Unknown checkpoint: no-such-model"),
    (_args(x=(STEPS, "a-b", [])), "Steps: 'a-b' is not a whole number"),
    (_args(x=(99, "1", [])), "out of range"),
])
def test_bad_axes_are_clear_errors(service, args, message):
    job, _ = _run(service, _params(args))
    assert job.error is not None and message in str(job.error)


def test_vae_axis_and_progress(service):
    job, result = _run(service, _params(_args(x=(29, "None, tiny.vae", []), lone=True)))  # 29: VAE
    assert job.error is None, job.error
    assert "VAE:" not in result.info["infotexts"][1] and "VAE: tiny.vae" in result.info["infotexts"][2]
    assert job.progress.job_count == 2  # one progress bar over the cells
    assert service.manager.current.vae_filename is None  # the job's own VAE is back


def test_interrupt_stops_the_remaining_cells(service):
    import threading

    second = threading.Event()
    job = service.submit(_params(_args(x=(STEPS, "3, 3, 3, 3", []), lone=True)), kind="txt2img")

    def on_event(_event, j) -> None:
        if j.progress.job_no >= 1 or j.done:
            second.set()

    job.add_listener(on_event)
    assert second.wait(300)
    service.interrupt(job.id)
    result = job.wait(300)
    assert result.interrupted and job.error is None
    cells = result.images[1:]
    assert len(cells) == 4 and cells[-1].getextrema() == ((0, 0), (0, 0), (0, 0))  # not run: a black cell
    assert cells[0].getextrema() != ((0, 0), (0, 0), (0, 0))


def test_a_batch_per_cell_shows_its_grid(service):
    job, result = _run(service, _params(_args(x=(SEED, "1, 2", []), lone=True), batch_size=2))
    assert job.error is None, job.error
    assert [im.size for im in result.images[1:]] == [(128, 64), (128, 64)]  # each cell is its batch's grid
    assert result.images[0].width == 2 * 128 and result.info["all_seeds"] == [1, 2]
