"""The server's torch-free CLIP tokenizer (app/prompts/clip_counter.py) gives the ids of the encoder's transformers
CLIPTokenizer, so the UI's token counter and chunking agree with what the model is fed."""

from __future__ import annotations

import random

import pytest

from app.prompts.chunks import token_count
from app.prompts.clip_counter import clip_counter_tokenizer
from app.prompts.tokenizer import clip_tokenizer, tokenize

PROMPTS = [
    "a photo of a cat, (masterpiece:1.2), best quality",
    "  Several   SPACES\tand\ttabs\nnewlines  ",
    "don't you'll we've I'm they'd it's",
    "café naïve résumé Ωmega straße ǅ",
    "emoji 🐱🔥 and symbols ™ © ½ → ∞",
    "日本語のプロンプト、猫耳、東京",
    "numbers 12345 3.14 1e-5 0x1F 2024-01-01",
    "<lora:foo_bar-v2:0.8> embedding:EasyNegative [a:b:0.5] {x|y} AND BREAK",
    "punctuation!!! ??? ... ,,,,,;;;:::''\"\"",
    "<|startoftext|>special<|endoftext|> tokens",
    "&amp; &lt;html&gt; escapes &quot;",
    "",
]


def _random_prompt(rng: random.Random) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFG,.()[]:!?'0123456789éüß漢字😀-_/\\\t\n"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 120)))


@pytest.mark.parametrize("text", PROMPTS)
def test_same_ids_as_the_encoders_tokenizer(text: str) -> None:
    assert tokenize(text, clip_counter_tokenizer()) == tokenize(text, clip_tokenizer())


def test_same_ids_on_random_text() -> None:
    rng = random.Random(17)
    for _ in range(300):
        text = _random_prompt(rng)
        assert tokenize(text, clip_counter_tokenizer()) == tokenize(text, clip_tokenizer()), repr(text)


def test_same_counts_and_special_tokens() -> None:
    long = ", ".join(f"tag{i}" for i in range(60)) + " BREAK (detail:1.3) [from:to:0.4]"
    assert token_count(long, clip_counter_tokenizer()) == token_count(long, clip_tokenizer())
    ids = clip_counter_tokenizer()("a cat", add_special_tokens=True).input_ids
    assert ids[0] == 49406 and ids[-1] == 49407 and ids[1:-1] == tokenize("a cat", clip_tokenizer())
