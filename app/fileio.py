"""Atomic file writes shared by settings, caches, styles and params.txt (pure: stdlib only).

A crash never leaves a half-written file under the final name: data goes to a temp file in the
same folder, is flushed and fsynced, then ``os.replace``d over the target.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text_atomic(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", newline: str | None = None) -> Path:
    """Write *text* to *path* atomically; the temp file is removed when anything fails."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline=newline) as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return target


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write *obj* as indented UTF-8 JSON (non-ASCII kept) atomically."""
    write_text_atomic(path, json.dumps(obj, indent=4, ensure_ascii=False) + "\n")
