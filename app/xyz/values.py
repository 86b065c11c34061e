"""The values of one X/Y/Z plot axis (A1111 1.10 ``scripts/xyz_grid.py`` ``process_axis``, spec §8.2), pure.

Values are CSV (quotes allowed: ``"a, b", c``). Number axes take ranges: ``1-5`` (1..5), ``1-10 (+3)`` (a step),
``10-20 [5]`` (a count, evenly spaced; whole numbers are truncated as A1111 does), in floats too
(``1-3 (+0.5)``, ``0.5-1 [3]``), and negative numbers (``-5--1``). A choice axis (sampler, checkpoint, ...) takes
the values dropdown unless "Use text inputs instead of dropdowns" is on; typed values are matched to the choices
case-insensitively. "Prompt order" gives every permutation of its values, "Size" takes ``WIDTHxHEIGHT``.
"""

from __future__ import annotations

import csv
import itertools
import random
import re
from collections.abc import Callable, Sequence
from io import StringIO
from typing import Any

import numpy as np

from app.xyz.axes import STATIC_CHOICES, Axis

_INT = r"[+-]?\s*\d+"
_FLOAT = r"[+-]?\s*\d+(?:\.\d*)?"
RANGE_INT = re.compile(rf"\s*({_INT})\s*-\s*({_INT})(?:\s*\(([+-]\d+)\s*\))?\s*")
COUNT_INT = re.compile(rf"\s*({_INT})\s*-\s*({_INT})(?:\s*\[(\d+)\s*\])?\s*")
RANGE_FLOAT = re.compile(rf"\s*({_FLOAT})\s*-\s*({_FLOAT})(?:\s*\(([+-]\d+(?:\.\d*)?)\s*\))?\s*")
COUNT_FLOAT = re.compile(rf"\s*({_FLOAT})\s*-\s*({_FLOAT})(?:\s*\[(\d+(?:\.\d*)?)\s*\])?\s*")
#: The most cells one plot may have (a typo like ``1-100000`` is refused before anything runs).
MAX_CELLS = 10_000
#: Choice lists matched by substring when no exact match exists (A1111's closest checkpoint / VAE match).
_SUBSTRING_LISTS = ("checkpoints", "checkpoints_or_none", "vaes")


def csv_values(text: str) -> list[str]:
    """CSV cells of *text* (all lines), stripped; empty input gives no values."""
    return [cell.strip() for cell in itertools.chain.from_iterable(csv.reader(StringIO(text or "")))]


def to_csv(values: Sequence[str]) -> str:
    """*values* as one CSV line (the text box form of a dropdown selection)."""
    with StringIO() as out:
        csv.writer(out).writerow(list(values))
        return out.getvalue().strip()


def _number(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _expand(values: Sequence[Any], label: str, whole: bool) -> list[Any]:
    """The values with A1111's range forms expanded: ``a-b (+step)`` (``range`` / ``np.arange``) and ``a-b [count]``
    (``np.linspace``, truncated to ints for a whole-number axis); other items are single numbers."""
    kind: Any = int if whole else float
    step_re, count_re = (RANGE_INT, COUNT_INT) if whole else (RANGE_FLOAT, COUNT_FLOAT)
    what = "a whole number" if whole else "a number"
    out: list[Any] = []
    for value in values:
        text = str(value)
        step_match, count_match = step_re.fullmatch(text), count_re.fullmatch(text)
        if step_match is not None:
            start, end = kind(_number(step_match.group(1))), kind(_number(step_match.group(2)))
            step = kind(step_match.group(3)) if step_match.group(3) is not None else kind(1)
            if step == 0:
                raise ValueError(f"{label}: the step of {text.strip()!r} must not be 0")
            out += list(range(start, end + 1, step)) if whole else np.arange(start, end + step, step).tolist()
        elif count_match is not None:
            start, end = kind(_number(count_match.group(1))), kind(_number(count_match.group(2)))
            count = int(float(count_match.group(3))) if count_match.group(3) is not None else 1
            out += [kind(x) for x in np.linspace(start, end, count).tolist()]
        else:
            try:
                out.append(kind(text.strip()))
            except ValueError:
                raise ValueError(f"{label}: {text.strip()!r} is not {what} or a range") from None
    return out


def expand_ints(values: Sequence[Any], label: str) -> list[int]:
    """Whole-number values with the range forms expanded."""
    return _expand(values, label, whole=True)


def expand_floats(values: Sequence[Any], label: str) -> list[float]:
    """Number values with the range forms expanded (``np.arange`` / ``np.linspace``, as A1111)."""
    return _expand(values, label, whole=False)


def parse_size(text: str, label: str = "Size") -> tuple[int, int]:
    """``"512x768"`` → (512, 768)."""
    width, sep, height = str(text).lower().partition("x")
    try:
        if not sep:
            raise ValueError
        size = int(width.strip()), int(height.strip())
    except ValueError:
        raise ValueError(f"{label}: {text!r} is not a size like 512x768") from None
    if size[0] < 8 or size[1] < 8:
        raise ValueError(f"{label}: {text!r} is too small (at least 8x8)")
    return size


def match_choice(axis: Axis, value: str, choices: Sequence[str]) -> str:
    """*value* as one of *choices* (case-insensitive; checkpoints and VAEs also by the shortest name containing
    it, as A1111's closest match); a clear error naming the axis otherwise."""
    text = str(value).strip()
    if axis.choices == "checkpoints_or_none" and text.lower() in ("", "none"):
        return "None"
    for choice in choices:
        if choice.lower() == text.lower():
            return choice
    if axis.choices == "vaes" and text.lower() in ("auto", "automatic"):
        return "Automatic"
    if axis.choices in _SUBSTRING_LISTS and text:
        near = sorted((c for c in choices if text.lower() in c.lower()), key=len)
        if near:
            return near[0]
    shown = ", ".join(list(choices)[:30]) or "(none)"
    raise ValueError(f"{axis.label}: unknown value {text!r}; choices: {shown}")


def axis_values(axis: Axis, text: Any, dropdown: Any, csv_mode: bool,
                choices: Callable[[str], Sequence[str]] | None = None) -> list[Any]:
    """The typed values of one axis from its text box, or its values dropdown for a choice axis (unless
    *csv_mode*); *choices* gives a choice list by name (for validation). "Nothing" has the one value 0."""
    if axis.kind == "none":
        return [0]
    if axis.choices is not None and not csv_mode and dropdown:
        raw = [str(v).strip() for v in (dropdown if isinstance(dropdown, list | tuple) else [dropdown])]
    else:  # a choice axis with an empty dropdown falls back to the text (A1111 before 1.5 had only the text)
        raw = csv_values(text if isinstance(text, str) else to_csv([str(v) for v in text or []]))
    raw = [v for v in raw if v != ""] if axis.kind != "str" or axis.choices is not None else raw
    if not raw:
        raise ValueError(f"{axis.label}: no values given")
    values: list[Any]
    if axis.kind == "int":
        values = expand_ints(raw, axis.label)
    elif axis.kind == "float":
        values = expand_floats(raw, axis.label)
    elif axis.kind == "permutations":
        values = list(itertools.permutations(raw))
    elif axis.kind == "size":
        values = [parse_size(v, axis.label) for v in raw]
    else:
        values = list(raw)
    if not values:
        raise ValueError(f"{axis.label}: the values give no cell")
    if axis.choices is not None:
        known = list(STATIC_CHOICES.get(axis.choices, ())) or list(choices(axis.choices) if choices else [])
        if axis.choices == "styles":
            values = [",".join(match_choice(axis, s, known) for s in v.split(",") if s.strip()) for v in values]
        elif known or axis.choices in STATIC_CHOICES:
            values = [match_choice(axis, v, known) for v in values]
    return values


def check_prompt_values(axis: Axis, values: Sequence[Any], prompt: str, negative_prompt: str) -> None:
    """Prompt S/R: the first value must be in the prompt or the negative prompt; Prompt order: every token must be
    in the prompt (A1111 raises the first when the cell runs; here before any cell runs)."""
    if axis.target == "prompt_sr" and values and values[0] not in prompt and values[0] not in negative_prompt:
        raise ValueError(f"Prompt S/R did not find {values[0]} in prompt or negative prompt.")
    if axis.target == "prompt_order" and values:
        missing = [token for token in values[0] if token not in prompt]
        if missing:
            raise ValueError(f"Prompt order did not find {', '.join(missing)} in the prompt.")


def fix_seeds(axis: Axis, values: list[Any], rand: Callable[[], int] | None = None) -> list[Any]:
    """Seed / Var. seed values with -1 (or empty) replaced by a random seed (unless "Keep -1 for seeds")."""
    if axis.label not in ("Seed", "Var. seed"):
        return values
    draw = rand or (lambda: int(random.randrange(4294967294)))
    return [draw() if v in (None, "", -1) else v for v in values]


def processing_order(x_cost: float, y_cost: float, z_cost: float) -> tuple[str, str]:
    """(outer, middle) loop axes: the costliest axis (checkpoint, VAE) changes least often; ties keep A1111's
    default order, Z outermost then Y."""
    first, second = "z", "y"
    if x_cost > y_cost and x_cost > z_cost:
        first, second = "x", ("y" if y_cost > z_cost else "z")
    elif y_cost > x_cost and y_cost > z_cost:
        first, second = "y", ("x" if x_cost > z_cost else "z")
    elif z_cost > x_cost and z_cost > y_cost:
        first, second = "z", ("x" if x_cost > y_cost else "y")
    return first, second


def cell_order(nx: int, ny: int, nz: int, first: str, second: str) -> list[tuple[int, int, int]]:
    """Every cell ``(ix, iy, iz)`` in the order it runs: *first* is the outer loop, *second* the middle one."""
    third = ({"x", "y", "z"} - {first, second}).pop()
    sizes = {"x": nx, "y": ny, "z": nz}
    out = []
    for a in range(sizes[first]):
        for b in range(sizes[second]):
            for c in range(sizes[third]):
                index = {first: a, second: b, third: c}
                out.append((index["x"], index["y"], index["z"]))
    return out


def check_cell_count(nx: int, ny: int, nz: int, width: int, height: int, max_mp: float) -> None:
    """Refuse a plot with too many cells, or a grid larger than ``img_max_size_mp`` megapixels (A1111's check)."""
    cells = nx * ny * nz
    if cells > MAX_CELLS:
        raise ValueError(f"X/Y/Z plot: {cells} cells is too many (at most {MAX_CELLS})")
    grid_mp = round(cells * width * height / 1_000_000)
    if max_mp and grid_mp >= max_mp:
        raise ValueError(f"Error: Resulting grid would be too large ({grid_mp} MPixels) "
                         f"(max configured size is {max_mp:g} MPixels)")
