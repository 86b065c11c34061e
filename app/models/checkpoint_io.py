"""Reading model files safely: format detection by bytes, state-dict loading without code execution.

- ``detect_file_format(path)`` looks at the bytes, never the extension (a ``.ckpt`` that is really a
  safetensors file is read as safetensors).
- ``read_state_dict(path)`` reads safetensors directly and pickles with ``torch.load(weights_only=True)``,
  which refuses any pickled object that is not a tensor/container/primitive. A refusal becomes
  ``UnsafeCheckpointError`` with torch's precise reason; the file is never executed. Only
  ``allow_unsafe=True`` (the ``--disable-safe-unpickle`` flag) loads a full pickle, with a warning.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any, Literal

import torch

from app.hashes import SAFETENSORS_MAX_HEADER
from app.models.catalog_scan import read_safetensors_header

logger = logging.getLogger(__name__)

FileFormat = Literal["safetensors", "torch-zip", "pickle", "diffusers-folder"]


class CheckpointLoadError(ValueError):
    """A model file could not be read (truncated, corrupt, wrong kind); the message names the file."""


class UnsafeCheckpointError(CheckpointLoadError):
    """A pickle holds non-tensor objects and was refused by the safe loader."""


def detect_file_format(path: str | Path) -> FileFormat:
    """The container format of *path*, decided from its bytes (``ValueError`` naming the file if unknown)."""
    path = Path(path)
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return "diffusers-folder"
        raise ValueError(f"not a model file or diffusers folder (no model_index.json): {path}")
    if not path.is_file():
        raise ValueError(f"model file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(16)
    size = path.stat().st_size
    if len(head) >= 9 and head[8:9] == b"{":
        header_len = int.from_bytes(head[:8], "little")
        if 2 <= header_len <= SAFETENSORS_MAX_HEADER:
            return "safetensors"
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise CheckpointLoadError(f"corrupt zip archive (torch checkpoint?): {path}: {exc}") from exc
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "torch-zip"
        raise ValueError(f"a zip archive but not a torch checkpoint (no data.pkl): {path}")
    if head[:1] == b"\x80":
        return "pickle"
    shown = head[:8].hex(" ") if head else "empty file"
    raise ValueError(f"unrecognised model file format: {path} (first bytes: {shown}, size {size})")


def _unpickling_reason(exc: BaseException) -> str:
    """The informative line of torch's weights-only refusal (e.g. 'GLOBAL posix.system ...')."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if "GLOBAL" in ln or "Unsupported" in ln or "unsupported" in ln:
            return ln
    return lines[-1] if lines else type(exc).__name__


def _torch_load(path: Path, fmt: FileFormat, weights_only: bool, device: str | torch.device) -> Any:
    # torch.load dispatches on a ".safetensors" name; a file object keeps the decision on the bytes.
    if fmt == "torch-zip" and not str(path).lower().endswith(".safetensors"):
        return torch.load(path, map_location=device, weights_only=weights_only, mmap=True)
    with open(path, "rb") as f:
        return torch.load(f, map_location=device, weights_only=weights_only)


def _load_pickle(path: Path, fmt: FileFormat, allow_unsafe: bool, device: str | torch.device) -> Any:
    if allow_unsafe:
        logger.warning("loading %s with full unpickling (--disable-safe-unpickle): it can run code", path)
        return _torch_load(path, fmt, False, device)
    try:
        return _torch_load(path, fmt, True, device)
    except pickle.UnpicklingError as exc:
        reason = _unpickling_reason(exc)
        if "GLOBAL" not in reason and "nsupported" not in reason:
            raise
        raise UnsafeCheckpointError(
            f"refused to load {path}: it contains pickled Python objects that are not tensors ({reason}). "
            "The file was not executed. Convert it to .safetensors, or start with --disable-safe-unpickle "
            "only if you trust its source."
        ) from None


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointLoadError(f"not a state dict: {path} holds a {type(obj).__name__}")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointLoadError(f"no tensors found in {path}")
    return tensors


def read_state_dict(
    path: str | Path, allow_unsafe: bool = False, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """All tensors of a single model file, ``{"state_dict": ...}`` unwrapped; non-tensor entries dropped."""
    path = Path(path)
    fmt = detect_file_format(path)
    if fmt == "diffusers-folder":
        raise ValueError(f"{path} is a diffusers folder, not a single model file")
    try:
        if fmt == "safetensors":
            from safetensors.torch import load_file

            return _unwrap(load_file(str(path), device=str(device)), path)
        return _unwrap(_load_pickle(path, fmt, allow_unsafe, device), path)
    except CheckpointLoadError:
        raise
    except Exception as exc:  # truncated / corrupt containers raise many different types
        raise CheckpointLoadError(f"could not read {fmt} file {path}: {type(exc).__name__}: {exc}") from exc


def read_safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The ``__metadata__`` dict of a safetensors file (empty if none)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:
        raise CheckpointLoadError(f"could not read safetensors header of {path}: {exc}") from exc


def read_key_shapes(path: str | Path, allow_unsafe: bool = False) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of a model file; for safetensors only the header is read (fast on 7 GB files)."""
    path = Path(path)
    if detect_file_format(path) == "safetensors":
        try:
            header = read_safetensors_header(path)
        except (OSError, ValueError) as exc:
            raise CheckpointLoadError(f"could not read safetensors header of {path}: {exc}") from exc
        return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    return {k: tuple(v.shape) for k, v in read_state_dict(path, allow_unsafe=allow_unsafe).items()}
