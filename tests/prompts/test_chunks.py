"""Chunking into 75-token CLIP windows: spec §1.4 / §1.6 vectors as table tests."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.prompts.chunks import (
    EMBEDDING_PLACEHOLDER_ID,
    EmbeddingIndex,
    chunk_prompt,
    empty_chunk,
    parse_runs,
    target_token_count,
    token_count,
)
from app.prompts.tokenizer import BOS_ID, EOS_ID, clip_tokenizer, tokenize


def _fallback_parse(text: str) -> list[list]:
    """Tiny stand-in for app.prompts.syntax (only for the inputs used in this file)."""
    out: list[list] = []
    for i, part in enumerate(re.split(r"\s*\bBREAK\b\s*", text)):
        if i:
            out.append(["BREAK", -1])
        pos = 0
        for m in re.finditer(r"\(([^():]+):([\d.]+)\)|\(([^()]+)\)|\[([^\[\]]+)\]", part):
            if m.start() > pos:
                out.append([part[pos : m.start()], 1.0])
            if m.group(1) is not None:
                out.append([m.group(1), float(m.group(2))])
            elif m.group(3) is not None:
                out.append([m.group(3), 1.1])
            else:
                out.append([m.group(4), 1 / 1.1])
            pos = m.end()
        if pos < len(part) or not part:
            out.append([part[pos:], 1.0])
    return out


try:
    from app.prompts.syntax import parse_prompt_attention as PARSE
except ImportError:  # syntax.py not landed yet
    PARSE = _fallback_parse


def content_lengths(chunks) -> list[int]:
    return [sum(1 for t in c.tokens[1:-1] if t != EOS_ID) for c in chunks]


@dataclass
class Emb:
    name: str
    vectors: int


CHUNK_VECTORS = [
    # prompt, backtrack, chunks, token_count, counter, content per chunk   (spec §1.6 table)
    ("", 20, 1, 0, "0/75", [0]),
    ("a photo of a cat", 20, 1, 5, "5/75", [5]),
    ("cat " * 75, 20, 1, 75, "75/75", [75]),
    ("cat " * 76, 20, 2, 76, "76/150", [75, 1]),
    ("a BREAK b", 20, 2, 76, "76/150", [1, 1]),
    ("BREAK", 20, 1, 75, "75/75", [0]),
    ("cat " * 70 + ", " + "dog " * 10, 20, 2, 85, "85/150", [71, 10]),
    ("cat " * 70 + ", " + "dog " * 10, 0, 2, 81, "81/150", [75, 6]),
    ("cat " * 40 + ", " + "dog " * 40, 20, 2, 81, "81/150", [75, 6]),
]


@pytest.mark.parametrize("prompt,backtrack,n_chunks,count,counter,content", CHUNK_VECTORS)
def test_chunk_vectors(prompt, backtrack, n_chunks, count, counter, content):
    chunks, tokens = chunk_prompt(prompt, comma_padding_backtrack=backtrack, parse=PARSE)
    assert len(chunks) == n_chunks
    assert tokens == count
    assert f"{tokens}/{target_token_count(tokens)}" == counter
    assert content_lengths(chunks) == content
    for chunk in chunks:
        assert len(chunk.tokens) == 77 and len(chunk.multipliers) == 77
        assert chunk.tokens[0] == BOS_ID and chunk.tokens[-1] == EOS_ID
        assert chunk.multipliers[0] == 1.0 and chunk.multipliers[-1] == 1.0


def test_backtrack_first_chunk_ends_with_comma():
    chunks, _ = chunk_prompt("cat " * 70 + ", " + "dog " * 10, parse=PARSE)
    assert chunks[0].tokens[71] == 267  # the comma is the last content token
    assert chunks[0].tokens[72:] == [EOS_ID] * 5
    assert chunks[1].tokens[1:11] == [1929] * 10


def test_token_ids_of_a_photo_of_a_cat():
    chunks, _ = chunk_prompt("a photo of a cat", parse=PARSE)
    assert chunks[0].tokens[:7] == [BOS_ID, 320, 1125, 539, 320, 2368, EOS_ID]
    assert chunks[0].tokens[7:] == [EOS_ID] * 70


def test_weights_per_token():
    chunks, _ = chunk_prompt("(cat:1.5) dog [bird]", parse=PARSE)
    c = chunks[0]
    assert c.tokens[:5] == [BOS_ID, 2368, 1929, 3329, EOS_ID]
    assert c.multipliers[:4] == pytest.approx([1.0, 1.5, 1.0, 0.9091], abs=1e-4)
    assert all(m == 1.0 for m in c.multipliers[4:])


def test_emphasis_none_keeps_brackets_as_tokens():
    chunks, _ = chunk_prompt("(a cat)", emphasis="None", parse=PARSE)
    assert chunks[0].tokens[:6] == [BOS_ID, 263, 320, 2368, 264, EOS_ID]
    assert set(chunks[0].multipliers) == {1.0}


def test_emphasis_none_does_not_parse_break():
    assert parse_runs("a BREAK b", "None") == [["a BREAK b", 1.0]]


def test_unknown_emphasis_is_rejected():
    with pytest.raises(ValueError, match="emphasis"):
        parse_runs("x", "Loud")


def test_long_prompt_three_chunks():
    chunks, count = chunk_prompt("cat " * 160, parse=PARSE)
    assert len(chunks) == 3 and count == 160 and content_lengths(chunks) == [75, 75, 10]
    assert target_token_count(count) == 225


def test_openclip_tokenizer_gives_same_ids():
    a, _ = chunk_prompt("a photo of a cat", clip_tokenizer("!"), parse=PARSE)
    b, _ = chunk_prompt("a photo of a cat", parse=PARSE)
    assert a[0].tokens == b[0].tokens  # padding differences are applied by the encoder


def test_empty_chunk():
    c = empty_chunk()
    assert c.tokens == [BOS_ID] + [EOS_ID] * 76 and c.multipliers == [1.0] * 77


# --- embeddings in the token stream -------------------------------------------------------------


def test_embedding_replaced_by_placeholders_with_weight():
    emb = Emb("mystyle", 3)
    index = EmbeddingIndex.build({"mystyle": emb})
    chunks, count = chunk_prompt("a (mystyle:1.2) cat", embeddings=index, parse=PARSE)
    c = chunks[0]
    assert count == 1 + 3 + 1
    assert c.tokens[:7] == [BOS_ID, 320, 0, 0, 0, 2368, EOS_ID]
    assert c.multipliers[2:5] == [1.2, 1.2, 1.2]
    assert len(c.fixes) == 1 and c.fixes[0].offset == 2 and c.fixes[0].embedding is emb


def test_embedding_longest_match_wins():
    short, long = Emb("bad", 1), Emb("bad hands", 2)
    index = EmbeddingIndex.build({"bad": short, "bad hands": long})
    chunks, _ = chunk_prompt("bad hands, bad", embeddings=index, parse=PARSE)
    fixes = chunks[0].fixes
    assert [f.embedding.name for f in fixes] == ["bad hands", "bad"]
    assert chunks[0].tokens[1:6] == [0, 0, 267, 0, EOS_ID]


def test_embedding_name_matching_is_case_insensitive():
    index = EmbeddingIndex.build({"EasyNegative": Emb("EasyNegative", 2)})
    chunks, count = chunk_prompt("easynegative", embeddings=index, parse=PARSE)
    assert count == 2 and len(chunks[0].fixes) == 1


def test_embedding_never_straddles_chunks():
    emb = Emb("mystyle", 4)
    index = EmbeddingIndex.build({"mystyle": emb})
    chunks, count = chunk_prompt("cat " * 73 + "mystyle", embeddings=index, parse=PARSE)
    assert len(chunks) == 2
    assert content_lengths(chunks) == [73, 4]
    assert chunks[0].fixes == [] and chunks[1].fixes[0].offset == 1
    assert chunks[1].tokens[1:5] == [EMBEDDING_PLACEHOLDER_ID] * 4
    assert count == 75 + 4


def test_backtrack_moves_embedding_fix_along():
    emb = Emb("mystyle", 2)
    index = EmbeddingIndex.build({"mystyle": emb})
    chunks, _ = chunk_prompt("cat " * 70 + ", mystyle cat cat cat", embeddings=index, parse=PARSE)
    # chunk full at 75 (70 cats, comma, 2 slots, 2 cats); the third cat triggers the backtrack
    assert content_lengths(chunks) == [71, 5]
    assert chunks[0].fixes == []
    assert chunks[1].fixes[0].offset == 1 and chunks[1].tokens[1:3] == [0, 0]


def test_token_count_counts_embedding_vectors():
    index = EmbeddingIndex.build({"mystyle": Emb("mystyle", 5)})
    assert token_count("mystyle", embeddings=index, parse=PARSE) == (5, 75)


COUNTER_VECTORS = [
    ("", (0, 75)),
    ("a photo of a cat", (5, 75)),
    ("cat " * 76, (76, 150)),
]


@pytest.mark.parametrize("text,expected", COUNTER_VECTORS)
def test_token_counter(text, expected):
    assert token_count(text, parse=PARSE) == expected


# --- counter over AND parts, schedules and extra-network tags (needs the real syntax module) -------

COUNTER_SYNTAX_VECTORS = [
    # text, is_negative, expected (tokens, limit)
    ("a cat AND a dog dog dog", False, (4, 75)),
    ("a cat AND a dog dog dog", True, (7, 75)),  # the negative prompt is not split on AND
    ("[cat:cat cat cat cat:5]", False, (4, 75)),
    ("<lora:foo:0.8> cat", False, (1, 75)),
    ("[a|b b b]", False, (3, 75)),
]


@pytest.mark.parametrize("text,is_negative,expected", COUNTER_SYNTAX_VECTORS)
def test_token_counter_variants(text, is_negative, expected):
    pytest.importorskip("app.prompts.syntax")
    assert token_count(text, steps=20, is_negative=is_negative) == expected


# --- invariants on random prompts -------------------------------------------------------------------

_WORDS = st.sampled_from(["cat", "dog", "a", "photo", ",", "BREAK", "blue sky"])


@settings(max_examples=40, deadline=None)
@given(words=st.lists(_WORDS, max_size=200), backtrack=st.integers(0, 74))
def test_chunking_preserves_token_order(words, backtrack):
    text = " ".join(words)
    chunks, count = chunk_prompt(text, comma_padding_backtrack=backtrack, parse=PARSE)
    content = [t for c in chunks for t in c.tokens[1:-1] if t != EOS_ID]
    expected = [t for w in words if w != "BREAK" for t in tokenize(w)]
    assert content == expected  # back-tracking moves tokens, never drops or reorders them
    assert all(len(c.tokens) == 77 and c.tokens[0] == BOS_ID and c.tokens[-1] == EOS_ID for c in chunks)
    assert len(expected) <= count <= 75 * len(chunks)
    assert len(chunks) >= 1
