"""Loader: safe reading by bytes, family detection, shape-inferred architectures, tiny end-to-end loads."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from app.devtools import tiny_configs as tc
from app.devtools import tiny_models as tm
from app.models.load.loader import (
    CheckpointLoadError,
    UnsafeCheckpointError,
    detect_family,
    detect_file_format,
    load_pipeline,
    load_vae,
    read_state_dict,
)


def _ckpt(data_dir: Path, family: str) -> Path:
    return data_dir / "models" / "Stable-diffusion" / f"tiny-{family}.safetensors"


def _generate(loaded, seed: int = 7, steps: int = 2):
    pipe = loaded.pipe
    kwargs = {"num_inference_steps": steps, "height": 64, "width": 64, "output_type": "np", "guidance_scale": 7.0}
    if loaded.is_inpainting:
        from PIL import Image

        kwargs |= {"image": Image.new("RGB", (64, 64), "gray"), "mask_image": Image.new("L", (64, 64), 255)}
    return pipe("a photo of a cat", generator=torch.Generator().manual_seed(seed), **kwargs).images


@pytest.fixture(scope="module")
def sd1(tiny_data_dir: Path):
    return load_pipeline(_ckpt(tiny_data_dir, "sd1"))


# ---------------------------------------------------------------------------------------------- families


@pytest.mark.slow
@pytest.mark.parametrize(
    ("family", "pipe_class", "prediction", "cross_dim"),
    [
        ("sd1", "StableDiffusionPipeline", "epsilon", 32),
        ("sd2v", "StableDiffusionPipeline", "v_prediction", 32),
        ("sdxl", "StableDiffusionXLPipeline", "epsilon", 96),
    ],
)
def test_tiny_family_loads_and_generates(tiny_data_dir: Path, family, pipe_class, prediction, cross_dim) -> None:
    loaded = load_pipeline(_ckpt(tiny_data_dir, family))
    assert loaded.family == family
    assert type(loaded.pipe).__name__ == pipe_class
    assert loaded.prediction_type == prediction == loaded.scheduler_config["prediction_type"]
    assert loaded.is_sdxl == (family == "sdxl") and not loaded.is_inpainting
    assert loaded.source_path == _ckpt(tiny_data_dir, family)
    unet = loaded.pipe.unet
    assert unet.config.cross_attention_dim == cross_dim
    assert list(unet.config.block_out_channels) == [32, 64]
    assert loaded.pipe.vae_scale_factor == 8
    assert len(loaded.pipe.tokenizer) == 49408
    pad_ids = {"sd1": 49407, "sd2v": 0, "sdxl": 49407}
    assert loaded.pipe.tokenizer.pad_token_id == pad_ids[family]
    if family == "sdxl":
        assert loaded.pipe.tokenizer_2.pad_token_id == 0
        assert loaded.pipe.text_encoder_2.config.hidden_size == tc.SDXL_TE2_HIDDEN
    a, b, c = _generate(loaded, 7), _generate(loaded, 7), _generate(loaded, 8)
    assert a.shape == (1, 64, 64, 3)
    assert (a == b).all() and not (a == c).all()


def test_weights_equal_what_the_writer_built(sd1) -> None:
    """Every tensor of the loaded tiny-sd1 equals the diffusers model the writer converted to LDM."""
    seed = 1000 * tc.TINY_FAMILIES.index("sd1")
    expected = {
        "unet": tm._unet(tc.tiny_unet_config("sd1"), seed + 1),
        "vae": tm._vae(tc.tiny_vae_config("sd1"), seed + 2),
        "text_encoder": tm._clip(tc.tiny_text_encoder_config("sd1"), seed + 3),
    }
    for name, model in expected.items():
        got = getattr(sd1.pipe, name).state_dict()
        want = model.state_dict()
        assert set(got) == set(want), name
        assert all(torch.equal(got[k], want[k]) for k in want), name
    assert dict(sd1.pipe.unet.config)["attention_head_dim"] == 8


def test_scheduler_config_is_a_private_copy(tiny_data_dir: Path) -> None:
    mine = load_pipeline(_ckpt(tiny_data_dir, "sd1"))
    original = dict(mine.scheduler_config)
    assert mine.scheduler_config["_class_name"] == "PNDMScheduler"
    mine.pipe.scheduler.register_to_config(prediction_type="v_prediction")
    assert mine.scheduler_config == original
    mine.scheduler_config["steps_offset"] = 99
    again = load_pipeline(_ckpt(tiny_data_dir, "sd1"))
    assert again.scheduler_config["steps_offset"] == 1


def test_inpaint_family(tmp_path: Path) -> None:
    path = tmp_path / "tiny-inpaint.safetensors"
    save_file(tm.tiny_checkpoint_state_dict("sd1-inpaint"), str(path))
    loaded = load_pipeline(path)
    assert loaded.family == "sd1-inpaint" and loaded.is_inpainting
    assert type(loaded.pipe).__name__ == "StableDiffusionInpaintPipeline"
    assert loaded.pipe.unet.config.in_channels == 9
    assert _generate(loaded).shape == (1, 64, 64, 3)


# ----------------------------------------------------------------------------------- detect_family


def _keys(family: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in tm.tiny_checkpoint_state_dict(family).items()}


@pytest.mark.parametrize("family", ["sd1", "sd1-inpaint", "sd2", "sd2v", "sdxl", "sdxl-inpaint"])
def test_detect_family_table(family: str) -> None:
    sd = _keys(family)
    assert detect_family(sd) == family
    if not family.endswith("-inpaint"):
        assert detect_family(list(sd)) == family  # keys alone suffice without inpainting


def test_sd2_sidecar_yaml_decides_v(tmp_path: Path) -> None:
    sd = _keys("sd2")
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"")
    assert detect_family(sd, source_path=ckpt) == "sd2"
    (tmp_path / "model.yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert detect_family(sd, source_path=ckpt) == "sd2v"
    (tmp_path / "model.yaml").write_text("model:\n  params:\n    linear_start: 0.00085\n")
    sd["v_pred"] = torch.zeros(0)
    assert detect_family(sd, source_path=ckpt) == "sd2"  # an explicit yaml wins over the marker


def test_unknown_keys_are_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "not-sd.safetensors"
    save_file({"encoder.layer.0.weight": torch.zeros(2, 2), "head.bias": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match=r"not a Stable Diffusion checkpoint: .*not-sd\.safetensors.*encoder\.layer"):
        load_pipeline(path)
    unet_only = {k: v for k, v in _keys("sd1").items() if k.startswith("model.diffusion_model.")}
    with pytest.raises(ValueError, match="no known text encoder"):
        detect_family(unet_only)


# ------------------------------------------------------------------------------------ file formats


def test_ckpt_state_dict_wrapper_loads(tmp_path: Path, tiny_data_dir: Path, sd1) -> None:
    sd = load_file(str(_ckpt(tiny_data_dir, "sd1")))
    zip_ckpt, legacy = tmp_path / "wrapped.ckpt", tmp_path / "legacy.ckpt"
    torch.save({"state_dict": sd, "global_step": 470000, "epoch": 3}, zip_ckpt)
    torch.save({"state_dict": sd}, legacy, _use_new_zipfile_serialization=False)
    assert detect_file_format(zip_ckpt) == "torch-zip"
    assert detect_file_format(legacy) == "pickle"
    for path in (zip_ckpt, legacy):
        got = read_state_dict(path)
        assert set(got) == set(sd)
        loaded = load_pipeline(path)
        assert loaded.family == "sd1"
        ref = sd1.pipe.unet.state_dict()
        assert all(torch.equal(v, ref[k]) for k, v in loaded.pipe.unet.state_dict().items())


def test_format_is_detected_by_bytes_not_extension(tmp_path: Path, tiny_data_dir: Path) -> None:
    disguised = tmp_path / "really-safetensors.ckpt"
    shutil.copy(_ckpt(tiny_data_dir, "sd1"), disguised)
    assert detect_file_format(disguised) == "safetensors"
    assert load_pipeline(disguised).family == "sd1"
    pickled = tmp_path / "really-pickle.safetensors"
    torch.save({"a": torch.ones(2)}, pickled)
    assert detect_file_format(pickled) == "torch-zip"
    assert torch.equal(read_state_dict(pickled)["a"], torch.ones(2))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"hello world, definitely not a model")
    with pytest.raises(ValueError, match=r"unrecognised model file format: .*junk\.safetensors"):
        detect_file_format(junk)
    with pytest.raises(ValueError, match="not found"):
        read_state_dict(tmp_path / "missing.ckpt")
    folder = tmp_path / "not-a-pipeline"
    folder.mkdir()
    with pytest.raises(ValueError, match="model_index.json"):
        detect_file_format(folder)


@pytest.mark.parametrize("keep", [0.5, 0.0001])
def test_truncated_safetensors_names_the_file(tmp_path: Path, tiny_data_dir: Path, keep: float) -> None:
    data = _ckpt(tiny_data_dir, "sd1").read_bytes()
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(data[: max(12, int(len(data) * keep))])
    with pytest.raises(CheckpointLoadError, match=r"truncated\.safetensors"):
        load_pipeline(bad)


def test_truncated_ckpt_names_the_file(tmp_path: Path) -> None:
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, good, _use_new_zipfile_serialization=False)
    bad = tmp_path / "cut.ckpt"
    bad.write_bytes(good.read_bytes()[:300])
    with pytest.raises(CheckpointLoadError, match=r"cut\.ckpt"):
        read_state_dict(bad)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Opens:
    """Unpickling it creates a file: a visible side effect of full (unsafe) unpickling."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, legacy: bool) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save(
        {"state_dict": {"w": torch.ones(1)}, "payload": _Evil(marker)}, path, _use_new_zipfile_serialization=not legacy
    )
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.ckpt.*GLOBAL .*system.*safetensors") as info:
        read_state_dict(path)
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnsafeCheckpointError):
        load_pipeline(path)
    assert not marker.exists()


def test_allow_unsafe_runs_full_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "opened"
    path = tmp_path / "custom.ckpt"
    torch.save({"state_dict": {"w": torch.ones(3)}, "extra": _Opens(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match="GLOBAL"):
        read_state_dict(path)
    assert not marker.exists()
    sd = read_state_dict(path, allow_unsafe=True)
    assert marker.exists() and torch.equal(sd["w"], torch.ones(3))


def test_plain_pickle_of_tensors_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    with open(path, "wb") as f:
        pickle.dump({"x": 1}, f, protocol=2)
    assert detect_file_format(path) == "pickle"
    with pytest.raises(CheckpointLoadError, match=r"plain\.pt"):
        read_state_dict(path)  # no tensors in it


# ----------------------------------------------------------------------------------------------- VAE


def test_vae_file_loads_and_replaces(tiny_data_dir: Path, sd1, tmp_path: Path) -> None:
    vae_file = tiny_data_dir / "models" / "VAE" / "tiny.vae.safetensors"
    vae = load_vae(vae_file, like=sd1)
    want = tm._vae(tc.tiny_vae_config("sd1"), 50).state_dict()
    got = vae.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    assert vae.config.scaling_factor == sd1.pipe.vae.config.scaling_factor
    # diffusers-keyed VAE files load too
    diffusers_keyed = tmp_path / "diffusers-vae.safetensors"
    save_file(dict(want), str(diffusers_keyed))
    again = load_vae(diffusers_keyed, like=sd1).state_dict()
    assert all(torch.equal(again[k], want[k]) for k in want)
    # swapping the VAE changes the decoded image
    swapped = load_pipeline(_ckpt(tiny_data_dir, "sd1"), vae_path=vae_file)
    assert swapped.vae_path == vae_file
    assert not (_generate(swapped) == _generate(sd1)).all()


def test_non_vae_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "lora-not-vae.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(4, 4)}, str(path))
    with pytest.raises(CheckpointLoadError, match=r"not a VAE file: .*lora-not-vae"):
        load_vae(path)


# ---------------------------------------------------------------------------------- diffusers folder


def test_diffusers_folder_loads_like_the_single_file(tmp_path: Path, sd1) -> None:
    folder = tmp_path / "tiny-sd1-diffusers"
    sd1.pipe.save_pretrained(folder, safe_serialization=True)
    assert detect_file_format(folder) == "diffusers-folder"
    loaded = load_pipeline(folder)
    assert loaded.family == "sd1" and loaded.prediction_type == "epsilon"
    assert (_generate(loaded) == _generate(sd1)).all()


def test_unknown_family_argument(tiny_data_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown model family"):
        load_pipeline(_ckpt(tiny_data_dir, "sd1"), family="sd3")


# ------------------------------------------------------------------------------ SD2 v-prediction probe


class _FakeUnet:
    """Stands in for a UNet: returns ``factor * x`` (an eps model ~ x at t=999, a v model far below)."""

    def __init__(self, factor: float) -> None:
        from types import SimpleNamespace

        self.factor = factor
        self.dtype = torch.float32
        self.config = SimpleNamespace(cross_attention_dim=8, in_channels=4)

    def __call__(self, x, t, encoder_hidden_states):
        from types import SimpleNamespace

        assert int(t[0]) == 999 and encoder_hidden_states.shape == (1, 2, 8)
        return SimpleNamespace(sample=self.factor * x)


@pytest.mark.parametrize(("factor", "is_v"), [(1.0, False), (0.0, False), (-2.0, True), (-10.0, True)])
def test_a1111_sd2_probe(factor: float, is_v: bool) -> None:
    from app.models.load.loader import _sd2_probe_is_v

    assert _sd2_probe_is_v(_FakeUnet(factor)) is is_v  # (out - x).mean() < -1 with x = 0.5


def test_sd2_without_markers_is_decided_by_the_probe(tmp_path: Path) -> None:
    from app.models.load.loader import _sd2_probe_is_v

    written = tm.write_tiny_models(tmp_path, families=("sd2",))
    ckpt = written["ckpt:sd2"]
    assert ckpt.with_suffix(".yaml").is_file()
    with_yaml = load_pipeline(ckpt)
    assert with_yaml.family == "sd2" and with_yaml.prediction_type == "epsilon"
    ckpt.with_suffix(".yaml").unlink()
    probed = load_pipeline(ckpt)
    expected = "sd2v" if _sd2_probe_is_v(probed.pipe.unet) else "sd2"
    assert probed.family == expected
    assert probed.prediction_type == ("v_prediction" if expected == "sd2v" else "epsilon")


def test_forcing_the_wrong_family_is_a_clear_error(tiny_data_dir: Path) -> None:
    with pytest.raises(CheckpointLoadError, match=r"tiny-sd1\.safetensors is not a complete sdxl checkpoint"):
        load_pipeline(_ckpt(tiny_data_dir, "sd1"), family="sdxl")


def test_missing_tensors_are_named(tmp_path: Path) -> None:
    sd = tm.tiny_checkpoint_state_dict("sd1")
    del sd["model.diffusion_model.out.2.bias"]
    path = tmp_path / "incomplete.safetensors"
    save_file(sd, str(path))
    with pytest.raises(CheckpointLoadError, match=r"incomplete\.safetensors.*UNet.*conv_out\.bias"):
        load_pipeline(path)


def test_sdxl_v_pred_and_ztsnr_markers(tmp_path: Path) -> None:
    sd = tm.tiny_checkpoint_state_dict("sdxl")
    sd["v_pred"], sd["ztsnr"] = torch.zeros(0), torch.zeros(0)
    path = tmp_path / "xl-vpred.safetensors"
    save_file(sd, str(path))
    loaded = load_pipeline(path)
    assert loaded.family == "sdxl" and loaded.prediction_type == "v_prediction"
    assert loaded.scheduler_config["rescale_betas_zero_snr"] is True
    assert loaded.pipe.scheduler.config.prediction_type == "v_prediction"
    assert loaded.extra["markers"] == ["v_pred", "ztsnr"]


def test_detect_file_family_reads_only_the_header(tiny_data_dir: Path, tmp_path: Path) -> None:
    from app.models.load.loader import detect_file_family, read_key_shapes

    for family in ("sd1", "sd2v", "sdxl"):
        assert detect_file_family(_ckpt(tiny_data_dir, family)) == family
    shapes = read_key_shapes(_ckpt(tiny_data_dir, "sd1"))
    assert shapes["model.diffusion_model.input_blocks.0.0.weight"] == (32, 4, 3, 3)
    inpaint = tmp_path / "inpaint.ckpt"
    torch.save({"state_dict": tm.tiny_checkpoint_state_dict("sd1-inpaint")}, inpaint)
    assert detect_file_family(inpaint) == "sd1-inpaint"


@pytest.mark.parametrize("channels", [5, 7, 8])
def test_unsupported_unet_input_channels(channels: int) -> None:
    sd = {k: v for k, v in _keys("sd1").items()}
    sd["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(32, channels, 3, 3)
    with pytest.raises(ValueError, match=f"{channels} input channels"):
        detect_family(sd)
