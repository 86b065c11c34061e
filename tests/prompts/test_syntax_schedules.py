"""Prompt editing / alternation schedules (spec §1.3).

Vectors marked "spec" are the spec's table; "verified" ones were checked against A1111 v1.10.1's
lark grammar (lark 1.1.2) during development. Ambiguous inputs on which A1111's Earley parser
itself is not deterministic (it depends on PYTHONHASHSEED) are deliberately not pinned here.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.prompts.schedules import ScheduleParseError, parse_schedule_tree
from app.prompts.syntax import get_learned_conditioning_prompt_schedules


def g(prompt: str, steps: int = 10, hires: int | None = None, old: bool = False) -> list:
    return get_learned_conditioning_prompt_schedules([prompt], steps, hires, old)[0]


FEMALE = [[1, "female"], [2, "male"], [3, "female"], [4, "male"], [5, "female"], [6, "male"], [7, "female"], [8, "male"], [9, "female"], [10, "male"]]  # fmt: skip
FEMALE3 = [[1, "female"], [2, "male"], [3, "male"], [4, "male"], [5, "female"], [6, "male"], [7, "male"], [8, "male"], [9, "female"], [10, "male"]]  # fmt: skip
AB11 = [[s, "a" if s % 2 else "(b:1.1)"] for s in range(1, 11)]
ABC = [[s, "abc"[(s - 1) % 3]] for s in range(1, 11)]

SPEC_STEPS10 = [
    ("test", [[10, "test"]]),
    ("a [b:3]", [[3, "a "], [10, "a b"]]),
    ("a [b: 3]", [[3, "a "], [10, "a b"]]),
    ("a [[[b]]:2]", [[2, "a "], [10, "a [[b]]"]]),
    ("[(a:2):3]", [[3, ""], [10, "(a:2)"]]),
    ("a [b : c : 1] d", [[1, "a b  d"], [10, "a  c  d"]]),
    ("a[b:[c:d:2]:1]e", [[1, "abe"], [2, "ace"], [10, "ade"]]),
    ("a [unbalanced", [[10, "a [unbalanced"]]),
    ("a [b:.5] c", [[5, "a  c"], [10, "a b c"]]),
    ("((a][:b:c [d:3]", [[3, "((a][:b:c "], [10, "((a][:b:c d"]]),
    ("[a|(b:1.1)]", AB11),
    ("[fe|]male", FEMALE),
    ("[fe|||]male", FEMALE3),
    ("a [b:c:0.5]", [[5, "a b"], [10, "a c"]]),
    ("[a:b:5]", [[5, "a"], [10, "b"]]),
    ("[a::3] x", [[3, "a x"], [10, " x"]]),
    ("[:b:0.3]", [[3, ""], [10, "b"]]),
    ("a [b:c:25]", [[10, "a b"]]),
    ("a [b:c:0]", [[10, "a c"]]),
    ("a [b:c:1]", [[1, "a b"], [10, "a c"]]),
    ("a [b:c:1.0]", [[10, "a b"]]),
    ("[a|b|c]", ABC),
    ("(a [b:c:3]:1.2)", [[3, "(a b:1.2)"], [10, "(a c:1.2)"]]),
]


@pytest.mark.parametrize(("prompt", "expected"), SPEC_STEPS10)
def test_spec_vectors_steps10(prompt: str, expected: list) -> None:
    assert g(prompt) == expected


HIRES = [
    ("a [b:.5] c", [[10, "a b c"]]),
    ("a [b:1.5] c", [[5, "a  c"], [10, "a b c"]]),
    ("a [b:c:5]", [[10, "a c"]]),
    ("a [b:c:15]", [[5, "a b"], [10, "a c"]]),
    ("a [b:c:1.5]", [[5, "a b"], [10, "a c"]]),
    ("a [b:c:0.5]", [[10, "a c"]]),
]


@pytest.mark.parametrize(("prompt", "expected"), HIRES)
def test_spec_vectors_hires_pass(prompt: str, expected: list) -> None:
    assert g(prompt, 10, 10) == expected


def test_spec_old_scheduling_hires_uses_zero_to_one() -> None:
    assert g("a [b:c:0.5]", 10, 10, old=True) == [[5, "a b"], [10, "a c"]]


def test_spec_module_comment_example_steps100() -> None:
    prompt = (
        "fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75]"
        "[ in foreground::0.6][: in background:0.25] [shoddy:masterful:0.5]"
    )
    assert g(prompt, 100) == [
        [25, "fantasy landscape with a mountain and an oak in foreground shoddy"],
        [50, "fantasy landscape with a lake and an oak in foreground in background shoddy"],
        [60, "fantasy landscape with a lake and an oak in foreground in background masterful"],
        [75, "fantasy landscape with a lake and an oak in background masterful"],
        [100, "fantasy landscape with a lake and a christmas tree in background masterful"],
    ]


VERIFIED = [
    # parse errors: the prompt is used unchanged
    ("a | [b:c:3]", 4, [[4, "a | [b:c:3]"]]),
    ("[a:b:3] x\\", 4, [[4, "[a:b:3] x\\"]]),
    ("[b:c:2]\\\nx", 4, [[4, "[b:c:2]\\\nx"]]),
    ("[a|b:c:3]", 4, [[4, "[a|b:c:3]"]]),
    ("(a|b)", 4, [[4, "(a|b)"]]),
    ("[(a|b)]", 4, [[4, "[(a|b)]"]]),
    ("[a|b", 4, [[4, "[a|b"]]),
    ("a [{b|d{:.5] c", 10, [[10, "a [{b|d{:.5] c"]]),
    # groups that are not schedules stay literal
    ("[a:b:c:2]", 4, [[4, "[a:b:c:2]"]]),
    ("[a:b:2x]", 4, [[4, "[a:b:2x]"]]),
    # escapes
    ("\\[a:b:3\\]", 4, [[4, "\\[a:b:3\\]"]]),
    ("\\\\[a:b:3]", 4, [[3, "\\\\a"], [4, "\\\\b"]]),
    # numbers: signs, exponent, trailing dot (a fraction), negatives dropped
    ("[a:b:+2]", 4, [[2, "a"], [4, "b"]]),
    ("[a:b:2.]", 4, [[4, "a"]]),
    ("[a:b:-3]", 4, [[4, "b"]]),
    ("[a:b:-0.5]", 4, [[4, "b"]]),
    ("[a:b:1e1]", 20, [[10, "a"], [20, "b"]]),
    ("[a:b:0.75]", 3, [[2, "a"], [3, "b"]]),
    # whitespace and empty parts
    ("[ a : b : 2 ]", 4, [[2, " a "], [4, " b "]]),
    ("[:2]", 4, [[2, ""], [4, ""]]),
    ("[::2]", 4, [[2, ""], [4, ""]]),
    ("a\n[b:c:2]", 4, [[2, "a\nb"], [4, "a\nc"]]),
    # nesting of edits and alternation
    ("[a:[b|c]:2]", 4, [[1, "a"], [2, "a"], [3, "b"], [4, "c"]]),
    ("[[a|b]:c:2]", 4, [[1, "a"], [2, "b"], [3, "c"], [4, "c"]]),
    ("[a:b:3] [c|d]", 4, [[1, "a c"], [2, "a d"], [3, "a c"], [4, "b d"]]),
    ("[[a:b:1]:[c:d:3]:2]", 4, [[1, "a"], [2, "b"], [3, "c"], [4, "d"]]),
    # zero steps
    ("[a:b:3]", 0, [[0, "a"]]),
    ("[a|b]", 0, [[0, "b"]]),
]


@pytest.mark.parametrize(("prompt", "steps", "expected"), VERIFIED)
def test_verified_vectors(prompt: str, steps: int, expected: list) -> None:
    assert g(prompt, steps) == expected


@pytest.mark.parametrize(
    ("prompt", "steps", "hires", "old", "expected"),
    [
        ("[a:b:0.5]", 10, 20, True, [[5, "a"], [10, "b"]]),  # old: hires still counts base steps
        ("[a:b:3]", 10, 20, True, [[3, "a"], [10, "b"]]),
        ("[a:b:1]", 10, None, True, [[1, "a"], [10, "b"]]),  # old: 1 is a step
        ("[a:b:0.25]", 10, 4, False, [[4, "b"]]),  # first-pass fraction is over in the hires pass
        ("[a:b:12]", 10, 4, False, [[2, "a"], [4, "b"]]),  # step 12 = hires step 2
        ("[a|b]", 2, 3, False, [[1, "a"], [2, "b"], [3, "a"]]),  # alternation over the hires steps
    ],
)
def test_verified_hires_and_old(prompt: str, steps: int, hires: int | None, old: bool, expected: list) -> None:
    assert g(prompt, steps, hires, old) == expected


def test_batch_keeps_order_and_duplicates() -> None:
    res = get_learned_conditioning_prompt_schedules(["a [b:3]", "x", "a [b:3]"], 10)
    assert res == [[[3, "a "], [10, "a b"]], [[10, "x"]], [[3, "a "], [10, "a b"]]]
    res[0][0][1] = "mutated"  # results are fresh lists, not shared with a cache
    assert res[2][0][1] == "a "
    assert g("a [b:3]") == [[3, "a "], [10, "a b"]]


def test_empty_prompt() -> None:
    assert g("") == [[10, ""]]


def test_parse_tree_errors_are_reported() -> None:
    with pytest.raises(ScheduleParseError):
        parse_schedule_tree("a | b")
    with pytest.raises(ScheduleParseError):
        parse_schedule_tree("trailing \\")


def test_huge_exponent_does_not_crash() -> None:
    assert g("[a:b:1e999]") == [[10, "a"]]
    assert g("[a:b:-1e999]") == [[10, "b"]]


def test_deep_nesting_has_no_recursion_limit() -> None:
    depth = 5000
    prompt = "[" * depth + "x" + ":y:3]" * depth
    res = g(prompt)
    assert [t for t, _ in res] == [3, 10]
    assert res[0][1] == "x"
    assert res[1][1] == "y"  # the outermost edit decides after step 3
    unclosed = "(a " * depth + "[b:c:2]"
    assert g(unclosed) == [[2, "(a " * depth + "b"], [10, "(a " * depth + "c"]]


def test_large_prompt_is_fast() -> None:
    prompt = ", ".join(["(masterpiece:1.2), best quality, [a:b:5]"] * 2000)
    t0 = time.perf_counter()
    res = get_learned_conditioning_prompt_schedules([prompt], 20)[0]
    elapsed = time.perf_counter() - t0
    assert [t for t, _ in res] == [5, 20]
    assert res[0][1].count("best quality, a") == 2000
    assert elapsed < 2.0, f"schedule parsing took {elapsed:.2f}s"


def test_unclosed_brackets_stay_linear() -> None:
    prompt = "([a " * 3000 + "[b:c:4]"
    t0 = time.perf_counter()
    res = g(prompt)
    assert time.perf_counter() - t0 < 2.0
    assert res == [[4, "([a " * 3000 + "b"], [10, "([a " * 3000 + "c"]]


_ALPHABET = st.sampled_from(list("ab :|[]()\\.1\n") + ["0.5", "3", "BREAK"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=30).map("".join), st.integers(min_value=1, max_value=30))
def test_any_text_gives_a_valid_schedule(prompt: str, steps: int) -> None:
    res = g(prompt, steps)
    ends = [t for t, _ in res]
    assert ends == sorted(set(ends)) and ends[-1] == steps and ends[0] >= 1
    assert all(isinstance(text, str) for _, text in res)
    if "[" not in prompt:
        assert res == [[steps, prompt]]
