"""Prompt editing ``[from:to:when]`` and alternation ``[a|b]`` schedules (spec §1.3).

A hand-written parser replaces A1111's lark/Earley grammar. It produces the same texts:

* Inside a bracket group every bracket, ``:`` and ``|`` is structural: ``(p)``, ``(p:p)`` and
  ``[p]`` are emphasis (kept verbatim as text, parsed later by the attention parser),
  ``[to:when]``, ``[from:to:when]`` are edits and ``[a|b|...]`` is alternation.
* At the top level a bracket group that does not parse becomes literal text (its opening
  bracket is a plain character and scanning goes on right after it). Stray ``] ) :`` are text.
* Where A1111's Earley parser is ambiguous (a group that could be either a schedule or literal
  top-level brackets, e.g. ``[a:b:3])``), lark's choice depends on PYTHONHASHSEED; we always
  take the schedule. Differential fuzzing against A1111's grammar (lark 1.1.2, many hash seeds)
  found every one of our results among A1111's possible outcomes.
* ``|`` outside an alternation, and a backslash that does not escape a character on the same
  line, make the whole prompt unparseable; the prompt is then used unchanged for all steps.

Parsing is linear: a failed group fails every group still open around it, every group start is
tried at most once (memoised), and nesting uses an explicit stack (no recursion limit). Parsing
is cheap enough that trees are not cached between calls.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = [
    "ScheduleParseError",
    "get_learned_conditioning_prompt_schedules",
    "parse_schedule_tree",
    "schedule_for_prompt",
]

# lark's common.SIGNED_NUMBER: ASCII digits, optional sign, decimal point and exponent.
_NUMBER_RE = re.compile(r"\s*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*")
_PLAIN_RUN_RE = re.compile(r"[^\\\[\]():|]+")


class ScheduleParseError(ValueError):
    """The prompt cannot be read as schedule syntax (A1111 then uses it unchanged)."""


@dataclass(frozen=True, eq=False)
class Edit:
    """``[before:after:when]``; ``before`` is None for the ``[after:when]`` form."""

    before: list | None
    after: list
    when: str


@dataclass(frozen=True, eq=False)
class Alternate:
    """``[a|b|...]``: option ``(step - 1) % len(options)`` is used at a step."""

    options: list


Node = str | list | Edit | Alternate


class _Frame:
    """An open bracket group while scanning."""

    __slots__ = ("opener", "start", "segments", "seps", "seg_start")

    def __init__(self, opener: str, start: int) -> None:
        self.opener = opener
        self.start = start
        self.segments: list[list] = [[]]
        self.seps: list[str] = []
        self.seg_start = start + 1


def _close(frame: _Frame, text: str, end: int) -> Node | None:
    """The node for a group closed at ``text[end]``, or None when its form is invalid."""
    seps, segs = frame.seps, frame.segments
    if frame.opener == "(":
        if len(seps) == 0:
            return ["(", segs[0], ")"]
        return ["(", segs[0], ":", segs[1], ")"]
    if not seps:
        return ["[", segs[0], "]"]
    if seps[0] == "|":
        return Alternate(options=segs)
    number = _NUMBER_RE.fullmatch(text, frame.seg_start, end)
    if number is None:
        return None
    if len(seps) == 1:
        return Edit(before=None, after=segs[0], when=number.group(1))
    return Edit(before=segs[0], after=segs[1], when=number.group(1))


def _separator_ok(frame: _Frame, sep: str) -> bool:
    """Whether ``sep`` may follow the separators already seen in ``frame``."""
    if frame.opener == "(":
        return sep == ":" and not frame.seps
    if not frame.seps:
        return True
    if sep == "|":
        return frame.seps[0] == "|"
    return frame.seps[0] == ":" and len(frame.seps) < 2


def parse_schedule_tree(text: str) -> list:
    """Parse ``text`` into nodes (str, nested lists, Edit, Alternate); raises ScheduleParseError."""
    top: list = []
    stack: list[_Frame] = []
    done: dict[int, tuple[Node, int] | None] = {}  # group start -> (node, end) or None if it failed
    n = len(text)
    i = 0
    while i < n or stack:
        target = stack[-1].segments[-1] if stack else top
        if i >= n:  # 1. groups still open at the end fail
            i = _fail(stack, done, top)
            continue
        c = text[i]
        if c == "\\":  # 2. escape pairs are plain text; a dangling backslash is a syntax error
            if i + 1 >= n or text[i + 1] == "\n":
                raise ScheduleParseError(f"dangling backslash at position {i}")
            target.append(text[i : i + 2])
            i += 2
        elif c in "([":  # 3. a group starts (or is replayed from the memo)
            if i in done:
                memo = done[i]
                if memo is None:
                    if stack:
                        i = _fail(stack, done, top)
                    else:
                        top.append(c)
                        i += 1
                else:
                    target.append(memo[0])
                    i = memo[1]
            else:
                stack.append(_Frame(c, i))
                i += 1
        elif c in ")]":  # 4. a group ends
            if not stack:
                target.append(c)
                i += 1
                continue
            frame = stack[-1]
            node = _close(frame, text, i) if (c == ")") == (frame.opener == "(") else None
            if node is None:
                i = _fail(stack, done, top)
                continue
            stack.pop()
            done[frame.start] = (node, i + 1)
            (stack[-1].segments[-1] if stack else top).append(node)
            i += 1
        elif c in ":|":  # 5. separators
            if not stack:
                if c == "|":
                    raise ScheduleParseError(f"'|' outside of an alternation at position {i}")
                top.append(c)
                i += 1
                continue
            frame = stack[-1]
            if not _separator_ok(frame, c):
                i = _fail(stack, done, top)
                continue
            frame.seps.append(c)
            frame.segments.append([])
            frame.seg_start = i + 1
            i += 1
        else:  # 6. plain text and whitespace
            m = _PLAIN_RUN_RE.match(text, i)
            target.append(m.group(0))
            i = m.end()
    return top


def _fail(stack: list[_Frame], done: dict, top: list) -> int:
    """Mark every open group as failed; the outermost opener becomes literal text."""
    for frame in stack:
        done[frame.start] = None
    outer = stack[0]
    stack.clear()
    top.append(outer.opener)
    return outer.start + 1


def _parse_or_none(text: str) -> tuple[list, bool] | None:
    """(tree, has_schedule) for ``text``, or None when it does not parse."""
    try:
        tree = parse_schedule_tree(text)
    except ScheduleParseError:
        return None
    return tree, any(True for _ in _schedule_nodes(tree))


def _schedule_nodes(tree: list):
    """Every Edit and Alternate in the tree (both branches of edits included)."""
    stack: list = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            continue
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, Edit):
            yield node
            if node.before is not None:
                stack.append(node.before)
            stack.append(node.after)
        else:
            yield node
            stack.extend(node.options)


def _render(tree: list, step: int, whens: dict[int, int]) -> str:
    """The prompt text in effect at ``step``."""
    out: list[str] = []
    stack = [iter(tree)]
    while stack:
        for node in stack[-1]:
            if isinstance(node, str):
                out.append(node)
                continue
            if isinstance(node, list):
                chosen = node
            elif isinstance(node, Edit):
                chosen = (node.before or []) if step <= whens[id(node)] else node.after
            else:
                chosen = node.options[(step - 1) % len(node.options)]
            stack.append(iter(chosen))
            break
        else:
            stack.pop()
    return "".join(out)


def _when_to_step(when: str, steps: int, int_offset: int, flt_offset: float, old: bool) -> int:
    """A1111's conversion of a ``when`` number into an end step (clamped to ``steps``)."""
    v = float(when)
    if old:
        v = v * steps if v < 1 else v
    elif "." in when:
        v = (v - flt_offset) * steps
    else:
        v = v - int_offset
    if math.isinf(v):
        return steps if v > 0 else -1
    return min(steps, int(v))


def schedule_for_prompt(
    prompt: str, base_steps: int, hires_steps: int | None = None, use_old_scheduling: bool = False
) -> list[list]:
    """``[[end_step, text], ...]`` for one prompt (see get_learned_conditioning_prompt_schedules)."""
    if hires_steps is None or use_old_scheduling:
        int_offset, flt_offset, steps = 0, 0.0, base_steps
    else:
        int_offset, flt_offset, steps = base_steps, 1.0, hires_steps
    parsed = _parse_or_none(prompt) if "[" in prompt else None
    if parsed is None or not parsed[1]:
        return [[steps, prompt]]
    tree = parsed[0]
    boundaries = {steps}
    whens: dict[int, int] = {}
    for node in _schedule_nodes(tree):
        if isinstance(node, Edit):
            end = _when_to_step(node.when, steps, int_offset, flt_offset, use_old_scheduling)
            whens[id(node)] = end
            if end >= 1:
                boundaries.add(end)
        else:
            boundaries.update(range(1, steps + 1))
    return [[t, _render(tree, t, whens)] for t in sorted(boundaries)]


def get_learned_conditioning_prompt_schedules(
    prompts: list[str], base_steps: int, hires_steps: int | None = None, use_old_scheduling: bool = False
) -> list[list[list]]:
    """For every prompt, ``[[end_step, text], ...]`` sorted by step, the last one ending at the total.

    New scheduling: a ``when`` with "." is a fraction, otherwise an absolute step. With
    ``hires_steps`` (the hires pass) integers count from the end of the first pass
    (``when - base_steps``) and fractions span 1..2. Old scheduling: ``when < 1`` is a fraction,
    otherwise a step, and ``base_steps`` is used even for the hires pass. A text is used while
    ``step <= end_step`` of its entry.
    """
    cache: dict[str, list[list]] = {}
    result = []
    for prompt in prompts:
        if prompt not in cache:
            cache[prompt] = schedule_for_prompt(prompt, base_steps, hires_steps, use_old_scheduling)
        result.append([list(entry) for entry in cache[prompt]])
    return result
