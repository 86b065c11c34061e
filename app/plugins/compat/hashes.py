"""``modules.hashes``: ``sha256`` / ``sha256_from_cache`` over Atelier's ``cache.json`` (``app.models.hashes.HashCache``)."""

from __future__ import annotations

import threading
from typing import Any

from app.models.hashes import HashCache, sha256_file

_lock = threading.Lock()
_caches: dict[str, HashCache] = {}


def _cache() -> HashCache:
    from app.plugins.compat.shared import _runtime

    paths = getattr(_runtime(), "paths", None)
    key = str(getattr(paths, "cache_file", None) or "")
    with _lock:
        if key not in _caches:
            _caches[key] = HashCache(key or None)
        return _caches[key]


def sha256_from_cache(filename: str, title: str, use_addnet_hash: bool = False) -> str | None:
    """The cached hash of ``filename`` under ``title`` (e.g. ``"lora/<name>"``), None when not cached."""
    return _cache().sha256(filename, title, addnet=use_addnet_hash, compute=False)


def sha256(filename: str, title: str, use_addnet_hash: bool = False) -> str | None:
    """The cached hash, else computed now, cached and returned (None for a missing file)."""
    return _cache().sha256(filename, title, addnet=use_addnet_hash)


def calculate_sha256(filename: str) -> str:
    return sha256_file(filename)


def __getattr__(name: str) -> Any:
    raise AttributeError(f"module 'modules.hashes' has no attribute {name!r}")
