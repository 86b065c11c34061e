"""Parsing A1111 infotexts (`parse_generation_parameters`, spec §4.3). Pure: no torch.

The layout of the text is described in `app.infotext.format`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any


def unquote(text: str) -> str:
    """Undo `quote`: a value in double quotes is JSON-decoded; anything else is returned as is."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        decoded = json.loads(text)
    except ValueError:
        return text
    return decoded if isinstance(decoded, str) else text


#: `Key: value` where the key is a word char followed by word chars, spaces, `-` or `/` (so at
#: least two chars), and the value is a JSON string in double quotes or anything up to a comma.
#: A1111's pattern starts with `\s*` and has an unbounded key; both make long lines quadratic.
#: Dropping the leading `\s*` changes no (key, value); capping keys at 256 chars keeps the match
#: count (only a >256-char "key" would be shortened). This regex is the reference definition:
#: `parse_params_line` finds the same matches without running it (see there).
_PARAM_RE = re.compile(
    r"""(?P<key>\w[\w \-/]{1,255}):\s*(?P<value>"(?:\\.|[^\\"])+"|[^,]*)(?:,|$)"""
)
#: Longest key `_PARAM_RE` matches.
_MAX_KEY = 256
#: A run of key characters (matched on the reversed line, to find the key that ends at a colon).
_KEY_RUN = re.compile(rf"[\w \-/]{{0,{_MAX_KEY + 1}}}")
_WORD = re.compile(r"\w")
#: What follows the key in `_PARAM_RE`, matched at the colon.
_PARAM_VALUE = re.compile(r""":\s*(?P<value>"(?:\\.|[^\\"])+"|[^,]*)(?:,|$)""")


class InfotextTooLong(ValueError):
    """An infotext longer than the parse limit (`max_length` of `parse_generation_parameters`)."""


_SIZE_RE = re.compile(r"^(\d+)x(\d+)$")
_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-(\d+))?(?:-.*)?$")

#: Defaults A1111 adds when a key is missing (types as A1111 returns them).
_PARSE_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("Hires sampler", "Use same sampler"), ("Hires schedule type", "Use same scheduler"),
    ("Hires checkpoint", "Use same checkpoint"), ("Hires prompt", ""), ("Hires negative prompt", ""),
    ("Mask mode", "Inpaint masked"), ("Masked content", "original"), ("Inpaint area", "Whole picture"),
    ("Masked area padding", 32),
)
_LATE_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("RNG", "GPU"), ("Schedule type", "Automatic"), ("Schedule max sigma", 0), ("Schedule min sigma", 0),
    ("Schedule rho", 0), ("VAE Encoder", "Full"), ("VAE Decoder", "Full"), ("FP8 weight", "Disable"),
)

StyleExtractor = Callable[[str, str], "tuple[list[str], str, str]"]


def parse_params_line(line: str) -> list[tuple[str, str]]:
    """The raw `(key, value)` matches of a parameters line (values still quoted).

    Same result as `_PARAM_RE.finditer(line)`, in linear time: the regex tries a 256-char key at every
    position, and one search over a long line without a match holds the GIL for seconds (a 1 MB text chunk
    froze the whole server). Here only colons are candidates: the key of a match is the run of key chars
    right before a colon (at most 256 long, starting with a word char), found on the reversed line.
    """
    out: list[tuple[str, str]] = []
    rev = line[::-1]
    n = len(line)
    pos = 0
    colon = line.find(":", pos)
    while colon != -1:
        run = _KEY_RUN.match(rev, n - colon).end() - (n - colon)  # key chars right before the colon
        start = max(colon - run, colon - _MAX_KEY, pos)
        while start < colon - 1 and not _WORD.match(line, start):
            start += 1
        if colon - start >= 2 and _WORD.match(line, start):
            m = _PARAM_VALUE.match(line, colon)
            if m is not None:
                out.append((line[start:colon], m.group("value")))
                pos = m.end() if m.end() > pos else pos + 1
                colon = line.find(":", max(pos, colon + 1))
                continue
        colon = line.find(":", colon + 1)
    return out


def parse_version(text: Any) -> tuple[int, int, int, int] | None:
    """An A1111 `Version` value as a comparable tuple (`v1.7.0-225-g...` -> (1,7,0,225)); else None."""
    if not isinstance(text, str):
        return None
    m = _VERSION_RE.match(text.strip())
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4) or 0)


def old_hires_first_pass_size(width: int, height: int) -> tuple[int, int]:
    """A1111's old algorithm: scale to ~512*512 pixels, rounded up to multiples of 64."""
    scale = math.sqrt(512 * 512 / (width * height))
    return math.ceil(scale * width / 64) * 64, math.ceil(scale * height / 64) * 64


def _restore_old_hires_fix(res: dict[str, Any], use_old_hires_fix_width_height: bool) -> None:
    if use_old_hires_fix_width_height:
        hires_w, hires_h = int(res.get("Hires resize-1", 0)), int(res.get("Hires resize-2", 0))
        if hires_w and hires_h:
            res["Size-1"], res["Size-2"] = hires_w, hires_h
            return
    first_w, first_h = res.get("First pass size-1"), res.get("First pass size-2")
    if first_w is None or first_h is None:
        return
    first_w, first_h = int(first_w), int(first_h)
    width, height = int(res.get("Size-1", 512)), int(res.get("Size-2", 512))
    if first_w == 0 or first_h == 0:
        first_w, first_h = old_hires_first_pass_size(width, height)
    res["Size-1"], res["Size-2"] = first_w, first_h
    res["Hires resize-1"], res["Hires resize-2"] = width, height


def _uses_emphasis(text: str) -> bool:
    """A1111: the prompt has a chunk whose attention weight is not 1 (BREAK aside)."""
    try:
        from app.prompts.syntax import parse_prompt_attention

        return any(weight != 1.0 and part != "BREAK" for part, weight in parse_prompt_attention(text))
    except ImportError:  # the syntax parser is optional for this pure helper
        return "(" in text or "[" in text


def _backcompat(res: dict[str, Any]) -> None:
    """A1111 `auto_backcompat`: old infotext versions imply old behaviours."""
    ver = parse_version(res.get("Version"))
    if ver is None:
        return
    if ver < (1, 6, 0, 0) and "[" in res.get("Prompt", ""):
        res["Old prompt editing timelines"] = True
    if ver < (1, 6, 0, 0) and res.get("Sampler", "") in ("DDIM", "PLMS"):
        res["Pad conds v0"] = True
    if ver < (1, 7, 0, 225):
        res["Downcast alphas_cumprod"] = True
    if ver < (1, 8, 0, 0) and res.get("Refiner"):
        res["Refiner switch by sampling steps"] = True


def parse_generation_parameters(
    text: str,
    skip_fields: tuple[str, ...] | list[str] = (),
    *,
    style_extractor: StyleExtractor | None = None,
    infotext_styles: str = "Apply if any",
    auto_backcompat: bool = True,
    use_old_hires_fix_width_height: bool = False,
    max_length: int | None = None,
) -> dict[str, Any]:
    """Parse an infotext into a dict like A1111's `parse_generation_parameters`.

    Parsed values are strings (`WxH` values become `Key-1`/`Key-2`); the defaults A1111 adds for
    missing keys keep A1111's types (`"1"` for Clip skip, `32`, `0`, `False` ...), so the dict
    equals what A1111's `/sdapi/v1/png-info` returns as `parameters`.
    `style_extractor(prompt, negative) -> (style_names, prompt, negative)` strips known styles
    (`infotext_styles`: "Ignore" | "Apply" | "Apply if any" | "Discard").
    `max_length` (characters; None or 0 = no limit): a longer text raises `InfotextTooLong` unparsed.
    """
    if max_length and text and len(text) > max_length:
        raise InfotextTooLong(f"the infotext is {len(text)} characters, more than the limit of {max_length} "
                              "(setting max_infotext_length)")
    res: dict[str, Any] = {}
    *lines, last = (text or "").replace("\r\n", "\n").strip().split("\n")
    if len(parse_params_line(last)) < 3:
        lines.append(last)
        last = ""

    # 1. prompt and negative prompt lines
    # (A1111 quirks kept: every line is stripped, leading empty lines vanish, and the
    # `Negative prompt:` prefix is removed from any line once the negative part has started.)
    prompt = negative_prompt = ""
    in_negative = False
    for raw in lines:
        line = raw.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[16:].strip()
        if in_negative:
            negative_prompt += ("\n" if negative_prompt else "") + line
        else:
            prompt += ("\n" if prompt else "") + line

    # 2. key/value pairs (an empty value is skipped, as in A1111)
    for key, value in parse_params_line(last):
        if not value:
            continue
        if value[0] == '"' and value[-1] == '"':
            value = unquote(value)
        size = _SIZE_RE.match(value)
        if size is not None:
            res[f"{key}-1"], res[f"{key}-2"] = size.group(1), size.group(2)
        else:
            res[key] = value

    # 3. styles
    if style_extractor is not None and infotext_styles != "Ignore":
        found, prompt_no_styles, negative_no_styles = style_extractor(prompt, negative_prompt)
        prompt, negative_prompt = prompt_no_styles, negative_no_styles
        if infotext_styles == "Apply" or (infotext_styles == "Apply if any" and found):
            res["Styles array"] = list(found)
    res["Prompt"], res["Negative prompt"] = prompt, negative_prompt

    # 4. defaults for missing keys
    res.setdefault("Clip skip", "1")
    if "Hypernet" in res:
        res["Prompt"] += f"<hypernet:{res['Hypernet']}:{res.get('Hypernet strength', '1.0')}>"
    if "Hires resize-1" not in res:
        res["Hires resize-1"], res["Hires resize-2"] = 0, 0
    for key, default in _PARSE_DEFAULTS:
        res.setdefault(key, default)
    _restore_old_hires_fix(res, use_old_hires_fix_width_height)
    for key, default in _LATE_DEFAULTS:
        res.setdefault(key, default)
    if "Cache FP16 weight for LoRA" not in res and res["FP8 weight"] != "Disable":
        res["Cache FP16 weight for LoRA"] = False
    if "Emphasis" not in res and (_uses_emphasis(prompt) or _uses_emphasis(negative_prompt)):
        res["Emphasis"] = "Original"
    res.setdefault("Refiner switch by sampling steps", False)
    if auto_backcompat:
        _backcompat(res)

    for key in skip_fields:
        res.pop(key, None)
    return res
