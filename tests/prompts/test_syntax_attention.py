"""Attention parser (spec §1.2), AND split (spec §1.5) and token-counter text (spec §1.4).

Weights are compared with ``==``: the parser must reproduce A1111's floats bit for bit.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.prompts.syntax import (
    get_multicond_prompt_list,
    parse_prompt_attention,
    target_prompt_token_count,
    token_counter_text,
    token_counter_texts,
)

SQ = 0.9090909090909091

SPEC_ATTENTION = [
    ("normal text", [["normal text", 1.0]]),
    ("an (important) word", [["an ", 1.0], ["important", 1.1], [" word", 1.0]]),
    ("(unbalanced", [["unbalanced", 1.1]]),
    ("\\(literal\\]", [["(literal]", 1.0]]),
    ("(unnecessary)(parens)", [["unnecessaryparens", 1.1]]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ["a ", 1.0],
            ["house", 1.5730000000000004],
            [" ", 1.1],
            ["on", 1.0],
            [" a ", 1.1],
            ["hill", 0.55],
            [", sun, ", 1.1],
            ["sky", 1.4641000000000006],
            [".", 1.1],
        ],
    ),
    ("a (b:1.5) c", [["a ", 1.0], ["b", 1.5], [" c", 1.0]]),
    ("[a]", [["a", SQ]]),
    ("((a))", [["a", 1.2100000000000002]]),
    ("[[a]]", [["a", 0.8264462809917354]]),
    ("(a:0)", [["a", 0.0]]),
    ("(a:-1)", [["a", -1.0]]),
    ("a (b: 1.3 ) c", [["a ", 1.0], ["b", 1.3], [" c", 1.0]]),
    ("((a:1.2):1.5)", [["a", 1.7999999999999998]]),
    ("(a)[b]", [["a", 1.1], ["b", SQ]]),
    ("(a[b])", [["a", 1.1], ["b", 1.0]]),
    ("[a:1.5]", [["a:1.5", SQ]]),
    ("(a:1.5", [["a:1.5", 1.1]]),
    ("a:b", [["a:b", 1.0]]),
    ("( a )", [[" a ", 1.1]]),
    ("(:1.2)", [["", 1.0]]),
    ("a BREAK b", [["a", 1.0], ["BREAK", -1], ["b", 1.0]]),
    ("BREAK", [["", 1.0], ["BREAK", -1], ["", 1.0]]),
    ("aBREAKb", [["aBREAKb", 1.0]]),
    ("a BREAKb", [["a BREAKb", 1.0]]),
    ("\\(a\\)", [["(a)", 1.0]]),
    ("", [["", 1.0]]),
    # backslashes (spec §1.2 computed examples)
    ("a\\b", [["ab", 1.0]]),
    ("a\\\\b", [["a\\b", 1.0]]),
    ("x\\", [["x", 1.0]]),
]


@pytest.mark.parametrize(("text", "expected"), SPEC_ATTENTION)
def test_spec_attention_vectors(text: str, expected: list) -> None:
    assert parse_prompt_attention(text) == expected


MORE_ATTENTION = [
    ("(((a)))", [["a", 1.3310000000000004]]),
    ("a)b]", [["a)b]", 1.0]]),  # unmatched closers are text
    ("a:1.5)", [["a:1.5)", 1.0]]),  # a weight with no open round bracket is text
    ("[a:1.5)", [["a:1.5)", SQ]]),
    ("([a)b]", [["a", 1.0], ["b", SQ]]),  # round and square brackets are independent stacks
    ("(a (b:2) c", [["a ", 1.1], ["b", 2.2], [" c", 1.1]]),
    ("[a (b", [["a ", SQ], ["b", 1.0]]),  # unclosed: round first, then square
    ("(a:+1.5)", [["a", 1.5]]),
    ("(a:.5)", [["a", 0.5]]),
    ("(a:1.5 )x", [["a", 1.5], ["x", 1.0]]),
    ("(a BREAK b)", [["a", 1.1], ["BREAK", -1.1], ["b", 1.1]]),  # A1111 scales BREAK inside brackets too
    ("BREAK BREAK", [["", 1.0], ["BREAK", -1], ["", 1.0], ["BREAK", -1], ["", 1.0]]),
    ("a\nBREAK\nb", [["a", 1.0], ["BREAK", -1], ["b", 1.0]]),
    ("a break b", [["a break b", 1.0]]),  # case-sensitive
    ("(BREAK)", [["", 1.1], ["BREAK", -1.1], ["", 1.1]]),
    ("(a:.)", [["a:.)", 1.1]]),  # not a number: kept as text (A1111 raises ValueError here)
    ("(a:1.2.3)", [["a:1.2.3)", 1.1]]),
    ("\\x(y)", [["x", 1.0], ["y", 1.1]]),
    ("café (thé:1.2)", [["café ", 1.0], ["thé", 1.2]]),
    ("(a:1)(b:1)", [["ab", 1.0]]),  # equal weights merge
]


@pytest.mark.parametrize(("text", "expected"), MORE_ATTENTION)
def test_more_attention_vectors(text: str, expected: list) -> None:
    assert parse_prompt_attention(text) == expected


def test_negative_zero_weight_is_preserved() -> None:
    assert repr(parse_prompt_attention("(a:-0)")) == repr([["a", -0.0]])


def test_result_is_fresh_and_mutable() -> None:
    first = parse_prompt_attention("BREAK")
    first[1][1] = 5
    assert parse_prompt_attention("BREAK")[1] == ["BREAK", -1]


def test_huge_prompt_is_fast() -> None:
    prompt = ", ".join(["(masterpiece:1.2), best quality, [a:b:5]"] * 2000)
    t0 = time.perf_counter()
    runs = parse_prompt_attention(prompt)
    elapsed = time.perf_counter() - t0
    assert len(runs) == 4 * 2000 - 1
    assert runs[0] == ["masterpiece", 1.2]
    assert runs[1] == [", best quality, ", 1.0]
    assert runs[2] == ["a:b:5", SQ]
    assert elapsed < 2.0, f"attention parsing took {elapsed:.2f}s"


_ATOMS = st.sampled_from(list("ab ()[]:\\\n") + ["1.5", "BREAK", " BREAK ", ":2)", "é"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_ATOMS, max_size=30).map("".join))
def test_any_text_gives_well_formed_runs(text: str) -> None:
    runs = parse_prompt_attention(text)
    assert runs and all(isinstance(t, str) and isinstance(w, float | int) for t, w in runs)
    assert all(runs[k][1] != runs[k + 1][1] for k in range(len(runs) - 1))  # merged
    if not any(c in text for c in "()[]:\\") and "BREAK" not in text:
        assert runs == [[text, 1.0]]


# ---------------------------------------------------------------------------------- AND (spec §1.5)

SPEC_AND = [
    (["a cat AND a dog"], [[(0, 1.0), (1, 1.0)]], ["a cat", " a dog"]),
    (["a cat:1.2 AND a dog :0.5"], [[(0, 1.2), (1, 0.5)]], ["a cat", " a dog"]),
    (["a AND b", "b AND c"], [[(0, 1.0), (1, 1.0)], [(2, 1.0), (3, 1.0)]], ["a", " b", "b", " c"]),
    (["a ANDb"], [[(0, 1.0)]], ["a ANDb"]),
    (["cat AND dog:-1"], [[(0, 1.0), (1, -1.0)]], ["cat", " dog"]),
    (["(x:1.5) AND y : 2"], [[(0, 1.0), (1, 2.0)]], ["(x:1.5)", " y"]),
    (["a:1.2"], [[(0, 1.2)]], ["a"]),
    (["a:.5 AND b:2."], [[(0, 0.5), (1, 2.0)]], ["a", " b"]),
    # more
    (["a AND a"], [[(0, 1.0), (1, 1.0)]], ["a", " a"]),
    (["x AND y", "x AND z"], [[(0, 1.0), (1, 1.0)], [(0, 1.0), (2, 1.0)]], ["x", " y", " z"]),
    (["a and b"], [[(0, 1.0)]], ["a and b"]),  # case-sensitive
    (["a AND"], [[(0, 1.0), (1, 1.0)]], ["a", ""]),
    (["a:+2 AND b:1e3"], [[(0, 2.0), (1, 1.0)]], ["a", " b:1e3"]),
    (["a\nb:1.2 AND c"], [[(0, 1.0), (1, 1.0)]], ["a\nb:1.2 ", " c"]),  # newline: A1111 keeps it as is
    ([""], [[(0, 1.0)]], [""]),
]


@pytest.mark.parametrize(("prompts", "indexes", "flat"), SPEC_AND)
def test_multicond_prompt_list(prompts: list[str], indexes: list, flat: list[str]) -> None:
    res_indexes, flat_list, index_map = get_multicond_prompt_list(prompts)
    assert res_indexes == indexes
    assert flat_list == flat
    assert index_map == {text: k for k, text in enumerate(flat)}


# ---------------------------------------------------------------------------------- token counter (§1.4)


@pytest.mark.parametrize(
    ("tokens", "text"),
    [(0, "0/75"), (1, "1/75"), (5, "5/75"), (75, "75/75"), (76, "76/150"), (150, "150/150"), (151, "151/225")],
)
def test_token_counter_text(tokens: int, text: str) -> None:
    assert token_counter_text(tokens) == text
    assert target_prompt_token_count(tokens) == int(text.split("/")[1])


def test_token_counter_text_explicit_limit() -> None:
    assert token_counter_text(80, 154) == "80/154"


def test_token_counter_texts_positive_expands_and_and_schedules() -> None:
    texts = token_counter_texts("a [b:c:5] <lora:x:1> AND d", 10)
    assert texts == ["a b", "a c", " d"]  # AND strips trailing whitespace


def test_token_counter_texts_negative_is_not_split_on_and() -> None:
    assert token_counter_texts("a AND b <lora:x:1>", 10, is_positive=False) == ["a AND b "]


def test_token_counter_texts_parse_problem_falls_back() -> None:
    assert token_counter_texts("a | [b:c:3]", 10) == ["a | [b:c:3]"]
