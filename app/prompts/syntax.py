"""A1111 prompt syntax, pure Python (spec §1): attention, AND, token-counter text.

The pipeline for one batch (spec §1.1): styles (app/prompts/styles.py) → extra-network tags removed
(:func:`parse_extra_networks`, first prompt of the batch only) → split on ``AND``
(:func:`get_multicond_prompt_list`) → schedules (:func:`get_learned_conditioning_prompt_schedules`)
→ attention runs (:func:`parse_prompt_attention`) → tokens (app/prompts/chunks.py).
The negative prompt skips the extra-network and AND steps.

This module re-exports the schedule and extra-network functions so callers need one import.
No torch, no gradio.
"""

from __future__ import annotations

import math
import re

from app.prompts.extra_networks import (
    ExtraNetworkParams,
    first_prompt_extra_networks,
    lora_weights,
    parse_extra_networks,
    parse_extra_networks_batch,
)
from app.prompts.schedules import ScheduleParseError, get_learned_conditioning_prompt_schedules

__all__ = [
    "BREAK_RUN",
    "ExtraNetworkParams",
    "ScheduleParseError",
    "first_prompt_extra_networks",
    "get_learned_conditioning_prompt_schedules",
    "get_multicond_prompt_list",
    "lora_weights",
    "parse_extra_networks",
    "parse_extra_networks_batch",
    "parse_prompt_attention",
    "target_prompt_token_count",
    "token_counter_text",
    "token_counter_texts",
]

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1
BREAK_RUN = ("BREAK", -1)
CHUNK_TOKENS = 75

# ``:X)`` closing a round bracket with an explicit weight (X signed/decimal, spaces allowed).
_WEIGHT_CLOSE_RE = re.compile(r":\s*([+-]?[.\d]+)\s*\)")
_TEXT_RE = re.compile(r"[^\\()\[\]:]+")
_BREAK_RE = re.compile(r"\s*\bBREAK\b\s*", re.S)
_ESCAPABLE = frozenset("()[]\\")


def parse_prompt_attention(text: str) -> list[list]:
    """Split ``text`` into ``[text, weight]`` runs following A1111's emphasis rules (spec §1.2).

    ``(x)`` ×1.1, ``[x]`` ×1/1.1, ``(x:w)`` ×w; ``\\( \\) \\[ \\] \\\\`` are literal; a lone
    backslash is dropped; unclosed brackets apply at the end (round first, then square,
    outermost first); unmatched closers are text; ``BREAK`` becomes ``["BREAK", -1]``; equal
    neighbouring weights merge. Multipliers are applied run by run when a bracket closes, in the
    same order as A1111, so the floats are bit-identical (``(((house:1.3))`` → 1.5730000000000004).
    An explicit weight that is not a number (``(a:.)``) is kept as literal text.
    """
    runs: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":  # 1. escapes; a lone backslash contributes an empty run
            nxt = text[i + 1 : i + 2]
            if nxt and nxt in _ESCAPABLE:
                runs.append([nxt, 1.0])
                i += 2
            else:
                runs.append(["", 1.0])
                i += 1
        elif c == "(":  # 2. openers remember where their range starts
            round_open.append(len(runs))
            i += 1
        elif c == "[":
            square_open.append(len(runs))
            i += 1
        elif c == ":":  # 3. ``:w)`` closes the innermost round bracket with weight w
            m = _WEIGHT_CLOSE_RE.match(text, i)
            if m is None:
                _append_text(runs, ":")
                i += 1
                continue
            weight = _to_float(m.group(1))
            if round_open and weight is not None:
                _multiply(runs, round_open.pop(), weight)
            else:
                _append_text(runs, m.group(0))
            i = m.end()
        elif c == ")":  # 4. closers; unmatched ones are text
            if round_open:
                _multiply(runs, round_open.pop(), ROUND_MULTIPLIER)
            else:
                _append_text(runs, c)
            i += 1
        elif c == "]":
            if square_open:
                _multiply(runs, square_open.pop(), SQUARE_MULTIPLIER)
            else:
                _append_text(runs, c)
            i += 1
        else:  # 5. plain text (BREAK is found here)
            m = _TEXT_RE.match(text, i)
            _append_text(runs, m.group(0))
            i = m.end()
    for start in round_open:  # 6. close what is still open
        _multiply(runs, start, ROUND_MULTIPLIER)
    for start in square_open:
        _multiply(runs, start, SQUARE_MULTIPLIER)
    return _merge_runs(runs) if runs else [["", 1.0]]


def _to_float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _append_text(runs: list[list], text: str) -> None:
    """Append a text token at weight 1.0, turning each ``BREAK`` keyword into a BREAK run."""
    parts = _BREAK_RE.split(text) if "BREAK" in text else [text]
    for k, part in enumerate(parts):
        if k:
            runs.append(list(BREAK_RUN))
        runs.append([part, 1.0])


def _multiply(runs: list[list], start: int, multiplier: float) -> None:
    for run in runs[start:]:
        run[1] *= multiplier


def _merge_runs(runs: list[list]) -> list[list]:
    merged = [runs[0]]
    for run in runs[1:]:
        if run[1] == merged[-1][1]:
            merged[-1][0] += run[0]
        else:
            merged.append(run)
    return merged


# ---------------------------------------------------------------------------------- AND

_AND_RE = re.compile(r"\bAND\b")
# text, then an optional ``:weight`` and trailing whitespace (no DOTALL: a newline inside the
# text makes the pattern miss, and A1111 then keeps the sub-prompt unchanged at weight 1.0).
_SUBPROMPT_WEIGHT_RE = re.compile(r"^(\s*.*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


def get_multicond_prompt_list(prompts: list[str]) -> tuple[list[list[tuple[int, float]]], list[str], dict[str, int]]:
    """Split each prompt on ``AND`` (spec §1.5).

    Returns ``(res_indexes, prompt_flat_list, prompt_indexes)``: for every prompt a list of
    ``(index into prompt_flat_list, weight)``; the unique sub-prompt texts across the batch; and
    the text → index map. Sub-prompts keep their leading whitespace; a trailing ``:weight`` and
    trailing whitespace are removed; the default weight is 1.0.
    """
    res_indexes: list[list[tuple[int, float]]] = []
    flat: list[str] = []
    index_of: dict[str, int] = {}
    for prompt in prompts:
        indexes = []
        for sub in _AND_RE.split(prompt):
            m = _SUBPROMPT_WEIGHT_RE.search(sub)
            text, weight = (m.group(1), m.group(2)) if m is not None else (sub, None)
            if text not in index_of:
                index_of[text] = len(flat)
                flat.append(text)
            indexes.append((index_of[text], float(weight) if weight is not None else 1.0))
        res_indexes.append(indexes)
    return res_indexes, flat, index_of


# ---------------------------------------------------------------------------------- token counter


def target_prompt_token_count(token_count: int) -> int:
    """The counter's limit: the next multiple of 75 at or above ``max(tokens, 1)`` (spec §1.4)."""
    return math.ceil(max(token_count, 1) / CHUNK_TOKENS) * CHUNK_TOKENS


def token_counter_text(token_count: int, max_length: int | None = None) -> str:
    """``"{tokens}/{limit}"`` as the UI shows it; the limit defaults to the spec §1.4 rule."""
    limit = target_prompt_token_count(token_count) if max_length is None else max_length
    return f"{token_count}/{limit}"


def token_counter_texts(text: str, steps: int, is_positive: bool = True) -> list[str]:
    """Every text whose length the counter measures (styles must already be applied).

    Extra-network tags are removed (also from the negative prompt, as A1111's counter does);
    the positive prompt is split on AND; each part is expanded over its schedule. Any parse
    problem (the user is typing) falls back to the text itself. The counter shows the max.
    """
    try:
        text, _ = parse_extra_networks(text)
        parts = get_multicond_prompt_list([text])[1] if is_positive else [text]
        schedules = get_learned_conditioning_prompt_schedules(parts, steps)
    except (ValueError, TypeError):
        schedules = [[[steps, text]]]
    return [entry[1] for schedule in schedules for entry in schedule]
