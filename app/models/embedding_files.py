"""Textual-inversion embedding files (A1111 behaviour, spec §2): the ``Embedding`` one file gives, the formats it
is read from, and ``ti_hashes`` for the infotext. The database over the embeddings folders is ``app.models.embeddings``.

Formats: ``.pt``/``.bin`` (torch pickle, loaded only with ``weights_only=True``; TorchScript refused),
``.safetensors`` (the format is decided by the bytes, by ``checkpoint_io.load_model_file``), and
``.png``/``.webp``/``.jxl``/``.avif`` (``sd-ti-embedding`` text chunk, or data hidden in the pixels).
The data layouts are: ``string_to_param`` (A1111), ``clip_l`` + ``clip_g`` (SDXL), or a single tensor
(diffusers concept / ``emb_params``). The name is the file name without its last extension (for images
the ``name`` stored inside wins). A file that cannot be read, or whose vectors hold NaN/Inf, raises
``EmbeddingFormatError`` naming the file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from app.models.load.checkpoint_io import CheckpointLoadError, load_model_file

TENSOR_EXTS = {".pt", ".bin", ".safetensors"}
IMAGE_EXTS = {".png", ".webp", ".jxl", ".avif"}
Hasher = Any  # HashCache-like (``.sha256(path, title)``) or ``Callable[[Path, str], str]``


class EmbeddingFormatError(ValueError):
    """A file is not a textual-inversion embedding we can read (the message names the file)."""


@dataclass(eq=False)
class Embedding:
    """One textual-inversion embedding: ``vec`` is ``[n, dim]`` or ``{"clip_l": …, "clip_g": …}`` (float32, CPU)."""

    name: str
    vec: torch.Tensor | dict[str, torch.Tensor]
    filename: str = ""
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    skip_reason: str = ""
    _hasher: Hasher | None = field(default=None, repr=False)
    _sha256: str | None = field(default=None, repr=False)

    @property
    def vectors(self) -> int:
        """Number of token slots the embedding occupies (rows; SDXL: rows of clip_g)."""
        if isinstance(self.vec, dict):
            return int(self.vec["clip_g"].shape[0])
        return int(self.vec.shape[0])

    @property
    def shape(self) -> int:
        """Vector width as A1111 reports it (SDXL: width of clip_g + width of clip_l)."""
        if isinstance(self.vec, dict):
            return int(self.vec["clip_g"].shape[-1] + self.vec["clip_l"].shape[-1])
        return int(self.vec.shape[-1])

    def part_dims(self) -> dict[str, int]:
        if isinstance(self.vec, dict):
            return {k: int(v.shape[-1]) for k, v in self.vec.items()}
        return {"": int(self.vec.shape[-1])}

    def vectors_for(self, part: str) -> torch.Tensor:
        """The ``[n, dim]`` rows for one text encoder (``clip_l``/``clip_g``/``clip_h``)."""
        if isinstance(self.vec, dict):
            if part not in self.vec:
                raise KeyError(f"embedding {self.name!r} has no {part!r} part (has {sorted(self.vec)})")
            return self.vec[part]
        return self.vec

    @property
    def sha256(self) -> str:
        """sha256 of the whole file (computed once, through the hash cache when one is given)."""
        if self._sha256 is None:
            key = f"textual_inversion/{self.name}"
            path = Path(self.filename)
            value = None
            if self._hasher is not None:  # a HashCache (``.sha256(path, title)``) or a callable(path, title)
                method = getattr(self._hasher, "sha256", None)
                value = method(path, key) if callable(method) else self._hasher(path, key)
            self._sha256 = value or _sha256_file(path)
        return self._sha256

    @property
    def shorthash(self) -> str:
        """First 12 hex digits of the file's sha256 (used in ``TI hashes``)."""
        return self.sha256[:12]

    def api_info(self) -> dict[str, Any]:
        """The ``GET /sdapi/v1/embeddings`` item."""
        return {
            "step": self.step,
            "sd_checkpoint": self.sd_checkpoint,
            "sd_checkpoint_name": self.sd_checkpoint_name,
            "shape": self.shape,
            "vectors": self.vectors,
        }


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ti_hashes(used: Iterable[Embedding]) -> str:
    """Infotext value for ``TI hashes`` (unquoted): ``"name1: hash12, name2: hash12"``; ":" and "," stripped from names."""
    seen: dict[str, str] = {}
    for emb in used:
        name = emb.name.replace(":", "").replace(",", "")
        seen.setdefault(name, emb.shorthash)
    return ", ".join(f"{name}: {h}" for name, h in seen.items())


def _decode_json_tensors(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"TORCHTENSOR"}:
            return torch.tensor(obj["TORCHTENSOR"], dtype=torch.float32)
        return {k: _decode_json_tensors(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode_json_tensors(v) for v in obj]
    return obj


def embedding_from_b64(text: str) -> Any:
    """Decode the ``sd-ti-embedding`` PNG text chunk: base64 of JSON with ``{"TORCHTENSOR": nested list}``."""
    return _decode_json_tensors(json.loads(base64.b64decode(text)))


def _lcg_low_nibbles(count: int) -> Any:
    """The XOR key stream A1111 hides pixel data with: LCG (m=2^32, a=1664525, c=1013904223) mod 255, & 0x0F."""
    out = np.empty(count, dtype=np.uint8)
    seed = 0
    for i in range(count):
        seed = (1664525 * seed + 1013904223) % 4294967296
        out[i] = (seed % 255) & 0x0F
    return out


def _crop_black(arr: Any) -> Any:
    mask = (arr > 0).all(2)
    cols, rows = mask.any(0), mask.any(1)
    if not cols.any():
        return arr[:0, :0]
    c0, c1 = cols.argmax(), mask.shape[1] - cols[::-1].argmax()
    r0, r1 = rows.argmax(), mask.shape[0] - rows[::-1].argmax()
    return arr[r0:r1, c0:c1]


def extract_image_data_embed(image: Any) -> Any | None:
    """Recover embedding data hidden in the pixels (side blocks left/right of the picture); None if absent."""
    arr = _crop_black(np.asarray(image.convert("RGB"), dtype=np.uint8)) & 0x0F
    black_cols = np.where(arr.sum(axis=(0, 2)) == 0)[0]
    if black_cols.shape[0] < 2:
        return None
    low = arr[:, : black_cols.min(), :]
    high = arr[:, black_cols.max() + 1 :, :]
    if low.shape != high.shape or low.size == 0:
        return None
    key = _lcg_low_nibbles(low.size).reshape(low.shape)
    raw = (((high ^ key) << 4) | (low ^ key)).astype(np.uint8).tobytes()
    try:
        return _decode_json_tensors(json.loads(zlib.decompressobj().decompress(raw)))
    except (zlib.error, ValueError):
        return None


def _read_image(path: Path) -> Any | None:
    with Image.open(path) as img:
        text = getattr(img, "text", None) or {}
        if "sd-ti-embedding" in text:
            return embedding_from_b64(text["sd-ti-embedding"])
        img.load()
        return extract_image_data_embed(img)


def _read_tensor_file(path: Path) -> Any:
    """The data of a tensor-file embedding, read by ``checkpoint_io.load_model_file``: the format comes from
    the bytes, TorchScript is refused, pickles only with ``weights_only=True`` (nothing in it runs)."""
    try:
        return load_model_file(path, device="cpu", check_weights=False)  # vectors: checked whole below
    except CheckpointLoadError as exc:
        raise EmbeddingFormatError(
            f"{path.name}: cannot be read safely as an embedding ({exc}). "
            "Only tensors and plain containers are accepted; convert it to .safetensors."
        ) from None


def _as_rows(t: Any, where: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise EmbeddingFormatError(f"{where} is not a tensor ({type(t).__name__})")
    t = t.detach().to("cpu", torch.float32)
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2 or t.shape[0] == 0:
        raise EmbeddingFormatError(f"{where} has shape {tuple(t.shape)}, expected (n_vectors, dim)")
    return t


def _check_finite_vectors(vec: torch.Tensor | dict[str, torch.Tensor], base: str) -> None:
    """``EmbeddingFormatError`` naming the file when a vector holds NaN/Inf: such a vector turns every
    prompt that uses it into NaN (black images blamed on the VAE). Vectors are small: all values checked."""
    parts = vec.items() if isinstance(vec, dict) else [("", vec)]
    for part, rows in parts:
        bad = (~torch.isfinite(rows)).any(dim=-1)
        if bool(bad.any()):
            where = f" ({part})" if part else ""
            raise EmbeddingFormatError(
                f"{base}: {int(bad.sum())} of {rows.shape[0]} embedding vectors{where} contain NaN/Inf values; "
                "the file is corrupt (a failed training run or conversion) and was not loaded"
            )


def embedding_from_data(data: Any, name: str, filename: str) -> Embedding:
    """Build an Embedding from a loaded file's data, in A1111's layout order (spec §2)."""
    base = os.path.basename(filename)
    if isinstance(data, dict) and "string_to_param" in data:
        params = data["string_to_param"]
        params = getattr(params, "_parameters", params)
        if not isinstance(params, Mapping) or len(params) != 1:
            raise EmbeddingFormatError(f"{base}: string_to_param must hold exactly one tensor")
        vec: Any = _as_rows(next(iter(params.values())), f"{base}: string_to_param")
    elif isinstance(data, dict) and "clip_l" in data and "clip_g" in data:
        vec = {k: _as_rows(data[k], f"{base}: {k}") for k in ("clip_l", "clip_g")}
        if vec["clip_l"].shape[0] != vec["clip_g"].shape[0]:
            raise EmbeddingFormatError(f"{base}: clip_l and clip_g have different vector counts")
    elif isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), torch.Tensor):
        vec = _as_rows(next(iter(data.values())), base)
    elif isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        raise EmbeddingFormatError(f"{base}: embedding file has multiple terms in it ({sorted(data)[:5]})")
    else:
        raise EmbeddingFormatError(
            f"Couldn't identify {base} as neither textual inversion embedding nor diffuser concept"
        )

    _check_finite_vectors(vec, base)

    def meta(key: str) -> Any:
        value = data.get(key) if isinstance(data, dict) else None
        return value if isinstance(value, (int, str)) or value is None else str(value)

    return Embedding(
        name=name,
        vec=vec,
        filename=str(filename),
        step=meta("step"),
        sd_checkpoint=meta("sd_checkpoint"),
        sd_checkpoint_name=meta("sd_checkpoint_name"),
    )


def load_embedding_file(path: Path) -> Embedding | None:
    """Read one file; None when it is not an embedding (preview images, other extensions, empty files)."""
    ext = path.suffix.lower()
    name = path.stem
    if ext in IMAGE_EXTS:
        if Path(name).suffix.lower() == ".preview":
            return None
        data = _read_image(path)
        if data is None:
            return None  # a plain preview image
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            name = data["name"]
    elif ext in TENSOR_EXTS:
        data = _read_tensor_file(path)
    else:
        return None
    return embedding_from_data(data, name, str(path))
