"""PromptEncoder on tiny CLIP models: emphasis modes, clip skip, SD2/SDXL layouts, embeddings, padding, cache."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from app.devtools.tiny_configs import tiny_text_encoder_config
from app.models.embedding_files import Embedding
from app.prompts.encode import Conditioning, PromptEncoder, apply_emphasis, clip_skip_layer
from app.prompts.tokenizer import BOS_ID, EOS_ID, tokenize

try:
    from app.prompts.syntax import parse_prompt_attention as PARSE
except ImportError:  # syntax module not landed yet: the small stand-in from test_chunks
    from tests.prompts.test_chunks import PARSE


def _te(family: str, which: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    cfg = {k: v for k, v in tiny_text_encoder_config(family, which).items() if k != "architectures"}
    cls = CLIPTextModelWithProjection if which == 2 else CLIPTextModel
    model = cls(CLIPTextConfig(**cfg)).eval()
    with torch.no_grad():  # trained CLIPs have non-trivial LayerNorm affine params (non-zero feature means)
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.normal_(1.0, 0.2)
                module.bias.normal_(0.3, 0.5)
    return model


@pytest.fixture(scope="module")
def sd1():
    return _te("sd1")


@pytest.fixture(scope="module")
def sd2():
    return _te("sd2v", seed=1)


@pytest.fixture(scope="module")
def sdxl():
    return _te("sdxl", 1, seed=2), _te("sdxl", 2, seed=3)


def enc(models, family, **kw):
    models = list(models) if isinstance(models, tuple) else [models]
    return PromptEncoder(models, None, family, parse=PARSE, **kw)


def ids_for(text: str, pad: int = EOS_ID) -> torch.Tensor:
    toks = tokenize(text)
    row = [BOS_ID] + toks + [EOS_ID] + [pad] * (75 - len(toks))
    return torch.tensor([row])


# ---- emphasis ------------------------------------------------------------------------------------


def test_weight_one_is_bit_exact(sd1):
    e = enc(sd1, "sd1")
    assert torch.equal(e.encode(["a (cat:1.0)"]).cond, e.encode(["a cat"]).cond)


def test_plain_prompt_equals_direct_clip(sd1):
    cond = enc(sd1, "sd1").encode(["a photo of a cat"]).cond
    with torch.no_grad():
        ref = sd1(input_ids=ids_for("a photo of a cat")).last_hidden_state
    assert cond.shape == (1, 77, 32) and torch.equal(cond, ref)


def test_emphasis_modes(sd1):
    e = enc(sd1, "sd1")
    plain = e.encode(["a cat"]).cond
    orig = e.encode(["a (cat:1.5)"], emphasis="Original").cond
    nonorm = e.encode(["a (cat:1.5)"], emphasis="No norm").cond
    ignore = e.encode(["a (cat:1.5)"], emphasis="Ignore").cond
    none = e.encode(["a (cat:1.5)"], emphasis="None").cond
    assert not torch.equal(orig, plain) and not torch.equal(nonorm, plain)
    assert torch.allclose(orig.mean(), plain.mean(), atol=1e-6)  # Original restores the mean
    assert not torch.allclose(nonorm.mean(), plain.mean(), atol=1e-6)
    assert torch.allclose(nonorm[0, 2], plain[0, 2] * 1.5) and torch.equal(nonorm[0, 1], plain[0, 1])
    scale = plain.mean() / nonorm.mean()
    assert torch.allclose(orig, nonorm * scale, atol=1e-6)
    assert torch.equal(ignore, plain)
    assert none.shape == plain.shape and not torch.allclose(none, plain)  # brackets become tokens


def test_emphasis_none_tokens_literal(sd1):
    e = enc(sd1, "sd1")
    with torch.no_grad():
        ref = sd1(input_ids=ids_for("(a cat)")).last_hidden_state
    assert torch.equal(e.encode(["(a cat)"], emphasis="None").cond, ref)


def test_apply_emphasis_unit():
    z = torch.arange(1.0, 7.0).reshape(1, 3, 2)
    m = torch.tensor([[1.0, 2.0, 1.0]])
    assert torch.equal(apply_emphasis(z, m, "No norm"), torch.tensor([[[1.0, 2], [6, 8], [5, 6]]]))
    out = apply_emphasis(z, m, "Original")
    assert torch.allclose(out.mean(), z.mean())
    assert torch.equal(apply_emphasis(z, m, "Ignore"), z)
    with pytest.raises(ValueError, match="emphasis"):
        apply_emphasis(z, m, "Shout")


# ---- clip skip -----------------------------------------------------------------------------------


def test_clip_skip_sd1(sd1):
    e = enc(sd1, "sd1")
    one, two = e.encode(["a cat"], clip_skip=1).cond, e.encode(["a cat"], clip_skip=2).cond
    assert not torch.allclose(one, two)
    with torch.no_grad():
        out = sd1(input_ids=ids_for("a cat"), output_hidden_states=True)
        ref = sd1.final_layer_norm(out.hidden_states[-2])
    assert torch.equal(two, ref)
    # larger than the model depth is clamped (tiny model: 3 layers)
    assert e.encode(["a cat"], clip_skip=12).cond.shape == (1, 77, 32)


def test_clip_skip_layer_modes():
    hs = tuple(torch.full((1, 2, 2), float(i)) for i in range(4))
    out = SimpleNamespace(hidden_states=hs, last_hidden_state=torch.full((1, 2, 2), 9.0))
    norm = lambda x: x + 100  # noqa: E731
    assert clip_skip_layer(out, norm, 1, "sd1")[0, 0, 0] == 9
    assert clip_skip_layer(out, norm, 2, "sd1")[0, 0, 0] == 102
    assert clip_skip_layer(out, norm, 3, "sd1")[0, 0, 0] == 101
    assert clip_skip_layer(out, norm, 2, "last")[0, 0, 0] == 9
    assert clip_skip_layer(out, norm, 1, "sdxl_l")[0, 0, 0] == 2
    assert clip_skip_layer(out, norm, 5, "sdxl_g")[0, 0, 0] == 2
    assert clip_skip_layer(out, norm, 1, "sdxl_l", sdxl_clip_l_skip=True)[0, 0, 0] == 3
    assert clip_skip_layer(out, norm, 3, "sdxl_l", sdxl_clip_l_skip=True)[0, 0, 0] == 1


def test_sd2_pads_with_zero_and_ignores_clip_skip(sd2):
    e = enc(sd2, "sd2v")
    cond = e.encode(["a cat"]).cond
    with torch.no_grad():
        ref = sd2(input_ids=ids_for("a cat", pad=0)).last_hidden_state
    assert torch.equal(cond, ref)
    assert torch.equal(e.encode(["a cat"], clip_skip=2).cond, cond)


# ---- SDXL ----------------------------------------------------------------------------------------


def test_sdxl_shapes_and_reference(sdxl):
    te1, te2 = sdxl
    c = enc(sdxl, "sdxl").encode(["a photo of a cat"])
    assert c.cond.shape == (1, 77, 96) and c.pooled.shape == (1, 32)
    with torch.no_grad():
        o1 = te1(input_ids=ids_for("a photo of a cat"), output_hidden_states=True)
        o2 = te2(input_ids=ids_for("a photo of a cat", pad=0), output_hidden_states=True)
    assert torch.equal(c.cond, torch.cat([o1.hidden_states[-2], o2.hidden_states[-2]], dim=-1))
    assert torch.equal(c.pooled, o2.text_embeds)


def test_sdxl_long_prompt_pooled_from_first_chunk(sdxl):
    e = enc(sdxl, "sdxl")
    long = e.encode(["a photo of a cat BREAK a dog"])
    first = e.encode(["a photo of a cat"])
    assert long.cond.shape == (1, 154, 96) and long.chunks == 2
    assert torch.equal(long.pooled, first.pooled)
    assert torch.equal(long.cond[:, :77], first.cond)


def test_sdxl_clip_skip_only_with_option(sdxl):
    e = enc(sdxl, "sdxl")
    base = e.encode(["a cat"]).cond
    assert torch.equal(e.encode(["a cat"], clip_skip=2).cond, base)
    skipped = e.encode(["a cat"], clip_skip=1, sdxl_clip_l_skip=True).cond
    assert not torch.equal(skipped[..., :32], base[..., :32]) and torch.equal(skipped[..., 32:], base[..., 32:])


def test_sdxl_empty_negative_is_zero(sdxl):
    e = enc(sdxl, "sdxl")
    cond, uncond = e.encode_pair(["a cat"], [""])
    assert torch.count_nonzero(uncond.cond) == 0 and torch.count_nonzero(uncond.pooled) == 0
    assert torch.count_nonzero(e.encode([""]).cond) > 0  # only negatives are zeroed


# ---- batches and cond/uncond padding -------------------------------------------------------------


def test_batch_evened_out_with_empty_chunks(sd1):
    e = enc(sd1, "sd1")
    c = e.encode(["a cat BREAK a dog", "a bird"])
    assert c.cond.shape == (2, 154, 32) and c.token_counts == [77, 2]
    empty = e.encode([""]).cond
    # the second prompt's second chunk is the empty chunk; emphasis mean restore is a no-op with weights 1
    assert torch.allclose(c.cond[1:, 77:], empty, atol=1e-6)


@pytest.mark.parametrize("pad", ["repeat_last", "empty", "none"])
def test_encode_pair_padding(sd1, pad):
    e = enc(sd1, "sd1")
    cond, uncond = e.encode_pair(["cat " * 80], ["ugly"], pad=pad)
    assert cond.cond.shape == (1, 154, 32)
    if pad == "none":
        assert uncond.cond.shape == (1, 77, 32)
        return
    assert uncond.cond.shape == (1, 154, 32)
    short = e.encode(["ugly"], is_negative=True).cond
    assert torch.equal(uncond.cond[:, :77], short)
    if pad == "repeat_last":
        assert torch.equal(uncond.cond[:, 77:], short[:, -1:].expand(1, 77, 32))
    else:
        assert torch.equal(uncond.cond[:, 77:], e.encode([""]).cond)


def test_bad_pad_and_family(sd1):
    with pytest.raises(ValueError, match="pad mode"):
        enc(sd1, "sd1").encode_pair(["a"], ["b"], pad="zeros")
    with pytest.raises(ValueError, match="family"):
        PromptEncoder([sd1], None, "flux")
    with pytest.raises(ValueError, match="2 text encoder"):
        PromptEncoder([sd1], None, "sdxl")


# ---- embeddings ----------------------------------------------------------------------------------


def test_embedding_vectors_substituted(sd1):
    vec = torch.randn(3, 32, generator=torch.Generator().manual_seed(5))
    emb = Embedding("mystyle", vec)
    e = enc(sd1, "sd1", embeddings={"mystyle": emb})
    with_emb = e.encode(["a mystyle cat"])
    assert with_emb.used_embeddings == {"mystyle": emb} and with_emb.token_counts == [5]
    assert not torch.equal(with_emb.cond, enc(sd1, "sd1").encode(["a mystyle cat"]).cond)
    # reference: put the vectors into three spare rows of a copy of the token table
    ref_model = _te("sd1")
    spare = [40000, 40001, 40002]
    with torch.no_grad():
        ref_model.get_input_embeddings().weight[spare] = vec
        row = [BOS_ID, 320, *spare, 2368] + [EOS_ID] * 71
        ref = ref_model(input_ids=torch.tensor([row])).last_hidden_state
    assert torch.allclose(with_emb.cond, ref, atol=1e-6)


def test_embedding_weight_applies(sd1):
    emb = Embedding("mystyle", torch.randn(2, 32))
    e = enc(sd1, "sd1", embeddings={"mystyle": emb})
    plain = e.encode(["mystyle"], emphasis="No norm").cond
    weighted = e.encode(["(mystyle:2.0)"], emphasis="No norm").cond
    assert torch.allclose(weighted[0, 1:3], plain[0, 1:3] * 2) and torch.equal(weighted[0, 3], plain[0, 3])


def test_sdxl_embedding_parts(sdxl):
    emb = Embedding("xlstyle", {"clip_l": torch.randn(2, 32), "clip_g": torch.randn(2, 64)})
    e = enc(sdxl, "sdxl", embeddings={"xlstyle": emb})
    c = e.encode(["a xlstyle"])
    assert c.cond.shape == (1, 77, 96) and c.token_counts == [3] and "xlstyle" in c.used_embeddings
    assert not torch.equal(c.cond, enc(sdxl, "sdxl").encode(["a xlstyle"]).cond)


def test_token_count_with_embeddings(sd1):
    e = enc(sd1, "sd1", embeddings={"mystyle": Embedding("mystyle", torch.randn(4, 32))})
    assert e.token_count("a mystyle") == (5, 75)


# ---- cache, device/dtype, from_pipe --------------------------------------------------------------


class _Db:
    def __init__(self, embs):
        self.embeddings, self.version = embs, 1


def test_cache_hits_skip_the_text_encoder(sd1):
    calls = []
    handle = sd1.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        db = _Db({})
        e = enc(sd1, "sd1", embeddings=db)
        first = e.encode(["a cat"])
        assert len(calls) == 1
        assert e.encode(["a cat"]) is first and len(calls) == 1
        e.encode(["a cat"], clip_skip=2)
        e.encode(["a cat"], emphasis="No norm")
        assert len(calls) == 3
        db.version = 2  # embeddings reloaded → re-encode
        e.encode(["a cat"])
        assert len(calls) == 4
        e.state_key = "lora:x"  # text-encoder weights changed
        e.encode(["a cat"])
        assert len(calls) == 5
    finally:
        handle.remove()


def test_cache_is_bounded(sd1):
    e = enc(sd1, "sd1", cache_size=2)
    for t in ("a", "b", "c"):
        e.encode([t])
    assert len(e._cache) == 2


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_output_follows_encoder_dtype(dtype):
    te = _te("sd1").to(dtype)
    e = enc(te, "sd1", embeddings={"mystyle": Embedding("mystyle", torch.randn(2, 32))})
    c = e.encode(["a (cat:1.2) mystyle"])
    assert c.cond.dtype == dtype and torch.isfinite(c.cond.float()).all()


def test_from_pipe(sd1, sdxl):
    pipe = SimpleNamespace(text_encoder=sdxl[0], text_encoder_2=sdxl[1], tokenizer=None)
    e = PromptEncoder.from_pipe(pipe, "sdxl-inpaint", parse=PARSE)
    assert e.encode(["a"]).cond.shape == (1, 77, 96)
    assert isinstance(
        PromptEncoder.from_pipe(SimpleNamespace(text_encoder=sd1), "sd1", parse=PARSE).encode(["a"]), Conditioning
    )


# ---- end to end on the tiny checkpoints (real loader, real embedding files) ----------------------


@pytest.mark.slow
@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_tiny_checkpoint_matches_diffusers_and_uses_embeddings(tiny_data_dir, family):
    from app.models.embedding_files import ti_hashes
    from app.models.embeddings import EmbeddingDatabase
    from app.models.load.loader import load_pipeline

    loaded = load_pipeline(tiny_data_dir / "models" / "Stable-diffusion" / f"tiny-{family}.safetensors")
    db = EmbeddingDatabase([tiny_data_dir / "embeddings"])
    e = PromptEncoder.from_pipe(loaded.pipe, loaded.family, db, parse=PARSE)
    db.set_model(e.embedding_dims())
    pipe = loaded.pipe
    c = e.encode(["a photo of a cat"])
    with torch.no_grad():
        if family == "sd1":
            assert sorted(db.embeddings) == ["tiny-emb", "tiny-emb2"] and db.skipped == {}
            ref, _ = pipe.encode_prompt("a photo of a cat", "cpu", 1, False)
            assert torch.allclose(c.cond, ref, atol=1e-6)
            # A1111 clip skip 2 == diffusers clip_skip=1 (its own code path needs te.text_model, gone in transformers 5)
            out = pipe.text_encoder(ids_for("a photo of a cat"), output_hidden_states=True)
            ref_skip = pipe.text_encoder.final_layer_norm(out.hidden_states[-2])
            assert torch.allclose(e.encode(["a photo of a cat"], clip_skip=2).cond, ref_skip, atol=1e-6)
        else:
            assert db.embeddings == {} and sorted(db.skipped) == ["tiny-emb", "tiny-emb2"]  # SD1-width files
            ref, _, pooled, _ = pipe.encode_prompt("a photo of a cat", device="cpu", do_classifier_free_guidance=False)
            assert torch.allclose(c.cond, ref, atol=1e-6) and torch.allclose(c.pooled, pooled, atol=1e-6)
    if family == "sd1":
        used = e.encode(["a tiny-emb cat, tiny-emb2"])
        assert list(used.used_embeddings) == ["tiny-emb", "tiny-emb2"] and used.token_counts == [2 + 2 + 1 + 3]
        assert not torch.equal(used.cond, e.encode(["a cat"]).cond)
        assert ti_hashes(used.used_embeddings.values()).startswith("tiny-emb: ")


# ---- optional compel syntax ----------------------------------------------------------------------


def test_compel_route_sd1(sd1):
    from app.prompts.compel_syntax import CompelPromptEncoder

    ce, a1111 = CompelPromptEncoder([sd1], None, "sd1"), enc(sd1, "sd1")
    plain = ce.encode(["a photo of a cat"])
    assert torch.allclose(plain.cond, a1111.encode(["a photo of a cat"]).cond, atol=1e-6) and plain.pooled is None
    assert torch.allclose(ce.encode(["a cat"], clip_skip=2).cond, a1111.encode(["a cat"], clip_skip=2).cond, atol=1e-6)
    assert not torch.allclose(ce.encode(["a cat++"]).cond, ce.encode(["a cat"]).cond)
    cond, uncond = ce.encode_pair(["cat " * 80], ["ugly"])
    assert cond.cond.shape == uncond.cond.shape == (1, 154, 32)


def test_compel_route_sdxl(sdxl):
    from app.prompts.compel_syntax import CompelPromptEncoder

    ce = CompelPromptEncoder(list(sdxl), None, "sdxl")
    c = ce.encode(["a photo of a cat", "a (dog)1.3"])
    ref = enc(sdxl, "sdxl").encode(["a photo of a cat"])
    assert c.cond.shape == (2, 77, 96) and c.pooled.shape == (2, 32)
    assert torch.allclose(c.cond[:1], ref.cond, atol=1e-6) and torch.allclose(c.pooled[:1], ref.pooled, atol=1e-6)


@pytest.mark.slow
def test_cache_sees_lora_on_the_text_encoder(tiny_data_dir):
    from app.models.load.loader import load_pipeline

    pipe = load_pipeline(tiny_data_dir / "models" / "Stable-diffusion" / "tiny-sd1.safetensors").pipe
    e = PromptEncoder.from_pipe(pipe, "sd1", parse=PARSE)
    base = e.encode(["a cat"]).cond
    pipe.load_lora_weights(str(tiny_data_dir / "models" / "Lora" / "tiny-lora.safetensors"), adapter_name="tiny")
    pipe.set_adapters(["tiny"], adapter_weights=[1.0])
    with_lora = e.encode(["a cat"]).cond
    assert not torch.equal(with_lora, base)  # not served from the cache
    pipe.set_adapters(["tiny"], adapter_weights=[0.0])
    assert torch.allclose(e.encode(["a cat"]).cond, base, atol=1e-6)
    pipe.unload_lora_weights()
    assert torch.equal(e.encode(["a cat"]).cond, base)


def test_encodes_under_sequential_cpu_offload():
    """``--lowvram`` keeps the text encoder's weights on ``meta`` between calls (accelerate hooks load
    them per forward): the encoder must send the ids to the hook's execution device, not to ``meta``.
    (On the GPU this failed with "Cannot copy out of meta tensor".)"""
    from accelerate import cpu_offload

    plain = enc(_te("sd1", seed=7), "sd1").encode(["a (red:1.2) cat"]).cond
    model = _te("sd1", seed=7)
    cpu_offload(model, execution_device=torch.device("cpu"))
    assert next(model.parameters()).device.type == "meta"
    offloaded = enc(model, "sd1").encode(["a (red:1.2) cat"]).cond
    assert torch.equal(offloaded, plain)
