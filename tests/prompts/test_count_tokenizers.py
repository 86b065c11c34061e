"""The server's torch-free tokenizers (app/prompts/count_tokenizers.py) give the ids of the encoders' transformers
tokenizers (CLIP; Qwen3 for Z-Image), so the UI's token counters and chunking agree with what the model is fed."""

from __future__ import annotations

import random

import pytest

from app.prompts.chunks import token_count
from app.prompts.count_tokenizers import clip_counter_tokenizer, qwen_counter_tokenizer
from app.prompts.qwen_tokenizer import qwen3_tokenizer
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


def test_qwen_counter_gives_the_encoders_ids() -> None:
    reference = qwen3_tokenizer()
    rng = random.Random(3)
    texts = [*PROMPTS, "<|im_start|>user\na cat<|im_end|>\n<think>\n\n</think>", "line one\r\n\nline  two   "]
    texts += [_random_prompt(rng) for _ in range(200)]
    for text in texts:
        assert qwen_counter_tokenizer()(text).input_ids == list(reference(text)["input_ids"]), repr(text)
