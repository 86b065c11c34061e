"""``modules.errors``: A1111's error reporting helpers, as log lines in Atelier's log.

A1111's own scripts (``prompts_from_file.py``) and many extensions import ``report``, ``display``,
``display_once``, ``run`` or the older ``print_error``; each writes the message (and the traceback when
asked) to the ``modules.errors`` logger instead of stderr. ``get_exceptions()`` returns the recorded ones, newest
first, as A1111's does for its sysinfo page.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from typing import Any

log = logging.getLogger("modules.errors")

_recorded: list[dict[str, Any]] = []
_seen: set[str] = set()
_MAX_RECORDED = 5


def record_exception() -> None:
    """Remember the exception being handled (the last five are kept)."""
    _, exc, tb = sys.exc_info()
    if exc is None:
        return
    _recorded.append({"exception": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_tb(tb) if tb is not None else []})
    del _recorded[:-_MAX_RECORDED]


def get_exceptions() -> list[dict[str, Any]]:
    return list(reversed(_recorded))


def report(message: str, *, exc_info: bool = False) -> None:
    """Log ``message`` as an error, with the current traceback when ``exc_info``."""
    if exc_info:
        record_exception()
    log.error(message, exc_info=exc_info)


def print_error(message: str, exc_info: bool = False) -> None:
    """Older name of ``report``."""
    report(message, exc_info=exc_info)


def print_error_explanation(message: str) -> None:
    log.error("%s", message.strip())


def display(e: BaseException, task: str, *, full_traceback: bool = False) -> None:
    """Log an exception raised while doing ``task``."""
    record_exception()
    log.error("%s: %s: %s", task, type(e).__name__, e, exc_info=e if full_traceback else None)


def display_once(e: BaseException, task: str) -> None:
    """``display``, once per task."""
    if task in _seen:
        return
    _seen.add(task)
    display(e, task)


def run(code: Callable[[], Any], task: str) -> None:
    """Call ``code()``; an exception is logged for ``task`` instead of raised."""
    try:
        code()
    except Exception as e:  # noqa: BLE001 - A1111's contract: report and go on
        display(e, task)


def check_versions() -> None:
    """A1111 warns about torch/xformers/gradio versions here; Atelier pins them itself (nothing to check)."""
