"""Atomic file writes shared by settings, caches, styles and params.txt (pure: stdlib only).

A crash never leaves a half-written file under the final name: data goes to a temp file in the
same folder, is flushed and fsynced, then ``os.replace``d over the target. When the process dies
between the two, ``remove_stale_temp_files`` (run by the Runtime at start) deletes the leftover.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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


# -- leftovers of interrupted writes -----------------------------------------------------------------------------------
#: `write_text_atomic`'s temp name: `.<target name>.<8 random chars from mkstemp>.tmp`.
_TEXT_TMP_RE = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")
#: `app.outputs.save.save_image` (`.<32 hex>.tmp`) and `app.infotext.storage.save_image_file` (`.<name>.<32 hex>.tmp`).
_IMAGE_TMP_RE = re.compile(r"^\.(?:(?P<name>.+)\.)?[0-9a-f]{32}\.tmp$")
#: A temp file younger than this may belong to a write in progress (another instance on the same data dir).
STALE_TEMP_AGE = 60.0


def own_temp_target(name: str) -> str | None:
    """The target file name of one of our temp files (`""` for an image temp, which has none), else None."""
    for pattern in (_IMAGE_TMP_RE, _TEXT_TMP_RE):
        match = pattern.match(name)
        if match is not None:
            return match.group("name") or ""
    return None


def remove_stale_temp_files(folder: str | os.PathLike[str], *, targets: Collection[str] | None = None,
                            depth: int = 0, min_age: float = STALE_TEMP_AGE) -> list[Path]:
    """Delete the temp files our atomic writes leave when the process dies mid-write; returns what was removed.

    Only names of the exact shapes this module, `app.outputs.save` and `app.infotext.storage` create are touched; with
    `targets` only those whose target file name is listed (for folders shared with other files, such as the data
    dir). Files younger than `min_age` seconds are kept. `depth` sub-folder levels are searched (no symlinks
    followed). Errors are logged, never raised."""
    removed: list[Path] = []
    now = time.time()

    def scan(path: Path, level: int) -> None:
        try:
            entries = list(os.scandir(path))
        except OSError:
            return
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if level < depth:
                        scan(Path(entry.path), level + 1)
                    continue
                target = own_temp_target(entry.name)
                if target is None or (targets is not None and target not in targets):
                    continue
                if not entry.is_file(follow_symlinks=False) or now - entry.stat(follow_symlinks=False).st_mtime < min_age:
                    continue
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError as exc:
                log.warning("could not remove the leftover temp file %s: %s", entry.path, exc)

    scan(Path(folder), 0)
    if removed:
        log.info("removed %d temp file(s) left by interrupted writes in %s", len(removed), folder)
    return removed
