"""File-system helpers for the model catalog: natural sort, folder walks, safetensors headers, sidecars.

Pure module (no torch). Walks follow symlinks (guarding against cycles) and skip hidden files and folders,
like A1111's `walk_files` with `list_hidden_files` off.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from app.models.hashes import safetensors_header_length

log = logging.getLogger(__name__)

#: Preview image extensions A1111 looks for next to a network file, in order.
PREVIEW_EXTENSIONS: tuple[str, ...] = ("png", "jpg", "jpeg", "webp", "gif")

_DIGITS = re.compile(r"(\d+)")


def natural_sort_key(text: str) -> list[int | str]:
    """A1111's alphanumeric key: digit runs compare as numbers, the rest case-insensitively."""
    return [int(part) if part.isdigit() else part.lower() for part in _DIGITS.split(text)]


def _walk(root: Path, prune: Callable[[Path], bool] | None) -> Iterator[tuple[Path, list[str]]]:
    """(folder, file names) for `root` and its non-hidden sub-folders, following symlinks once each.

    `prune(folder)` → True stops the walk from descending into that folder: it is yielded with no files.
    """
    seen: set[str] = set()
    for current, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        folder = Path(current)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if prune is not None and folder != root and prune(folder):
            dirs[:] = []
            files = []
        yield folder, [f for f in files if not f.startswith(".")]


def walk_files(
    dirs: Iterable[Path],
    extensions: Iterable[str],
    *,
    exclude_suffixes: Iterable[str] = (),
    prune: Callable[[Path], bool] | None = None,
) -> list[Path]:
    """Files under each dir (recursively) whose extension (case-insensitive, with dot) is in `extensions`.

    Order: dirs in the given order; inside one dir, folders by natural sort of their path and files by
    natural sort of their name (A1111's order). Files ending in one of `exclude_suffixes`
    (case-insensitive) are left out, as are dangling symlinks and duplicates (same real path).
    """
    wanted = {e.lower() for e in extensions}
    excluded = tuple(s.lower() for s in exclude_suffixes)
    out: list[Path] = []
    seen: set[str] = set()
    for base in dirs:
        base = Path(base)
        if not base.is_dir():
            continue
        walked = sorted(_walk(base, prune), key=lambda item: natural_sort_key(str(item[0])))
        for folder, names in walked:
            for name in sorted(names, key=natural_sort_key):
                lower = name.lower()
                if os.path.splitext(lower)[1] not in wanted or lower.endswith(excluded):
                    continue
                path = folder / name
                if not path.is_file():
                    continue
                real = os.path.realpath(path)
                if real not in seen:
                    seen.add(real)
                    out.append(path)
    return out


def walk_dirs(dirs: Iterable[Path], predicate: Callable[[Path], bool]) -> list[Path]:
    """Sub-folders (not the roots themselves) for which `predicate` holds; the walk does not enter them."""
    out: list[Path] = []
    for base in dirs:
        base = Path(base)
        if not base.is_dir():
            continue
        for folder, _ in sorted(_walk(base, predicate), key=lambda item: natural_sort_key(str(item[0]))):
            if folder != base and predicate(folder):
                out.append(folder)
    return out


def read_safetensors_header(path: Path | str) -> dict[str, Any]:
    """The parsed JSON header of a safetensors file, without reading the tensors.

    Raises ValueError naming the file when the 8-byte length or the JSON header is truncated or invalid.
    """
    name = os.fspath(path)
    with open(path, "rb") as stream:
        header_len = safetensors_header_length(stream, name)
        raw = stream.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{name}: invalid safetensors JSON header ({exc})") from exc
    if not isinstance(header, dict):
        raise ValueError(f"{name}: invalid safetensors header (a JSON {type(header).__name__}, expected an object)")
    return header


def read_safetensors_metadata(path: Path | str) -> tuple[dict[str, str], list[str]]:
    """(`__metadata__` dict, tensor names in header order) of a safetensors file; ValueError if invalid."""
    header = read_safetensors_header(path)
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise ValueError(f"{os.fspath(path)}: invalid safetensors header (__metadata__ is not an object)")
    names = [key for key in header if key != "__metadata__"]
    return dict(metadata), names


def decode_metadata_values(metadata: dict[str, Any]) -> dict[str, Any]:
    """A1111's reading of safetensors metadata: string values that start with "{" and parse as JSON become
    objects (e.g. `ss_tag_frequency`); everything else is kept as is."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        out[key] = value
        if isinstance(value, str) and value.startswith("{"):
            try:
                out[key] = json.loads(value)
            except ValueError:
                pass
    return out


def read_user_metadata(model_file: Path | str) -> dict[str, Any]:
    """The sidecar `<file without extension>.json` (A1111 extra-networks user metadata), or {}.

    A broken sidecar is logged and ignored.
    """
    sidecar = Path(os.path.splitext(os.fspath(model_file))[0] + ".json")
    if not sidecar.is_file():
        return {}
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable user metadata %s: %s", sidecar, exc)
        return {}
    if not isinstance(data, dict):
        log.warning("ignoring user metadata %s: expected a JSON object, got %s", sidecar, type(data).__name__)
        return {}
    return data


def find_preview(model_file: Path | str) -> Path | None:
    """`<stem>.png`, `<stem>.preview.png`, then the same for jpg/jpeg/webp/gif (A1111's order)."""
    stem = os.path.splitext(os.fspath(model_file))[0]
    for ext in PREVIEW_EXTENSIONS:
        for candidate in (f"{stem}.{ext}", f"{stem}.preview.{ext}"):
            if os.path.isfile(candidate):
                return Path(candidate)
    return None
