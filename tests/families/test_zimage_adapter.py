"""The Z-Image family adapter against diffusers' own ZImagePipeline on the same tiny models: prompt encoding
(chat template, second-to-last hidden state, unpadded), the denoiser wrapper, and the A1111 syntax handling."""

from __future__ import annotations

import pytest
import torch

from app.families import family_for_id, family_of
from app.families.zimage import plain_text
from app.families.zimage_nets import ChatPromptEncoder, ZImageDenoiser
from tests.families.zimage_tiny import tiny_zimage_pipe


@pytest.fixture(scope="module")
def pipe():
    return tiny_zimage_pipe()


def test_registry_maps_loaded_ids():
    assert family_for_id("sd1-inpaint").id == "sd1"
    assert family_for_id("sd2v").id == "sd2"
    assert family_for_id("sdxl").id == "sdxl"
    z = family_for_id("zimage")
    assert (z.latent.channels, z.latent.multiple, z.defaults.steps, z.defaults.cfg_scale) == (16, 16, 8, 1.0)
    assert not z.prompt_weights and not z.textual_inversion


def test_encoder_matches_pipeline(pipe):
    enc = ChatPromptEncoder(pipe.text_encoder, pipe.tokenizer)
    texts = ["a photo of a cat", "", "a much longer prompt about a red bicycle leaning on a wall"]
    ours = enc.encode(texts)
    with torch.no_grad():
        ref = pipe._encode_prompt(list(texts), device=torch.device("cpu"), max_sequence_length=512)
    assert len(ours.cond) == 3
    for mine, theirs in zip(ours.cond, ref, strict=True):
        assert mine.shape == theirs.shape
        torch.testing.assert_close(mine, theirs.float(), rtol=1e-5, atol=1e-5)
    assert ours.pooled is None and not ours.weights_ignored


def test_encoder_cache_and_weights_note(pipe):
    enc = ChatPromptEncoder(pipe.text_encoder, pipe.tokenizer)
    first = enc.encode(["a (red:1.3) cat"])
    assert first.weights_ignored
    plain = enc.encode(["a red cat"])
    assert torch.equal(first.cond[0], plain.cond[0])  # the weights were dropped, the words kept
    assert enc.encode(["a (red:1.3) cat"]).cond[0] is first.cond[0]  # cached


@pytest.mark.parametrize(
    ("prompt", "text", "dropped"),
    [
        ("a cat", "a cat", False),
        ("a (cat:1.2)", "a cat", True),
        ("a [cat]", "a cat", True),
        ("masterpiece BREAK a cat", "masterpiece a cat", False),
        (r"a \(literal\) bracket", "a (literal) bracket", False),
        ("line one\nline two", "line one\nline two", False),
    ],
)
def test_plain_text(prompt, text, dropped):
    assert plain_text(prompt) == (text, dropped)


def test_denoiser_wrapper_matches_transformer(pipe):
    family = family_of(type("L", (), {"family": "zimage"})())
    net = family.denoiser(pipe)
    assert isinstance(net, ZImageDenoiser) and net is family.denoiser(pipe)  # built once per pipe
    torch.manual_seed(1)
    x = torch.randn(2, 16, 4, 6)
    caps = [torch.randn(5, 32), torch.randn(9, 32)]
    t = torch.tensor(0.25)
    out = net(x, t, encoder_hidden_states=caps, return_dict=False)[0]
    with torch.no_grad():
        ref = pipe.transformer(list(x.unsqueeze(2).unbind(0)), t.expand(2), caps, return_dict=False)[0]
    assert out.shape == (2, 16, 4, 6)
    torch.testing.assert_close(out, torch.stack(ref).squeeze(2).float())
