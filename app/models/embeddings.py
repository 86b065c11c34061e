"""Textual-inversion embeddings database (A1111 behaviour, spec §2).

Files under the embeddings folders (recursive, symlinks followed) are read by ``app.models.embedding_files`` (formats
and layouts there). An embedding whose width does not fit the current model goes to ``skipped`` with a reason; a file
that cannot be read, or whose vectors hold NaN/Inf, goes to ``errors`` (message naming the file) and never stops the
others.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from app.models.embedding_files import (
    IMAGE_EXTS,
    TENSOR_EXTS,
    Embedding,
    EmbeddingFormatError,
    Hasher,
    load_embedding_file,
)

log = logging.getLogger(__name__)


def _candidate_files(dirs: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for root in dirs:
        if not root.is_dir():
            continue
        for folder, _, names in os.walk(root, followlinks=True):
            for fn in names:
                path = Path(folder) / fn
                if path.suffix.lower() in TENSOR_EXTS | IMAGE_EXTS:
                    files.append(path)
    return sorted(files, key=lambda p: (p.parent.as_posix().lower(), p.name.lower()))


def _signature(files: list[Path]) -> tuple:
    sig = []
    for p in files:
        try:
            st = p.stat()
            sig.append((str(p), st.st_mtime_ns, st.st_size))
        except OSError:
            continue
    return tuple(sig)


class EmbeddingDatabase:
    """All textual-inversion embeddings of the embeddings folders, checked against the current model.

    ``embeddings``: name → Embedding usable with the current model; ``skipped_embeddings``: wrong width
    (each with ``skip_reason``); ``errors``: name → message for unreadable files. ``loaded`` / ``skipped``
    give the ``GET /sdapi/v1/embeddings`` shape. ``version`` increases on every reload (cache keys use it).
    """

    def __init__(self, dirs: Iterable[Path | str], hasher: Hasher | None = None) -> None:
        self.dirs = [Path(d) for d in dirs]
        self.hasher = hasher
        self.expected_dims: dict[str, int] | None = None
        self.embeddings: dict[str, Embedding] = {}
        self.skipped_embeddings: dict[str, Embedding] = {}
        self.errors: dict[str, str] = {}
        self.version = 0
        self._signature: tuple | None = None
        self._lock = threading.RLock()

    # -- API views
    @property
    def loaded(self) -> dict[str, dict[str, Any]]:
        return {name: emb.api_info() for name, emb in self.embeddings.items()}

    @property
    def skipped(self) -> dict[str, dict[str, Any]]:
        return {name: emb.api_info() for name, emb in self.skipped_embeddings.items()}

    @property
    def skip_reasons(self) -> dict[str, str]:
        return {name: emb.skip_reason for name, emb in self.skipped_embeddings.items()}

    def api_response(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {"loaded": self.loaded, "skipped": self.skipped}

    # -- loading
    def _mismatch(self, emb: Embedding, expected: Mapping[str, int] | None) -> str:
        if not expected:
            return ""
        want = sum(expected.values())
        have = emb.part_dims()
        parts = " + ".join(f"{k} {v}" for k, v in expected.items())
        if isinstance(emb.vec, dict):
            ok = all(have.get(k) == v for k, v in expected.items()) and len(expected) > 1
        else:
            ok = len(expected) == 1 and emb.shape == want
        if ok:
            return ""
        return f"vector width {emb.shape} does not match the current model's {want} ({parts})"

    def load(self, expected_dims: Mapping[str, int] | None = None, force: bool = True) -> None:
        """(Re)read every file. ``expected_dims`` e.g. ``{"clip_l": 768}`` or ``{"clip_l": 768, "clip_g": 1280}``."""
        with self._lock:
            if expected_dims is not None:
                self.expected_dims = dict(expected_dims)
            files = _candidate_files(self.dirs)
            signature = _signature(files)
            if not force and signature == self._signature:
                return
            loaded: dict[str, Embedding] = {}
            skipped: dict[str, Embedding] = {}
            errors: dict[str, str] = {}
            for path in files:
                try:
                    if path.stat().st_size == 0:
                        continue
                    emb = load_embedding_file(path)
                except Exception as exc:  # a bad file is reported, never fatal
                    msg = (
                        str(exc)
                        if isinstance(exc, EmbeddingFormatError)
                        else f"{path.name}: {type(exc).__name__}: {exc}"
                    )
                    errors[path.stem] = msg
                    log.warning("textual inversion: skipping %s: %s", path, msg)
                    continue
                if emb is None:
                    continue
                emb._hasher = self.hasher
                emb.skip_reason = self._mismatch(emb, self.expected_dims)
                loaded.pop(emb.name, None)
                skipped.pop(emb.name, None)
                (skipped if emb.skip_reason else loaded)[emb.name] = emb
            self.embeddings, self.skipped_embeddings, self.errors = loaded, skipped, errors
            self._signature = signature
            self.version += 1

    def refresh_if_changed(self) -> bool:
        """Reload when the set of files or their mtimes/sizes changed; True when it reloaded."""
        with self._lock:
            before = self.version
            self.load(None, force=False)
            return self.version != before

    def set_model(self, expected_dims: Mapping[str, int]) -> None:
        """Re-check every embedding against a newly loaded model (A1111 force-reloads after a model load)."""
        self.load(expected_dims, force=True)

    def get(self, name: str) -> Embedding | None:
        return self.embeddings.get(name)
