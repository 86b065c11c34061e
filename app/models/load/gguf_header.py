"""Reading the header of a GGUF file (llama.cpp / city96 quantised models): metadata and tensor names and shapes.

Only the header is read, never the tensor data, so family detection of a multi-GB file costs milliseconds. The
reader is defensive: counts and lengths are bounded (``MAX_*``), a truncated or malformed file raises ``ValueError``
naming it. Shapes are returned in PyTorch order (GGUF stores dimensions innermost first).
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"GGUF"
MAX_TENSORS = 1_000_000
MAX_KV = 100_000
MAX_STRING = 1 << 20
MAX_ARRAY = 50_000_000
#: GGUF value types -> struct format of a scalar (8: string, 9: array are handled apart)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
#: ggml tensor types by id (the common ones; others are reported as their number)
GGML_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 10: "Q2_K", 11: "Q3_K",
              12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 30: "BF16"}
#: ggml types that are plain floats (everything else is a block quantization)
FLOAT_TYPES = ("F32", "F16", "BF16")


def is_gguf(path: str | Path) -> bool:
    """True when the file starts with the GGUF magic."""
    with open(path, "rb") as f:
        return f.read(4) == MAGIC


class _Reader:
    def __init__(self, stream: BinaryIO, name: str) -> None:
        self.stream, self.name = stream, name

    def take(self, n: int) -> bytes:
        data = self.stream.read(n)
        if len(data) != n:
            raise ValueError(f"{self.name}: truncated GGUF header")
        return data

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.scalar("<Q")
        if n > MAX_STRING:
            raise ValueError(f"{self.name}: GGUF string of {n} bytes (corrupt header?)")
        return self.take(n).decode("utf-8", errors="replace")

    def value(self, vtype: int, keep: bool) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == 8:
            return self.string()
        if vtype == 9:
            itype, count = self.scalar("<I"), self.scalar("<Q")
            if count > MAX_ARRAY:
                raise ValueError(f"{self.name}: GGUF array of {count} items (corrupt header?)")
            items = [self.value(itype, keep) for _ in range(count)]
            return items if keep and count <= 64 else f"<array of {count}>"
        raise ValueError(f"{self.name}: unknown GGUF value type {vtype}")


def read_gguf_header(path: str | Path) -> tuple[dict[str, Any], dict[str, tuple[tuple[int, ...], str]]]:
    """(metadata, ``{tensor name: (shape, ggml type)}``) of a GGUF file; long arrays are summarised."""
    name = str(path)
    with open(path, "rb") as f:
        r = _Reader(f, name)
        if r.take(4) != MAGIC:
            raise ValueError(f"{name}: not a GGUF file")
        version = r.scalar("<I")
        if version not in (2, 3):
            raise ValueError(f"{name}: unsupported GGUF version {version}")
        n_tensors, n_kv = r.scalar("<Q"), r.scalar("<Q")
        if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
            raise ValueError(f"{name}: GGUF header claims {n_tensors} tensors and {n_kv} keys (corrupt?)")
        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key = r.string()
            meta[key] = r.value(r.scalar("<I"), keep=True)
        tensors: dict[str, tuple[tuple[int, ...], str]] = {}
        for _ in range(n_tensors):
            tname = r.string()
            n_dims = r.scalar("<I")
            if n_dims > 8:
                raise ValueError(f"{name}: tensor {tname} has {n_dims} dimensions (corrupt header?)")
            dims = [r.scalar("<Q") for _ in range(n_dims)]
            ttype = r.scalar("<I")
            r.scalar("<Q")  # data offset
            tensors[tname] = (tuple(reversed(dims)), GGML_TYPES.get(ttype, str(ttype)))
    return meta, tensors


def quant_label(tensors: Mapping[str, tuple[tuple[int, ...], str]]) -> str:
    """The quantization a file is known by: the non-float ggml type holding the most weight elements (city96's
    ``Q4_K_S`` files keep small or odd-sized tensors in other types), else the most common float type.
    *tensors* is ``read_gguf_header``'s ``{name: (shape, ggml type)}``."""
    elements: Counter[str] = Counter()
    floats: Counter[str] = Counter()
    for shape, ggml_type in tensors.values():
        n = 1
        for d in shape:
            n *= int(d)
        (floats if ggml_type in FLOAT_TYPES else elements)[ggml_type] += n
    if elements:
        return elements.most_common(1)[0][0]
    return floats.most_common(1)[0][0] if floats else "?"
