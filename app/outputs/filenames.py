"""A1111 file-name patterns (`[seed]-[prompt_spaces]`, `[datetime<%Y>]` ...) and sanitising (spec §9.4).

Pure (no torch). Used by `app.outputs.save.save_image`.
"""

from __future__ import annotations

import hashlib
import os
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from PIL import Image

from app.infotext.samplers import DEFAULT_SCHEDULE_LABELS
from app.params import GenerationParams

INVALID_FILENAME_CHARS = '#<>:"/\\|?*\n\r\t'
MAX_FILENAME_PART_LENGTH = 128
DEFAULT_TIME_FORMAT = "%Y%m%d%H%M%S"
_NONLETTERS_RE = re.compile(r"[\s" + re.escape(string.punctuation) + r"]+")
_PATTERN_RE = re.compile(r"(.*?)(?:\[([^\[\]]+)\]|$)")
_PATTERN_ARG_RE = re.compile(r"(.*)<([^>]*)>$")
_SKIP = object()  # a tag that vanishes together with the text before it


def sanitize_filename_part(text: str | None, replace_spaces: bool = True) -> str | None:
    """A1111's sanitizer: `#<>:"/\\|?*` and newlines/tabs -> `_` (spaces too if asked), no
    leading spaces, at most 128 chars, no trailing spaces or dots."""
    if text is None:
        return None
    if replace_spaces:
        text = text.replace(" ", "_")
    text = text.translate({ord(c): "_" for c in INVALID_FILENAME_CHARS})
    text = text.lstrip(" ")[:MAX_FILENAME_PART_LENGTH]
    return text.rstrip(" .")


def _scheduler_str(sampler: str, scheduler: str) -> str:
    if scheduler in ("", "Automatic"):
        scheduler = DEFAULT_SCHEDULE_LABELS.get(sampler, "Automatic")
    return scheduler.capitalize()


@dataclass
class NamingContext:
    """What the file-name tags can use. Everything is optional; a tag without data stays literal."""

    params: GenerationParams | None = None
    seed: int | None = None
    prompt: str | None = None
    image: Image.Image | None = None
    all_seeds: Sequence[int] = field(default_factory=tuple)
    batch_index: int = 0
    iteration: int = 0
    job_timestamp: str | None = None
    model_hash: str | None = None
    model_name: str | None = None  # the checkpoint's name_for_extra (file name without extension)
    vae_file: str | None = None  # path or file name of the loaded VAE; None = baked-in VAE
    clip_skip: int | None = None
    style_prompts: Sequence[str] = field(default_factory=tuple)  # prompt texts of params.styles
    user: str | None = None
    zip: bool = False
    max_prompt_words: int = 8
    now: datetime | None = None


class FilenameGenerator:
    """Expands A1111 file-name patterns such as `[seed]-[prompt_spaces]` or `[datetime<%Y>]`.

    Supported tags: seed seed_first seed_last steps cfg width height styles sampler
    sampler_scheduler scheduler model_hash model_name date datetime<fmt><tz> job_timestamp
    prompt_hash<n> negative_prompt_hash<n> full_prompt_hash<n> prompt prompt_no_styles
    prompt_spaces prompt_words batch_number batch_size generation_number hasprompt<a|b>...
    clip_skip denoising user vae_filename none image_hash<n>. Unknown tags, and tags whose data
    is missing, are left as written (as A1111 does).
    """

    def __init__(self, context: NamingContext) -> None:
        self.ctx = context
        self.now = context.now or datetime.now()

    # -- helpers
    @property
    def _p(self) -> GenerationParams:
        if self.ctx.params is None:
            raise LookupError("no generation params")
        return self.ctx.params

    @staticmethod
    def _hash(text: str, args: Sequence[str], default: int | None = 8) -> str:
        length = int(args[0]) if args and args[0] != "" else default
        return hashlib.sha256(text.encode()).hexdigest()[:length]

    def _datetime(self, *args: str) -> str:
        fmt = args[0] if args and args[0] != "" else DEFAULT_TIME_FORMAT
        try:
            zone = ZoneInfo(args[1]) if len(args) > 1 else None
        except (ValueError, KeyError, OSError):
            zone = None
        moment = self.now.astimezone(zone)
        try:
            text = moment.strftime(fmt)
        except (ValueError, TypeError):
            text = moment.strftime(DEFAULT_TIME_FORMAT)
        return sanitize_filename_part(text, replace_spaces=False) or ""

    def _prompt_no_styles(self) -> str | None:
        if self.ctx.prompt is None:
            return None
        text = self.ctx.prompt
        for style in self.ctx.style_prompts:
            if not style:
                continue
            for part in style.split("{prompt}"):
                text = text.replace(part, "").replace(", ,", ",").strip().strip(",")
            text = text.replace(style, "").strip().strip(",").strip()
        return sanitize_filename_part(text, replace_spaces=False)

    def _prompt_words(self) -> str | None:
        words = [w for w in _NONLETTERS_RE.split(self.ctx.prompt or "") if w] or ["empty"]
        return sanitize_filename_part(" ".join(words[: self.ctx.max_prompt_words]), replace_spaces=False)

    def _hasprompt(self, *args: str) -> str | None:
        if self.ctx.prompt is None:
            return None
        lower, out = self.ctx.prompt.lower(), ""
        for arg in args:
            if arg:
                expected, _, default = arg.partition("|")
                out += expected.lower() if expected.lower() in lower else default
        return sanitize_filename_part(out)

    def _denoising(self) -> Any:
        p = self._p
        if p.img2img is not None:
            return p.img2img.denoising_strength or _SKIP
        return p.hires.denoising_strength if p.hires.enabled and p.hires.denoising_strength else _SKIP

    def _vae_filename(self) -> str:
        if not self.ctx.vae_file:
            return "NoneType"
        parts = os.path.basename(self.ctx.vae_file).split(".")
        return parts[1] if len(parts) > 1 and parts[0] == "" else parts[0]

    def _size(self, axis: int) -> int:
        if self.ctx.image is not None:
            return self.ctx.image.size[axis]
        return self._p.width if axis == 0 else self._p.height

    def _replacement(self, tag: str, args: list[str]) -> Any:  # noqa: C901 (a flat dispatch table)
        ctx, single = self.ctx, self.ctx.params is None or self.ctx.params.batch_size == 1
        if tag == "seed":
            return ctx.seed if ctx.seed is not None else ""
        if tag == "seed_first":
            return ctx.seed if single or not ctx.all_seeds else ctx.all_seeds[0]
        if tag == "seed_last":
            return _SKIP if single or not ctx.all_seeds else ctx.all_seeds[-1]
        simple = {
            "steps": lambda: self._p.steps, "cfg": lambda: self._p.cfg_scale,
            "width": lambda: self._size(0), "height": lambda: self._size(1),
            "styles": lambda: sanitize_filename_part(
                ", ".join(s for s in self._p.styles if s != "None") or "None", replace_spaces=False),
            "sampler": lambda: sanitize_filename_part(self._p.sampler_name, replace_spaces=False),
            "sampler_scheduler": lambda: sanitize_filename_part(
                f"{self._p.sampler_name} {_scheduler_str(self._p.sampler_name, self._p.scheduler)}", False),
            "scheduler": lambda: sanitize_filename_part(_scheduler_str(self._p.sampler_name, self._p.scheduler), False),
            "model_hash": lambda: ctx.model_hash,
            "model_name": lambda: sanitize_filename_part(ctx.model_name, replace_spaces=False),
            "date": lambda: self.now.strftime("%Y-%m-%d"),
            "datetime": lambda: self._datetime(*args),
            "job_timestamp": lambda: ctx.job_timestamp or self.now.strftime(DEFAULT_TIME_FORMAT),
            "prompt_hash": lambda: None if ctx.prompt is None else self._hash(ctx.prompt, args),
            "negative_prompt_hash": lambda: self._hash(self._p.negative_prompt, args),
            "full_prompt_hash": lambda: self._hash(f"{self._p.prompt} {self._p.negative_prompt}", args),
            "prompt": lambda: sanitize_filename_part(ctx.prompt),
            "prompt_no_styles": self._prompt_no_styles,
            "prompt_spaces": lambda: sanitize_filename_part(ctx.prompt, replace_spaces=False),
            "prompt_words": self._prompt_words,
            "batch_number": lambda: _SKIP if single or ctx.zip else ctx.batch_index + 1,
            "batch_size": lambda: self._p.batch_size,
            "generation_number": lambda: _SKIP if (self._p.n_iter == 1 and single) or ctx.zip
            else ctx.iteration * self._p.batch_size + ctx.batch_index + 1,
            "hasprompt": lambda: self._hasprompt(*args),
            "clip_skip": lambda: ctx.clip_skip if ctx.clip_skip is not None else (self._p.clip_skip or 1),
            "denoising": self._denoising,
            "user": lambda: ctx.user,
            "vae_filename": self._vae_filename,
            "none": lambda: "",
            "image_hash": lambda: None if ctx.image is None else hashlib.sha256(ctx.image.tobytes()).hexdigest()[
                : int(args[0]) if args and args[0] != "" else None],
        }
        fun = simple.get(tag)
        return None if fun is None else fun()

    def apply(self, pattern: str) -> str:
        """Expand every `[tag]` / `[tag<arg>...]` in `pattern`."""
        out = ""
        for m in _PATTERN_RE.finditer(pattern):
            text, tag = m.groups()
            if tag is None:
                out += text
                continue
            name, args = tag, []
            while (arg_match := _PATTERN_ARG_RE.match(name)) is not None:
                name, arg = arg_match.groups()
                args.insert(0, arg)
            try:
                value = self._replacement(name.lower(), args)
            except (LookupError, ValueError, TypeError, AttributeError):
                value = None
            if value is _SKIP:
                continue
            out += text + (f"[{tag}]" if value is None else str(value))
        return out
