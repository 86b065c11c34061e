"""The tiny model writer: real on-disk formats, deterministic, usable by diffusers/peft/spandrel."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from app.devtools import tiny_configs as tc
from app.devtools.tiny_models import main, write_tiny_models
from app.models.load.loader import load_pipeline

EXPECTED_FILES = {
    "ckpt:sd1": "models/Stable-diffusion/tiny-sd1.safetensors",
    "ckpt:sd2v": "models/Stable-diffusion/tiny-sd2v.safetensors",
    "ckpt:sdxl": "models/Stable-diffusion/tiny-sdxl.safetensors",
    "vae": "models/VAE/tiny.vae.safetensors",
    "lora": "models/Lora/tiny-lora.safetensors",
    "embedding_pt": "embeddings/tiny-emb.pt",
    "embedding_safetensors": "embeddings/tiny-emb2.safetensors",
    "esrgan": "models/ESRGAN/tiny-esrgan-4x.pth",
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _contents(path: Path) -> tuple[dict, dict]:
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    return {k: hashlib.sha256(v.numpy().tobytes()).hexdigest() for k, v in load_file(str(path)).items()}, meta


def test_all_files_written(tiny_data_dir: Path) -> None:
    for rel in EXPECTED_FILES.values():
        path = tiny_data_dir / rel
        assert path.is_file() and path.stat().st_size > 0, rel
    assert (tiny_data_dir / EXPECTED_FILES["ckpt:sd1"]).stat().st_size < 20_000_000


@pytest.mark.parametrize(
    ("family", "present", "absent"),
    [
        (
            "sd1",
            ["model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer.text_model."],
            ["cond_stage_model.model.", "conditioner.", "v_pred"],
        ),
        (
            "sd2v",
            ["model.diffusion_model.", "first_stage_model.", "cond_stage_model.model.transformer.resblocks.", "v_pred"],
            ["cond_stage_model.transformer.", "conditioner."],
        ),
        (
            "sdxl",
            [
                "model.diffusion_model.label_emb.",
                "first_stage_model.",
                "conditioner.embedders.0.transformer.text_model.",
                "conditioner.embedders.1.model.transformer.resblocks.",
            ],
            ["cond_stage_model.", "v_pred"],
        ),
    ],
)
def test_checkpoint_uses_ldm_key_names(tiny_data_dir: Path, family: str, present: list, absent: list) -> None:
    with safe_open(str(tiny_data_dir / EXPECTED_FILES[f"ckpt:{family}"]), "pt") as f:
        keys = list(f.keys())
        assert f.metadata()["atelier_tiny_family"] == family
    for prefix in present:
        assert any(k.startswith(prefix) for k in keys), prefix
    for prefix in absent:
        assert not any(k.startswith(prefix) for k in keys), prefix
    sd = load_file(str(tiny_data_dir / EXPECTED_FILES[f"ckpt:{family}"]))
    token_key = next(k for k in sd if k.endswith("token_embedding.weight"))
    assert sd[token_key].shape[0] == tc.CLIP_VOCAB  # real vocabulary: token ids are honest
    if family == "sd2v":  # OpenCLIP-H layout keeps the unused last resblock, like real SD2 files
        blocks = {k.split(".")[5] for k in sd if ".resblocks." in k}
        assert len(blocks) == tc.TE_LAYERS + 1
        assert sd["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"].shape == (96, 32)


def test_deterministic_and_seeded(tmp_path: Path, tiny_data_dir: Path) -> None:
    again = write_tiny_models(tmp_path / "a", families=("sd1",))
    for label in ("ckpt:sd1", "vae", "lora", "embedding_safetensors"):
        # safetensors may order header metadata differently per process: compare contents
        assert _contents(again[label]) == _contents(tiny_data_dir / EXPECTED_FILES[label]), label
    assert _sha(again["esrgan"]) == _sha(tiny_data_dir / EXPECTED_FILES["esrgan"])
    other = write_tiny_models(tmp_path / "b", families=("sd1",), seed=5)
    assert _contents(other["ckpt:sd1"]) != _contents(again["ckpt:sd1"])
    with pytest.raises(ValueError, match="unknown tiny family"):
        write_tiny_models(tmp_path / "c", families=("sd9",))


def test_vae_file_is_standalone_ldm(tiny_data_dir: Path) -> None:
    sd = load_file(str(tiny_data_dir / EXPECTED_FILES["vae"]))
    assert "encoder.conv_in.weight" in sd and "decoder.up.3.upsample.conv.weight" in sd
    assert sd["encoder.mid.attn_1.q.weight"].ndim == 4
    ckpt = load_file(str(tiny_data_dir / EXPECTED_FILES["ckpt:sd1"]))
    assert not torch.equal(sd["encoder.conv_in.weight"], ckpt["first_stage_model.encoder.conv_in.weight"])


def test_lora_is_kohya_format(tiny_data_dir: Path) -> None:
    path = tiny_data_dir / EXPECTED_FILES["lora"]
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert meta["ss_output_name"] == "tiny-lora" and meta["ss_base_model_version"] == "sd_v1"
    sd = load_file(str(path))
    modules = {k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in sd}
    for mod in modules:
        assert sd[f"{mod}.lora_down.weight"].shape[0] == 4
        assert sd[f"{mod}.lora_up.weight"].shape[1] == 4
        assert float(sd[f"{mod}.alpha"]) == 2.0
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q" in modules
    assert "lora_unet_up_blocks_1_attentions_2_transformer_blocks_0_attn2_to_out_0" in modules
    assert "lora_unet_mid_block_attentions_0_proj_in" in modules
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj" in modules
    assert sd["lora_unet_mid_block_attentions_0_proj_in.lora_down.weight"].ndim == 4  # SD1 proj_in is a 1x1 conv


@pytest.mark.slow
def test_lora_and_embeddings_apply_to_tiny_sd1(tiny_data_dir: Path) -> None:
    loaded = load_pipeline(tiny_data_dir / EXPECTED_FILES["ckpt:sd1"])
    pipe = loaded.pipe

    def image(prompt: str):
        g = torch.Generator().manual_seed(3)
        return pipe(prompt, num_inference_steps=2, height=64, width=64, generator=g, output_type="np").images

    base = image("a cat")
    pipe.load_lora_weights(str(tiny_data_dir / EXPECTED_FILES["lora"]), adapter_name="tiny")
    assert set(pipe.get_list_adapters()) == {"unet", "text_encoder"}
    assert not (image("a cat") == base).all()
    pipe.unload_lora_weights()

    pt = torch.load(tiny_data_dir / EXPECTED_FILES["embedding_pt"], weights_only=True)
    assert pt["string_to_token"] == {"*": 265} and pt["name"] == "tiny-emb" and pt["step"] == 10
    assert pt["string_to_param"]["*"].shape == (2, tc.SD1_HIDDEN)
    assert pt["sd_checkpoint_name"] == "tiny-sd1" and len(pt["sd_checkpoint"]) == 8
    st = load_file(str(tiny_data_dir / EXPECTED_FILES["embedding_safetensors"]))
    assert list(st) == ["emb_params"] and st["emb_params"].shape == (3, tc.SD1_HIDDEN)
    pipe.load_textual_inversion(str(tiny_data_dir / EXPECTED_FILES["embedding_pt"]), token="tiny-emb")
    pipe.load_textual_inversion(str(tiny_data_dir / EXPECTED_FILES["embedding_safetensors"]), token="tiny-emb2")
    assert pipe.maybe_convert_prompt("x tiny-emb2", pipe.tokenizer) == "x tiny-emb2 tiny-emb2_1 tiny-emb2_2"
    row = pipe.tokenizer.convert_tokens_to_ids("tiny-emb")
    assert torch.equal(pipe.text_encoder.get_input_embeddings().weight[row], pt["string_to_param"]["*"][0])


def test_esrgan_loads_with_spandrel(tiny_data_dir: Path) -> None:
    import spandrel

    model = spandrel.ModelLoader().load_from_file(str(tiny_data_dir / EXPECTED_FILES["esrgan"]))
    assert model.architecture.name == "ESRGAN" and model.scale == 4
    sd = torch.load(tiny_data_dir / EXPECTED_FILES["esrgan"], weights_only=True)
    assert "model.0.weight" in sd and "model.1.sub.0.RDB1.conv1.0.weight" in sd
    with torch.no_grad():
        out = model.eval()(torch.rand(1, 3, 16, 12))
    assert out.shape == (1, 3, 64, 48)


def test_cli_writes_requested_families(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path), "--family", "sd1"]) == 0
    assert (tmp_path / EXPECTED_FILES["ckpt:sd1"]).is_file()
    assert not (tmp_path / EXPECTED_FILES["ckpt:sdxl"]).exists()
    assert "ckpt:sd1" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--family", "sd9"])
