"""`UserError`: the marker of an expected failure, caused by the user's input or setup rather than by a bug.

Its message is complete and says what to do (e.g. where to put a checkpoint). Whoever reports a failure shows such
a message as it is, without the exception class name, and logs it as one line without a traceback
(`describe_error`, `is_expected`); any other exception is a bug and keeps its class name and traceback.
Our error classes that are expected join by also deriving from `UserError` (next to their builtin base, which
keeps the API's status mapping: ValueError → 422, LookupError → 404). Pure module.
"""

from __future__ import annotations


class UserError(Exception):
    """An expected failure whose message tells the user what happened and what to do."""


def is_expected(exc: BaseException) -> bool:
    """True for our expected errors (shown as is, logged without a traceback)."""
    return isinstance(exc, UserError)


def describe_error(exc: BaseException) -> str:
    """The text a user sees for a failure: the message of an expected error, else `ClassName: message`
    (out-of-memory errors get advice)."""
    if is_expected(exc):
        return str(exc)
    name = type(exc).__name__
    if "OutOfMemory" in name:
        return f"{name}: out of memory ({exc}). Try a smaller size or batch, or --medvram/--lowvram."
    return f"{name}: {exc}"
