"""Model files read and written one tensor at a time, for the Checkpoint Merger (`merge.py`).

Reading: safetensors through the lazy `safe_open` (dtype and shape from the header, a tensor only when asked); other
formats through the safe loader, whole. Writing: `write_safetensors` lays out the header from a plan (key, dtype,
shape) first, then writes each tensor's bytes as it comes, so the writer never holds more than one tensor (the
library's `save_file` needs the whole dict, plus a bytes copy of it).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

#: safetensors dtype names
DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
}
TORCH_DTYPES = {v: k for k, v in DTYPES.items()}


@dataclass(frozen=True)
class Spec:
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * TORCH_DTYPES[self.dtype].itemsize

    @property
    def is_float(self) -> bool:
        return TORCH_DTYPES[self.dtype].is_floating_point


class Tensors(Protocol):
    """A model file's tensors, read one at a time."""

    def keys(self) -> list[str]: ...
    def get(self, key: str) -> torch.Tensor: ...
    def spec(self, key: str) -> Spec: ...


@dataclass
class _Lazy:
    handle: Any

    def keys(self) -> list[str]:
        return list(self.handle.keys())

    def get(self, key: str) -> torch.Tensor:
        return self.handle.get_tensor(key)

    def spec(self, key: str) -> Spec:
        part = self.handle.get_slice(key)
        return Spec(str(part.get_dtype()), tuple(int(n) for n in part.get_shape()))


@dataclass
class _Whole:
    tensors: dict[str, torch.Tensor]

    def keys(self) -> list[str]:
        return list(self.tensors)

    def get(self, key: str) -> torch.Tensor:
        return self.tensors[key]

    def spec(self, key: str) -> Spec:
        t = self.tensors[key]
        if t.dtype not in DTYPES:
            raise ValueError(f"tensor {key} has dtype {t.dtype}, which safetensors cannot store")
        return Spec(DTYPES[t.dtype], tuple(t.shape))


def open_tensors(path: str | Path, stack: ExitStack) -> tuple[Tensors, dict[str, str]]:
    """(tensors, safetensors metadata) of a model file: lazily for safetensors, else through the safe loader."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        handle = stack.enter_context(safe_open(str(path), framework="pt", device="cpu"))
        return _Lazy(handle), dict(handle.metadata() or {})
    from app.models.load.checkpoint_io import read_state_dict

    return _Whole(read_state_dict(path)), {}


def write_safetensors(path: Path, plan: list[tuple[str, Spec]], tensors: Iterable[tuple[str, torch.Tensor]],
                      metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file whose tensors are `plan` (in order), taking their values from `tensors` one by one
    (same keys, same order, matching dtype and shape: anything else is a RuntimeError and the file is incomplete)."""
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for key, spec in plan:
        header[key] = {"dtype": spec.dtype, "shape": list(spec.shape), "data_offsets": [offset, offset + spec.nbytes]}
        offset += spec.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    expected = iter(plan)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for key, tensor in tensors:
            want_key, spec = next(expected, (None, None))
            if key != want_key or spec is None or DTYPES.get(tensor.dtype) != spec.dtype \
                    or tuple(tensor.shape) != spec.shape:
                raise RuntimeError(f"merge writer: got {key} {tensor.dtype} {tuple(tensor.shape)}, expected "
                                   f"{want_key} {spec}")
            flat = tensor.detach().contiguous().reshape(-1)
            f.write(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
        if next(expected, None) is not None:
            raise RuntimeError("merge writer: fewer tensors than planned")
        f.flush()
