"""Checkpoint Merger (app.engine.modes.merge): weighted sum and add difference equal the hand-computed tensors, fp16,
metadata (A1111's sd_merge_recipe), a baked VAE, bad input (different architectures, missing models, an existing
output) as clear errors, and a merged tiny SD1 checkpoint listed, loaded and generating through the job service."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from app.engine.modes import merge as M
from app.engine.modes.runners import RUNNERS
from app.errors import UserError
from app.jobs.job import JobState
from app.jobs.service import JobService
from app.models.catalog.index import Catalog
from app.models.manager import ModelManager
from app.params import GenerationParams, SeedParams
from app.paths import Paths
from app.settings import Settings

UNET = "model.diffusion_model.input_blocks.1.0.weight"
CONV = "model.diffusion_model.input_blocks.0.0.weight"


def _write(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> M.MergeModel:
    save_file(tensors, str(path), metadata=metadata)
    return M.MergeModel(str(path), path.name, sha256=path.stem * 4, legacy_hash="0" * 8)


def _model(seed: int, conv_in: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {UNET: torch.randn(3, 5, generator=g), CONV: torch.randn(8, conv_in, 3, 3, generator=g),
            "first_stage_model.decoder.conv_in.weight": torch.randn(2, 2, generator=g),
            "cond_stage_model.transformer.text_model.embeddings.position_ids": torch.arange(4)}


@pytest.fixture
def three(tmp_path: Path) -> tuple[M.MergeModel, M.MergeModel, M.MergeModel, dict, dict, dict]:
    a, b, c = _model(1), _model(2), _model(3)
    a["only_in_a.weight"] = torch.ones(2)
    ma = _write(tmp_path / "a.safetensors", a, {"ss_note": "from a"})
    mb = _write(tmp_path / "b.safetensors", b, {"ss_note": "from b", "other": "x"})
    mc = _write(tmp_path / "c.safetensors", c)
    return ma, mb, mc, a, b, c


def test_weighted_sum_equals_hand_computed(three, tmp_path: Path) -> None:
    ma, mb, _mc, a, b, _c = three
    out = tmp_path / "out"
    path = M.merge(M.MergeRequest(ma, mb, None, "Weighted sum", 0.3), out)
    assert path.name == "a_0.7-b_0.3-Weighted_sum-merged.safetensors"
    merged = load_file(str(path))
    for key in (UNET, CONV, "first_stage_model.decoder.conv_in.weight"):
        assert torch.equal(merged[key], a[key] * 0.7 + b[key] * 0.3)
    assert torch.equal(merged["only_in_a.weight"], torch.ones(2))
    assert torch.equal(merged["cond_stage_model.transformer.text_model.embeddings.position_ids"], torch.arange(4))
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    recipe = json.loads(meta["sd_merge_recipe"])
    assert recipe["interp_method"] == "Weighted sum" and recipe["multiplier"] == 0.3
    assert recipe["primary_model_hash"] == ma.sha256 and recipe["secondary_model_hash"] == mb.sha256
    assert set(json.loads(meta["sd_merge_models"])) == {ma.sha256, mb.sha256}
    assert meta["ss_note"] == "from a" and meta["other"] == "x"  # the models' metadata, the primary's winning
    with pytest.raises(UserError, match="already exists"):
        M.merge(M.MergeRequest(ma, mb, None, "Weighted sum", 0.3), out)


def test_add_difference_fp16_and_custom_name(three, tmp_path: Path) -> None:
    ma, mb, mc, a, b, c = three
    path = M.merge(M.MergeRequest(ma, mb, mc, "Add difference", 0.5, half=True, save_metadata=False,
                                  custom_name="mix"), tmp_path)
    assert path.name == "mix.safetensors"
    merged = load_file(str(path))
    for key in (UNET, CONV):
        assert merged[key].dtype == torch.float16
        assert torch.equal(merged[key], (a[key] + (b[key] - c[key]) * 0.5).half())
    with safe_open(str(path), "pt") as f:
        assert "sd_merge_recipe" not in (f.metadata() or {})


def test_no_interpolation_bakes_a_vae(three, tmp_path: Path) -> None:
    ma, _mb, _mc, a, _b, _c = three
    vae = tmp_path / "v.vae.safetensors"
    save_file({"decoder.conv_in.weight": torch.full((2, 2), 7.0)}, str(vae))
    path = M.merge(M.MergeRequest(ma, None, None, "No interpolation", vae=str(vae), custom_name="baked"), tmp_path)
    merged = load_file(str(path))
    assert torch.equal(merged["first_stage_model.decoder.conv_in.weight"], torch.full((2, 2), 7.0))
    assert torch.equal(merged[UNET], a[UNET])
    wrong = tmp_path / "wrong.safetensors"
    save_file({"encoder.x": torch.zeros(1)}, str(wrong))
    with pytest.raises(UserError, match="no tensor the checkpoint's VAE"):
        M.merge(M.MergeRequest(ma, None, None, "No interpolation", vae=str(wrong), custom_name="b2"), tmp_path)


def test_discard_weights_and_copy_config(three, tmp_path: Path) -> None:
    ma, mb, mc, a, b, _c = three
    out = tmp_path / "out"
    path = M.merge(M.MergeRequest(ma, mb, None, "Weighted sum", 0.5, custom_name="lean",
                                  discard_weights=r"^first_stage_model\.|only_in"), out)
    merged = load_file(str(path))
    assert set(merged) == {UNET, CONV, "cond_stage_model.transformer.text_model.embeddings.position_ids"}
    assert torch.equal(merged[UNET], a[UNET] * 0.5 + b[UNET] * 0.5)
    with safe_open(str(path), "pt") as f:
        recipe = json.loads(f.metadata()["sd_merge_recipe"])
    assert recipe["discard_weights"] == r"^first_stage_model\.|only_in" and recipe["config_source"] == 0
    assert not (out / "lean.yaml").exists()  # no input has a config: nothing to copy

    Path(mb.filename).with_suffix(".yaml").write_text("model: b\n")
    Path(mc.filename).with_suffix(".yaml").write_text("model: c\n")
    M.merge(M.MergeRequest(ma, mb, mc, "Add difference", 0.5, custom_name="first"), out)  # "A, B or C": B's
    assert (out / "first.yaml").read_text() == "model: b\n"
    M.merge(M.MergeRequest(ma, mb, mc, "Add difference", 0.5, custom_name="from-c", config_source=2), out)
    assert (out / "from-c.yaml").read_text() == "model: c\n"
    M.merge(M.MergeRequest(ma, mb, mc, "Add difference", 0.5, custom_name="none", config_source=3), out)
    assert not (out / "none.yaml").exists()
    with pytest.raises(UserError, match="not a valid regular expression"):
        M.merge(M.MergeRequest(ma, mb, None, "Weighted sum", 0.5, custom_name="bad", discard_weights="(["), out)
    assert not (out / "bad.safetensors").exists()


def test_inpainting_primary_keeps_its_extra_channels(tmp_path: Path) -> None:
    a, b = _model(1, conv_in=9), _model(2)
    ma, mb = _write(tmp_path / "a.safetensors", a), _write(tmp_path / "b.safetensors", b)
    merged = load_file(str(M.merge(M.MergeRequest(ma, mb, None, "Weighted sum", 0.5), tmp_path / "o")))
    assert torch.equal(merged[CONV][:, :4], a[CONV][:, :4] * 0.5 + b[CONV] * 0.5)
    assert torch.equal(merged[CONV][:, 4:], a[CONV][:, 4:])


def test_bad_input_is_a_clear_error(three, tmp_path: Path) -> None:
    ma, mb, _mc, _a, _b, _c = three
    other = _write(tmp_path / "sdxl.safetensors", {UNET: torch.zeros(6, 5), CONV: torch.zeros(8, 4, 3, 3)})
    with pytest.raises(UserError, match="different architectures"):
        M.merge(M.MergeRequest(ma, other, None, "Weighted sum", 0.5), tmp_path / "o")
    unrelated = _write(tmp_path / "lora.safetensors", {"lora_unet_x.lora_up.weight": torch.zeros(2)})
    with pytest.raises(UserError, match="different architectures"):
        M.merge(M.MergeRequest(ma, unrelated, None, "Weighted sum", 0.5), tmp_path / "o")
    with pytest.raises(UserError, match="needs a tertiary"):
        M.merge(M.MergeRequest(ma, mb, None, "Add difference", 0.5), tmp_path / "o")
    with pytest.raises(UserError, match="bad output name"):
        M.merge(M.MergeRequest(ma, mb, None, "Weighted sum", 0.5, custom_name="../evil"), tmp_path / "o")
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


@pytest.mark.slow
def test_merge_job_lists_loads_and_generates(tiny_data_dir: Path, tmp_path: Path) -> None:
    from app.devtools.tiny_models import tiny_checkpoint_state_dict

    data = tmp_path / "data"
    shutil.copytree(tiny_data_dir / "models" / "Stable-diffusion", data / "models" / "Stable-diffusion",
                    ignore=shutil.ignore_patterns("tiny-sd2v*", "tiny-sdxl*"))
    second = data / "models" / "Stable-diffusion" / "tiny-sd1-b.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_checkpoint_state_dict("sd1", seed=5).items()}, str(second),
              metadata={"format": "pt"})
    paths = Paths.from_data_dir(data)
    settings = Settings(None)
    settings.set("samples_save", False, save=False)
    catalog = Catalog(paths)
    manager = ModelManager(catalog, settings, None, paths=paths)
    svc = JobService(manager, settings, paths, runners=RUNNERS)
    try:
        options = {"primary": "tiny-sd1", "secondary": "tiny-sd1-b", "method": "Weighted sum", "multiplier": 0.5,
                   "half": False, "vae": "None", "save_metadata": True, "custom_name": "merged-tiny"}
        job = svc.submit(GenerationParams(extras={"merge": options}), kind="merge")
        result = job.wait(120)
        assert job.state == JobState.DONE, job.error
        assert Path(result.info["filename"]).name == "merged-tiny.safetensors"
        assert any(c.name == "merged-tiny.safetensors" for c in catalog.checkpoints())
        params = GenerationParams(prompt="a cat", steps=2, width=64, height=64, sampler_name="Euler",
                                  checkpoint="merged-tiny", save_images=False, save_grid=False,
                                  seed=SeedParams(seed=1))
        gen = svc.submit(params)
        images = gen.wait(120).images
        assert gen.state == JobState.DONE and images and images[0].size == (64, 64)
        bad = svc.submit(GenerationParams(extras={"merge": {**options, "secondary": "nope"}}), kind="merge")
        with pytest.raises(Exception, match="secondary model 'nope' not found"):
            bad.wait(60)
    finally:
        svc.shutdown()


def test_interrupted_merge_leaves_nothing(three, tmp_path: Path) -> None:
    ma, mb, _mc, _a, _b, _c = three
    out = tmp_path / "stopped"
    with pytest.raises(UserError, match="interrupted"):
        M.merge(M.MergeRequest(ma, mb, None, "Weighted sum", 0.5), out, should_stop=lambda: True)
    assert list(out.iterdir()) == []


def test_streaming_writer_round_trips_every_dtype(tmp_path: Path) -> None:
    from contextlib import ExitStack

    from app.engine.modes.merge_io import open_tensors, write_safetensors

    tensors = {"f": torch.randn(3, 2), "h": torch.randn(5).half(), "b": torch.randn(2, 2).bfloat16(),
               "i": torch.arange(6).reshape(2, 3), "z": torch.tensor(True), "e": torch.zeros(0, 4)}
    src = tmp_path / "src.safetensors"
    save_file(tensors, str(src))
    with ExitStack() as stack:
        reader, _ = open_tensors(src, stack)
        plan = [(k, reader.spec(k)) for k in reader.keys()]
        write_safetensors(tmp_path / "copy.safetensors", plan, ((k, reader.get(k)) for k in reader.keys()),
                          {"format": "pt"})
    copy = load_file(str(tmp_path / "copy.safetensors"))
    assert set(copy) == set(tensors)
    for key, value in tensors.items():
        assert copy[key].dtype == value.dtype and torch.equal(copy[key], value)
