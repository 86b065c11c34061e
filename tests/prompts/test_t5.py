"""The shared T5 pieces: the offline tokenizer, the encoder loader (key layouts, prefixes, dtypes, errors) and
Forge-style emphasis on T5 hidden states."""

from __future__ import annotations

import pytest
import torch

from app.devtools.tiny_t5 import tiny_t5_config, tiny_t5_encoder, tiny_t5_file_tensors
from app.models.load.checkpoint_io import CheckpointLoadError
from app.models.load.t5_load import build_t5_encoder, infer_t5_config, is_t5_encoder, load_t5_file, t5_state_dict
from app.prompts.t5_encode import T5PromptEncoder, weighted_tokens
from app.prompts.t5_tokenizer import EOS_ID, PAD_ID, T5_VOCAB_SIZE, check_vocab, t5_tokenizer


def test_tokenizer_ids_match_t5():
    tok = t5_tokenizer()
    assert len(tok) == T5_VOCAB_SIZE
    # Google's T5 vocabulary: "▁the" = 8, "." = 5, "▁" = 3, "a" = 9, "</s>" = 1
    assert tok("the.")["input_ids"] == [8, 5, EOS_ID]
    assert tok("a photo of a cat")["input_ids"] == [3, 9, 1202, 13, 3, 9, 1712, EOS_ID]
    assert tok.convert_tokens_to_ids("<extra_id_0>") == 32099
    assert tok.decode(tok("a photo of a cat")["input_ids"], skip_special_tokens=True) == "a photo of a cat"
    # normalizer: runs of spaces collapse (SentencePiece's behaviour)
    assert tok("a   cat")["input_ids"] == tok("a cat")["input_ids"]


def test_check_vocab_refuses_small_tables():
    check_vocab(32128)
    with pytest.raises(ValueError, match="32100"):
        check_vocab(1000, "x.safetensors")


def test_weighted_tokens_padding_and_weights():
    tok = t5_tokenizer()
    ids, weights, count = weighted_tokens(tok, "a (cat:1.5) BREAK dog")
    assert len(ids) == len(weights) == 256
    assert ids[count] == EOS_ID and ids[count + 1] == PAD_ID
    cat = tok("cat", add_special_tokens=False)["input_ids"]
    assert 1.5 in weights and weights.count(1.5) == len(cat)
    plain, _, _ = weighted_tokens(tok, "a photo of a cat")
    assert plain == tok("a photo of a cat", padding="max_length", max_length=256)["input_ids"]
    long_ids, _, long_count = weighted_tokens(tok, " ".join(["cat"] * 300))
    assert len(long_ids) == 512 and long_count == 300 and long_ids[300] == EOS_ID
    cut, _, cut_count = weighted_tokens(tok, " ".join(["cat"] * 600))
    assert len(cut) == 512 and cut_count == 511 and cut[-1] == EOS_ID


def test_infer_config_and_load(tmp_path):
    from safetensors.torch import save_file

    tensors = tiny_t5_file_tensors(seed=3)
    cfg = infer_t5_config({k: tuple(v.shape) for k, v in t5_state_dict(tensors).items()})
    want = tiny_t5_config()
    for key in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads", "feed_forward_proj"):
        assert cfg[key] == want[key], key
    path = tmp_path / "t5xxl_fp16.safetensors"
    save_file(tensors, str(path))
    model = load_t5_file(path, torch.float32)
    ref = tiny_t5_encoder(seed=3).to(torch.bfloat16).float()
    ids = torch.tensor([[3, 9, 1712, 1, 0, 0]])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids)[0], ref(input_ids=ids)[0])
    assert model.encoder.embed_tokens.weight.data_ptr() == model.shared.weight.data_ptr()


def test_prefixed_and_fp8_t5_loads():
    tensors = tiny_t5_file_tensors(seed=4)
    prefixed = {"text_encoders.t5xxl.transformer." + k: v.to(torch.float8_e4m3fn) if v.ndim >= 2 else v
                for k, v in tensors.items()}
    prefixed["model.diffusion_model.other.weight"] = torch.zeros(2)
    assert is_t5_encoder(prefixed)
    model = build_t5_encoder(prefixed, torch.float32, "aio.safetensors")
    assert model.shared.weight.dtype == torch.float32
    assert list(prefixed) == ["model.diffusion_model.other.weight"]  # T5 tensors taken out of the caller's dict


def test_bad_t5_files_get_clear_errors(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "not_t5.safetensors"
    save_file({"foo.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(CheckpointLoadError, match="not a T5 text encoder"):
        load_t5_file(path, torch.float32)
    broken = tiny_t5_file_tensors()
    del broken["encoder.block.1.layer.1.DenseReluDense.wo.weight"]
    with pytest.raises(CheckpointLoadError, match="missing"):
        build_t5_encoder(broken, torch.float32, "broken.safetensors")
    small = {k: v for k, v in tiny_t5_file_tensors().items()}
    small["shared.weight"] = small["shared.weight"][:500]
    with pytest.raises(CheckpointLoadError, match="500 rows"):
        build_t5_encoder(small, torch.float32, "small.safetensors")


def test_emphasis_multiplies_hidden_states_and_restores_mean():
    enc = tiny_t5_encoder(seed=5)
    tok = t5_tokenizer()
    encoder = T5PromptEncoder(enc, tok)
    plain, count = encoder.hidden_states("a photo of a cat")
    with torch.no_grad():
        ids = tok("a photo of a cat", padding="max_length", max_length=256, return_tensors="pt")["input_ids"]
        ref = enc(input_ids=ids)[0][0]
    assert count == 7 and torch.equal(plain, ref)  # no weights: exactly the diffusers pipelines' T5 conditioning
    weighted, _ = encoder.hidden_states("a photo of a (cat:1.5)")
    ids_w, weights, _ = weighted_tokens(tok, "a photo of a (cat:1.5)")
    with torch.no_grad():
        raw = enc(input_ids=torch.tensor([ids_w]))[0][0]
    mult = torch.tensor(weights).unsqueeze(-1)
    expected = raw * mult * (raw.mean() / (raw * mult).mean())
    assert torch.allclose(weighted, expected, atol=1e-6)
    assert torch.allclose(weighted.mean(), raw.mean(), atol=1e-6)
    no_norm, _ = encoder.hidden_states("a photo of a (cat:1.5)", emphasis="No norm")
    assert torch.allclose(no_norm, raw * mult, atol=1e-6)
    ignored, _ = encoder.hidden_states("a photo of a (cat:1.5)", emphasis="None")
    assert torch.equal(ignored, raw)
