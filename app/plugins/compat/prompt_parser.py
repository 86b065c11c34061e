"""``modules.prompt_parser``: A1111's prompt syntax functions over ``app.prompts`` (emphasis runs, prompt
editing schedules, ``AND`` composition) and its conditioning container types.

Building conditionings needs the text encoder inside the engine; ``get_learned_conditioning`` therefore raises
``UnsupportedFeature`` with the reason (Atelier encodes prompts itself, per job).
"""

from __future__ import annotations

import re
from collections import namedtuple
from typing import Any

from app.plugins.compat.sd_hijack import UnsupportedFeature
from app.prompts.schedules import get_learned_conditioning_prompt_schedules
from app.prompts.syntax import get_multicond_prompt_list, parse_prompt_attention

__all__ = ["ComposableScheduledPromptConditioning", "MulticondLearnedConditioning", "ScheduledPromptConditioning",
           "SdConditioning", "get_learned_conditioning", "get_learned_conditioning_prompt_schedules",
           "get_multicond_learned_conditioning", "get_multicond_prompt_list", "parse_prompt_attention", "re_AND",
           "re_attention", "re_break", "re_weight"]

re_AND = re.compile(r"\bAND\b")  # noqa: N816 - A1111's name
re_weight = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")
re_break = re.compile(r"\s*\bBREAK\b\s*", re.S)
re_attention = re.compile(r"\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:", re.X)

ScheduledPromptConditioning = namedtuple("ScheduledPromptConditioning", ["end_at_step", "cond"])


class SdConditioning(list):
    """A list of prompts with the image size and whether they are negative prompts (A1111)."""

    def __init__(self, prompts: list[str], is_negative_prompt: bool = False, width: int | None = None,
                 height: int | None = None, copy_from: Any = None) -> None:
        super().__init__()
        self.extend(prompts)
        if copy_from is None:
            copy_from = prompts
        self.is_negative_prompt = is_negative_prompt or getattr(copy_from, "is_negative_prompt", False)
        self.width = width or getattr(copy_from, "width", None)
        self.height = height or getattr(copy_from, "height", None)


class ComposableScheduledPromptConditioning:
    """One ``AND`` part: its schedules and weight."""

    def __init__(self, schedules: list[Any], weight: float = 1.0) -> None:
        self.schedules = schedules
        self.weight = weight


class MulticondLearnedConditioning:
    """The ``AND`` parts of every prompt of a batch."""

    def __init__(self, shape: tuple[int, ...], batch: list[list[ComposableScheduledPromptConditioning]]) -> None:
        self.shape = shape
        self.batch = batch


_REASON = ("unsupported: prompt conditionings are built inside Atelier's engine for each job; "
           "change p.prompt or use on_cfg_denoiser instead of calling get_learned_conditioning")


def get_learned_conditioning(model: Any, prompts: Any, steps: int, hires_steps: int | None = None,
                             use_old_scheduling: bool = False) -> Any:
    raise UnsupportedFeature(_REASON)


def get_multicond_learned_conditioning(model: Any, prompts: Any, steps: int, hires_steps: int | None = None,
                                       use_old_scheduling: bool = False) -> Any:
    raise UnsupportedFeature(_REASON)
