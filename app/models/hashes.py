"""Model file hashes in A1111's formats, and the `cache.json` hash cache (spec §5, §3.4, §2).

Pure module: hashlib/json/os only, no torch.

- `sha256_file`: full-file sha256 (AutoV2 = first 10 hex, LoRA/TI short hash = first 12 hex).
- `old_model_hash`: the legacy 8-hex "model hash" (sha256 of 64 KiB at offset 1 MiB).
- `addnet_hash_safetensors`: sha256 of a safetensors file's tensor payload (after 8-byte length + header).
- `sha256_folder`: our own content hash for a diffusers folder (A1111 has no folder checkpoints).
- `HashCache`: `{"hashes": {"<title>": {"mtime": float, "sha256": hex}}, "hashes-addnet": {...}}`;
  an entry is valid while the file's mtime is not newer than the cached one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from app.outputs.fileio import write_json_atomic

log = logging.getLogger(__name__)

BLOCK_SIZE = 1024 * 1024
OLD_HASH_OFFSET = 0x100000
OLD_HASH_LENGTH = 0x10000

SECTION_HASHES = "hashes"
SECTION_ADDNET = "hashes-addnet"

PathLike = str | os.PathLike[str]


def _update_from_stream(digest: Any, stream: Any) -> None:
    for chunk in iter(lambda: stream.read(BLOCK_SIZE), b""):
        digest.update(chunk)


def sha256_file(path: PathLike) -> str:
    """Full-file sha256 as 64 lowercase hex, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        _update_from_stream(digest, stream)
    return digest.hexdigest()


def old_model_hash(path: PathLike) -> str:
    """A1111's legacy model hash: sha256 of bytes [0x100000, 0x110000), first 8 hex.

    A file shorter than 1 MiB hashes the empty string (`e3b0c442`); a missing file gives "NOFILE".
    """
    try:
        with open(path, "rb") as stream:
            stream.seek(OLD_HASH_OFFSET)
            data = stream.read(OLD_HASH_LENGTH)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return "NOFILE"
    return hashlib.sha256(data).hexdigest()[:8]


SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024


def safetensors_header_length(stream: Any, name: str) -> int:
    """Read and check the 8-byte little-endian header length at the start of a safetensors *stream*;
    ValueError naming the file when it is truncated or does not fit the file."""
    size_bytes = stream.read(8)
    if len(size_bytes) < 8:
        raise ValueError(f"{name}: not a safetensors file (shorter than the 8-byte header length)")
    header_len = int.from_bytes(size_bytes, "little")
    file_size = os.fstat(stream.fileno()).st_size
    if header_len < 2 or header_len > SAFETENSORS_MAX_HEADER or header_len > file_size - 8:
        raise ValueError(f"{name}: not a safetensors file (header length {header_len} is invalid for a {file_size}-byte file)")
    return header_len


def addnet_hash_safetensors(path: PathLike) -> str:
    """sha256 of the bytes after the 8-byte header length and the JSON header (the tensor payload).

    This is the "addnet" hash A1111 uses for `.safetensors` LoRAs (`Lora hashes:` shows 12 hex).
    """
    with open(path, "rb") as stream:
        header_len = safetensors_header_length(stream, os.fspath(path))
        stream.seek(8 + header_len)
        digest = hashlib.sha256()
        _update_from_stream(digest, stream)
    return digest.hexdigest()


def _folder_files(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def sha256_folder(folder: PathLike) -> str:
    """Content hash of a folder (diffusers model): sha256 over each non-hidden file, in sorted
    relative-path order, of `relpath (posix, utf-8) + b"\\0" + file bytes + b"\\0"`."""
    base = Path(folder)
    digest = hashlib.sha256()
    for file in _folder_files(base):
        digest.update(file.relative_to(base).as_posix().encode("utf-8") + b"\0")
        with open(file, "rb") as stream:
            _update_from_stream(digest, stream)
        digest.update(b"\0")
    return digest.hexdigest()


def path_mtime(path: PathLike) -> float:
    """mtime of a file; for a folder, the newest mtime of the folder and every file inside it."""
    p = Path(path)
    mtime = os.path.getmtime(p)
    if p.is_dir():
        for file in _folder_files(p):
            mtime = max(mtime, os.path.getmtime(file))
    return mtime


def sha256_path(path: PathLike) -> str:
    """`sha256_file` for a file, `sha256_folder` for a folder."""
    return sha256_folder(path) if Path(path).is_dir() else sha256_file(path)


_FILE_LOCKS: dict[str, threading.RLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path | None) -> threading.RLock:
    """One lock per cache file per process, so several HashCache objects on one file do not race."""
    if path is None:
        return threading.RLock()
    key = os.path.abspath(path)
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.RLock())


class HashCache:
    """The `hashes` sections of A1111's `cache.json`, thread-safe, written atomically.

    Titles are A1111's: `checkpoint/<name>`, `lora/<name>`, `textual_inversion/<name>`, and for
    VAEs we use `vae/<basename>` (A1111 uses the constant `vae`, which we also write, see `Catalog`).
    Unknown top-level sections of an existing cache.json are preserved. A corrupt file is reported
    (logged and kept as `cache.json.corrupt`) and replaced by a fresh one on the next write.
    With `cache_file=None` the cache lives in memory only.
    """

    def __init__(self, cache_file: PathLike | None) -> None:
        self.cache_file: Path | None = Path(cache_file) if cache_file is not None else None
        self.load_error: str | None = None
        self._lock = _lock_for(self.cache_file)
        self._data: dict[str, Any] | None = None
        self._dirty: set[tuple[str, str]] = set()

    # -- loading ---------------------------------------------------------------------------
    def _read_disk(self, *, report: bool) -> dict[str, Any]:
        if self.cache_file is None or not self.cache_file.exists():
            return {}
        try:
            data = json.loads(self.cache_file.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"top level is {type(data).__name__}, expected an object")
            return data
        except (OSError, ValueError) as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            if report:
                self.load_error = f"{self.cache_file}: corrupt hash cache ({exc}); starting with an empty cache"
                log.warning(self.load_error)
                try:
                    os.replace(self.cache_file, self.cache_file.with_name(self.cache_file.name + ".corrupt"))
                except OSError:
                    pass
            return {}

    def _loaded(self) -> dict[str, Any]:
        if self._data is None:
            self._data = self._read_disk(report=True)
        return self._data

    def reload(self) -> None:
        """Forget the in-memory copy; the next access re-reads cache.json."""
        with self._lock:
            self._data = None
            self._dirty.clear()

    def reread(self) -> None:
        """Take what another process wrote (the worker hashes the files it loads or merges): the next access re-reads
        cache.json. Entries of ours that could not be saved yet are kept (then nothing is re-read)."""
        with self._lock:
            if not self._dirty:
                self._data = None

    def section(self, section: str = SECTION_HASHES) -> dict[str, dict[str, Any]]:
        """A copy of one section (title → {"mtime", "sha256"})."""
        with self._lock:
            value = self._loaded().get(section)
            return {k: dict(v) for k, v in value.items() if isinstance(v, dict)} if isinstance(value, dict) else {}

    # -- lookups ---------------------------------------------------------------------------
    def cached(self, title: str, path: PathLike, *, section: str = SECTION_HASHES) -> str | None:
        """The cached sha256 for `title` if present and the file's mtime is not newer, else None."""
        try:
            ondisk_mtime = path_mtime(path)
        except OSError:
            return None
        with self._lock:
            sec = self._loaded().get(section)
            entry = sec.get(title) if isinstance(sec, dict) else None
        if not isinstance(entry, dict):
            return None
        sha = entry.get("sha256")
        mtime = entry.get("mtime", 0)
        if not isinstance(sha, str) or not sha or not isinstance(mtime, (int, float)):
            return None
        if ondisk_mtime > mtime:
            return None
        return sha

    def store(
        self,
        title: str,
        path: PathLike | None,
        sha256: str,
        *,
        section: str = SECTION_HASHES,
        mtime: float | None = None,
    ) -> None:
        """Record a hash (with the file's current mtime unless given) and save cache.json."""
        if mtime is None:
            if path is None:
                raise ValueError(f"HashCache.store({title!r}): need a path or an mtime")
            mtime = path_mtime(path)
        with self._lock:
            data = self._loaded()
            sec = data.get(section)
            if not isinstance(sec, dict):
                sec = data[section] = {}
            sec[title] = {"mtime": float(mtime), "sha256": sha256}
            self._dirty.add((section, title))
            self._save()

    def sha256(
        self,
        path: PathLike,
        title: str,
        *,
        addnet: bool = False,
        compute: bool = True,
        hasher: Callable[[PathLike], str] | None = None,
    ) -> str | None:
        """The cached hash, or (when `compute`) hash the file now, store it and return it.

        `addnet=True` uses `addnet_hash_safetensors` and the `hashes-addnet` section (LoRA safetensors).
        Returns None when not cached and `compute` is False, or when the file does not exist.
        """
        section = SECTION_ADDNET if addnet else SECTION_HASHES
        value = self.cached(title, path, section=section)
        if value is not None or not compute:
            return value
        if not os.path.exists(path):
            return None
        if hasher is None:
            hasher = addnet_hash_safetensors if addnet else sha256_path
        mtime = path_mtime(path)
        log.info("Calculating sha256 for %s", os.fspath(path))
        value = hasher(path)  # outside the lock: big files take seconds
        self.store(title, None, value, section=section, mtime=mtime)
        return value

    # -- saving ----------------------------------------------------------------------------
    def _save(self) -> None:
        """Merge our changed entries into the current file contents and replace it atomically."""
        if self.cache_file is None:
            self._dirty.clear()
            return
        assert self._data is not None
        merged = self._read_disk(report=False)
        for section, title in self._dirty:
            sec = merged.get(section)
            if not isinstance(sec, dict):
                sec = merged[section] = {}
            sec[title] = self._data[section][title]
        for key, value in self._data.items():
            merged.setdefault(key, value)
        try:
            write_json_atomic(self.cache_file, merged)
        except OSError as exc:
            log.warning("could not write hash cache %s: %s", self.cache_file, exc)
            return
        self._data = merged
        self._dirty.clear()
