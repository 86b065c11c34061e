"""Z-Image split files: the tiny writer, header-only detection, part resolution, the catalog and load_pipeline."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from app.devtools.tiny_models import main as tiny_main
from app.devtools.tiny_models import write_tiny_models
from app.models.catalog.index import Catalog
from app.models.catalog.parts import MissingPartError, list_modules, resolve_parts
from app.models.load.checkpoint_io import CheckpointLoadError
from app.models.load.detect import detect_file_role
from app.models.load.loader import detect_file_family, load_pipeline
from app.paths import Paths
from app.prompts import qwen_tokenizer as qt


@pytest.fixture(scope="module")
def zdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("zimage-data")
    write_tiny_models(out, families=("sd1", "zimage"))
    return out


@pytest.fixture(scope="module")
def zfiles(zdir: Path) -> dict[str, Path]:
    models = zdir / "models"
    return {"dm": models / "diffusion_models" / "z_image_turbo_bf16.safetensors",
            "te": models / "text_encoders" / "qwen_3_4b.safetensors", "vae": models / "VAE" / "ae.safetensors",
            "lora": models / "Lora" / "tiny-zimage-lora.safetensors", "sd1": models / "Stable-diffusion" / "tiny-sd1.safetensors",
            "sd_vae": models / "VAE" / "tiny.vae.safetensors"}


def _header(path: Path) -> dict:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n))


def _fake_safetensors(path: Path, shapes: dict[str, tuple[int, ...]], dtype: str = "BF16") -> Path:
    """A header-only file with real-size shapes (detection never reads tensor data)."""
    header = {k: {"dtype": dtype, "shape": list(s), "data_offsets": [0, 0]} for k, s in shapes.items()}
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw)
    return path


def test_tiny_files_have_the_real_names_and_dtypes(zfiles):
    dm = _header(zfiles["dm"])
    assert {"x_embedder.weight", "final_layer.linear.weight", "layers.0.attention.qkv.weight",
            "layers.0.attention.out.weight", "layers.0.attention.q_norm.weight", "cap_embedder.0.weight",
            "x_pad_token", "cap_pad_token", "t_embedder.mlp.0.weight", "noise_refiner.0.attention.qkv.weight",
            "context_refiner.0.attention.k_norm.weight"} <= set(dm)
    assert not any("to_q" in k or "all_x_embedder" in k for k in dm)
    assert dm["layers.0.attention.qkv.weight"]["shape"] == [3 * 64, 64]
    assert {v["dtype"] for k, v in dm.items() if k != "__metadata__"} == {"BF16"}
    te = _header(zfiles["te"])
    assert "model.embed_tokens.weight" in te and "model.layers.0.self_attn.q_norm.weight" in te
    assert not any(k.startswith("lm_head") for k in te)
    assert te["model.embed_tokens.weight"]["shape"] == [qt.TINY_VOCAB_SIZE, 32]
    vae = _header(zfiles["vae"])
    assert vae["decoder.conv_in.weight"]["shape"][1] == 16 and "quant_conv.weight" not in vae
    assert {v["dtype"] for k, v in vae.items() if k != "__metadata__"} == {"F32"}
    lora = _header(zfiles["lora"])
    assert any(k.startswith("diffusion_model.layers.0.") and k.endswith(".lora_A.weight") for k in lora)
    with safe_open(str(zfiles["dm"]), "pt") as f:
        assert f.get_tensor("x_pad_token").abs().sum() > 0  # randomised, not the zero init


def test_cli_takes_the_data_dir_as_argument_and_writes_fp8(tmp_path):
    assert tiny_main(["--family", "zimage", "--zimage-weights", "fp8", str(tmp_path)]) == 0
    dm = _header(tmp_path / "models" / "diffusion_models" / "z_image_turbo_fp8_e4m3fn.safetensors")
    assert dm["layers.0.attention.qkv.weight"]["dtype"] == "F8_E4M3"
    assert dm["layers.0.attention.q_norm.weight"]["dtype"] == "BF16"
    assert (tmp_path / "models" / "text_encoders" / "qwen_3_4b_fp8_e4m3fn.safetensors").is_file()


def test_detection_of_each_role_from_headers(zfiles):
    got = {k: (r.family, r.role) for k, r in ((k, detect_file_role(p)) for k, p in zfiles.items())}
    assert got == {"dm": ("zimage", "diffusion_model"), "te": ("qwen3", "text_encoder"), "vae": ("flux_vae", "vae"),
                   "lora": ("zimage", "lora"), "sd1": ("sd1", "checkpoint"), "sd_vae": ("sd_vae", "vae")}
    assert detect_file_role(zfiles["dm"]).detail["cap_feat_dim"] == 32


def test_detection_ignores_file_names(zfiles, tmp_path):
    renamed = tmp_path / "qwen_3_4b.safetensors"  # a VAE under a text encoder's name
    shutil.copy(zfiles["vae"], renamed)
    assert (detect_file_role(renamed).family, detect_file_role(renamed).role) == ("flux_vae", "vae")


def test_detection_of_real_sized_headers(tmp_path):
    te = {"model.embed_tokens.weight": (151936, 2560), "model.layers.0.self_attn.q_norm.weight": (128,),
          "model.layers.0.post_attention_layernorm.weight": (2560,), "model.norm.weight": (2560,)}
    role = detect_file_role(_fake_safetensors(tmp_path / "te.safetensors", te))
    assert (role.family, role.role, role.detail["hidden_size"]) == ("qwen3_4b", "text_encoder", 2560)
    dm = {"model.diffusion_model.x_embedder.weight": (3840, 64),
          "model.diffusion_model.layers.0.adaLN_modulation.0.weight": (15360, 256),
          "model.diffusion_model.layers.0.attention.qkv.weight": (11520, 3840),
          "model.diffusion_model.layers.0.attention.q_norm.weight": (128,),
          "model.diffusion_model.layers.29.attention.q_norm.weight": (128,),
          "model.diffusion_model.noise_refiner.1.attention.q_norm.weight": (128,),
          "model.diffusion_model.cap_embedder.0.weight": (2560,),
          "model.diffusion_model.cap_embedder.1.weight": (3840, 2560)}
    role = detect_file_role(_fake_safetensors(tmp_path / "dm.safetensors", dm))
    assert (role.family, role.role, role.detail["dim"], role.detail["cap_feat_dim"]) == (
        "zimage", "diffusion_model", 3840, 2560)
    from app.models.load.zimage_convert import infer_transformer_config

    cfg = infer_transformer_config(dm)
    assert (cfg["n_layers"], cfg["n_refiner_layers"], cfg["n_heads"], cfg["n_kv_heads"], cfg["axes_dims"]) == (
        30, 2, 30, 30, [32, 48, 48])
    junk = detect_file_role(_fake_safetensors(tmp_path / "x.safetensors", {"foo.bar": (3,)}))
    assert junk.role == "unknown" and "foo.bar" in junk.reason


def _gguf(path: Path, arch: str | None, tensors: dict[str, tuple[int, ...]]) -> Path:
    def s(text: str) -> bytes:
        return struct.pack("<Q", len(text.encode())) + text.encode()

    kv = [] if arch is None else [s("general.architecture") + struct.pack("<I", 8) + s(arch)]
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)) + b"".join(kv)
    for name, shape in tensors.items():
        dims = tuple(reversed(shape))
        out += s(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims) + struct.pack("<IQ", 8, 0)
    path.write_bytes(out)
    return path


def test_detection_of_gguf_headers(tmp_path):
    dm = _gguf(tmp_path / "z.gguf", None, {"x_embedder.weight": (3840, 64), "layers.0.adaLN_modulation.0.weight":
               (15360, 256), "layers.0.attention.qkv.weight": (11520, 3840), "layers.0.attention.q_norm.weight": (128,),
               "cap_embedder.0.weight": (2560,), "cap_embedder.1.weight": (3840, 2560)})
    role = detect_file_role(dm)
    assert (role.family, role.role, role.detail["format"], role.detail["gguf_types"]) == (
        "zimage", "diffusion_model", "gguf", ["Q8_0"])
    te = detect_file_role(_gguf(tmp_path / "q.gguf", "qwen3", {"token_embd.weight": (151936, 2560)}))
    assert (te.family, te.role) == ("qwen3_4b", "text_encoder")
    (tmp_path / "bad.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 10**9, 0))
    assert detect_file_role(tmp_path / "bad.gguf").role == "unknown"


def test_qwen3_tokenizer_is_the_real_one():
    tok = qt.qwen3_tokenizer()
    assert len(tok) == qt.QWEN_VOCAB_SIZE
    assert tok("Hello world").input_ids == [9707, 1879]
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>"]) == [
        151643, 151644, 151645, 151667]
    text = tok.apply_chat_template([{"role": "user", "content": "a cat"}], tokenize=False,
                                   add_generation_prompt=True, enable_thinking=True)
    assert text == "<|im_start|>user\na cat<|im_end|>\n<|im_start|>assistant\n"
    assert tok(text).input_ids == [151644, 872, 198, 64, 8251, 151645, 198, 151644, 77091, 198]
    assert "<think>\n\n</think>" in tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False,
                                                            add_generation_prompt=True, enable_thinking=False)


def test_tokenizer_is_chosen_by_vocabulary_size():
    assert len(qt.tokenizer_for_vocab(qt.TINY_VOCAB_SIZE)) == qt.TINY_VOCAB_SIZE
    assert len(qt.tokenizer_for_vocab(151936)) == qt.QWEN_VOCAB_SIZE
    with pytest.raises(qt.TokenizerMismatchError, match="1000 tokens"):
        qt.tokenizer_for_vocab(1000)


def test_load_pipeline_gives_a_zimage_pipeline_that_generates(zfiles):
    loaded = load_pipeline(zfiles["dm"])
    assert type(loaded.pipe).__name__ == "ZImagePipeline"
    assert (loaded.family, loaded.prediction_type, loaded.is_sdxl, loaded.is_inpainting) == ("zimage", "flow", False,
                                                                                              False)
    cfg = loaded.scheduler_config
    assert (cfg["shift"], cfg["use_dynamic_shifting"], cfg["num_train_timesteps"], cfg["atelier_flow_timestep"]) == (
        3.0, False, 1000, "1-sigma")
    assert loaded.extra["parts"] == {"diffusion_model": str(zfiles["dm"]), "text_encoder": str(zfiles["te"]),
                                     "vae": str(zfiles["vae"])}
    vae = loaded.pipe.vae.config
    assert (vae.latent_channels, vae.scaling_factor, vae.shift_factor, vae.use_quant_conv) == (16, 0.3611, 0.1159,
                                                                                               False)
    assert detect_file_family(zfiles["dm"]) == "zimage"
    image = loaded.pipe(prompt="a cat", num_inference_steps=2, guidance_scale=0, height=32, width=32,
                        generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (32, 32)
    assert image.getextrema() != ((0, 0), (0, 0), (0, 0))


def test_weights_match_the_file_after_key_conversion(zfiles):
    loaded = load_pipeline(zfiles["dm"])
    with safe_open(str(zfiles["dm"]), "pt") as f:
        qkv = f.get_tensor("layers.1.attention.qkv.weight").float()
        pad = f.get_tensor("x_pad_token").float()
    attn = loaded.pipe.transformer.layers[1].attention
    assert torch.equal(torch.cat([attn.to_q.weight, attn.to_k.weight, attn.to_v.weight]), qkv)
    assert torch.equal(loaded.pipe.transformer.x_pad_token.detach(), pad)


def test_fp8_files_load_with_the_compute_dtype_outside_the_blocks(tmp_path):
    w = write_tiny_models(tmp_path, families=("zimage",), zimage_weights="fp8")
    loaded = load_pipeline(w["zimage:diffusion_model"])
    assert "float8_e4m3fn" in loaded.extra["stored_dtypes"]["diffusion_model"]
    # the block linears stay fp8 (tests/families/test_fp8_store.py); what the pipeline reads is the compute dtype
    assert loaded.pipe.transformer.dtype == torch.float32 and loaded.pipe.text_encoder.dtype == torch.float32
    image = loaded.pipe(prompt="a cat", num_inference_steps=1, guidance_scale=0, height=32, width=32).images[0]
    assert image.size == (32, 32)


def test_explicit_parts_override_and_wrong_parts_are_named(zfiles, tmp_path):
    other_te = tmp_path / "elsewhere.safetensors"
    shutil.copy(zfiles["te"], other_te)
    loaded = load_pipeline(zfiles["dm"], parts={"text_encoder": other_te})
    assert loaded.extra["parts"]["text_encoder"] == str(other_te)
    with pytest.raises(CheckpointLoadError, match="FLUX VAE"):
        load_pipeline(zfiles["dm"], parts={"text_encoder": zfiles["te"], "vae": zfiles["sd_vae"]})
    with pytest.raises(CheckpointLoadError, match="not a Qwen3 text encoder"):
        load_pipeline(zfiles["dm"], parts={"text_encoder": zfiles["vae"], "vae": zfiles["vae"]})


def test_missing_part_error_names_the_file_kind_and_folder(zfiles, tmp_path):
    models = tmp_path / "models"
    (models / "diffusion_models").mkdir(parents=True)
    dm = models / "diffusion_models" / "z.safetensors"
    shutil.copy(zfiles["dm"], dm)
    (models / "VAE").mkdir()
    shutil.copy(zfiles["vae"], models / "VAE" / "ae.safetensors")
    with pytest.raises(MissingPartError) as err:
        load_pipeline(dm)
    msg = str(err.value)
    assert "text encoder" in msg and "qwen_3_4b.safetensors" in msg and str(models / "text_encoders") in msg
    modules = list_modules([zfiles["te"].parent], [])
    with pytest.raises(MissingPartError) as err:
        resolve_parts("zimage", {"cap_feat_dim": 32}, modules, dirs={"vae": [models / "VAE"]})
    assert "VAE file" in str(err.value) and "ae.safetensors" in str(err.value) and str(models / "VAE") in str(err.value)


def test_catalog_lists_diffusion_models_and_modules(zdir, zfiles):
    catalog = Catalog(Paths.from_data_dir(zdir), no_hashing=True)
    names = [c.name for c in catalog.checkpoints()]
    assert "z_image_turbo_bf16.safetensors" in names and "tiny-sd1.safetensors" in names
    info = catalog.find_checkpoint("z_image_turbo_bf16")
    assert info is not None and info.as_api()["filename"] == str(zfiles["dm"])
    assert [(m.name, m.role) for m in catalog.modules()] == [
        ("ae.safetensors", "vae"), ("qwen_3_4b.safetensors", "text_encoder"), ("tiny.vae.safetensors", "vae")]
    assert "ae.safetensors" not in catalog.vae_choices()  # the FLUX VAE is never offered for SD checkpoints
    assert "tiny.vae.safetensors" in catalog.vae_choices()
    assert catalog.model_parts(info) == {"text_encoder": zfiles["te"], "vae": zfiles["vae"]}
    assert catalog.model_parts(catalog.find_checkpoint("tiny-sd1")) is None
    # a chosen module that does not fit (an SD VAE) is skipped; a fitting one (by path) is used
    assert catalog.model_parts(info, [str(zfiles["sd_vae"]), str(zfiles["te"])])["vae"] == zfiles["vae"]


def test_catalog_scans_comfyui_alias_folders_and_flags(zfiles, tmp_path):
    models = tmp_path / "models"
    for sub, key in (("unet", "dm"), ("clip", "te"), ("vae", "vae")):
        (models / sub).mkdir(parents=True)
        shutil.copy(zfiles[key], models / sub / zfiles[key].name)
    catalog = Catalog(Paths.from_data_dir(tmp_path), no_hashing=True)
    info = catalog.find_checkpoint("z_image_turbo_bf16.safetensors")
    assert info is not None
    parts = catalog.model_parts(info)
    assert parts == {"text_encoder": models / "clip" / "qwen_3_4b.safetensors", "vae": models / "vae" / "ae.safetensors"}


def test_paths_flags_add_folders():
    from app.cli import parse_args
    from app.paths import paths_from_args

    p = paths_from_args(parse_args(["--data-dir", "/tmp/d", "--unet-dir", "/tmp/u", "--text-encoders-dir", "/tmp/t"]))
    assert p.diffusion_model_dirs == (Path("/tmp/d/models/diffusion_models"), Path("/tmp/d/models/unet"), Path("/tmp/u"))
    assert p.text_encoder_dirs == (Path("/tmp/d/models/text_encoders"), Path("/tmp/d/models/clip"), Path("/tmp/t"))
    created = p.all_model_dirs()
    assert Path("/tmp/d/models/diffusion_models") in created and Path("/tmp/d/models/unet") not in created


def test_diffusers_zimage_folder_loads(zfiles, tmp_path):
    loaded = load_pipeline(zfiles["dm"])
    folder = tmp_path / "models" / "Stable-diffusion" / "zimage"
    loaded.pipe.save_pretrained(folder)
    again = load_pipeline(folder)
    assert (again.family, again.prediction_type, again.scheduler_config["atelier_flow_timestep"]) == (
        "zimage", "flow", "1-sigma")
    assert Catalog(Paths.from_data_dir(tmp_path), no_hashing=True).find_checkpoint("zimage") is not None


def test_download_knows_the_zimage_files_and_their_folders(tmp_path, capsys):
    from app.devtools.download import BUNDLES, build_parser, main

    assert build_parser().parse_args(["zimage"]).model == "zimage"
    table = {d.filename: (d.folder, d.url) for d in BUNDLES["zimage"]}
    base = "https://huggingface.co/Comfy-Org/z_image_turbo/resolve/main/split_files/"
    assert table == {
        "z_image_turbo_bf16.safetensors": ("diffusion_models", base + "diffusion_models/z_image_turbo_bf16.safetensors"),
        "qwen_3_4b.safetensors": ("text_encoders", base + "text_encoders/qwen_3_4b.safetensors"),
        "ae.safetensors": ("VAE", base + "vae/ae.safetensors"),
    }
    src = tmp_path / "src.bin"  # a local file:// URL: no network in tests
    src.write_bytes(b"x" * 100)
    assert main(["zimage", "--data-dir", str(tmp_path / "d"), "--url", src.as_uri()]) == 0
    models = tmp_path / "d" / "models"
    assert {p.relative_to(models).as_posix() for p in models.rglob("*.safetensors")} == {
        "diffusion_models/z_image_turbo_bf16.safetensors", "text_encoders/qwen_3_4b.safetensors", "VAE/ae.safetensors"}
    assert "not verified" in capsys.readouterr().err
