"""Loaded LoRA / LyCORIS networks: per-module weight deltas and a small in-RAM LRU of parsed files.

Every module type reconstructs a weight-shaped ``ΔW`` (and optionally ``Δbias``) the way A1111's
built-in Lora extension does (spec §3.3–3.4): ``ΔW = rebuild × scale`` with ``scale`` = the ``scale``
key, else ``alpha / dim``, else 1; DoRA (``dora_scale``) then re-normalises ``W + ΔW``. The caller
multiplies by the te / unet multiplier.

* lora: ``up @ down`` (conv: flattened, or the Tucker form with ``lora_mid``), dim = rows of down;
* loha: ``(w1a @ w1b) * (w2a @ w2b)`` (or the CP form with ``hada_t1/t2``), dim = rows of w1b;
* lokr: ``kron(w1, w2)`` with each factor whole or ``a @ b`` (``lokr_t2`` CP form), dim = rows of w1b/w2b;
* full: ``diff`` (+ ``diff_b``); norm: ``w_norm`` (+ ``b_norm``); both unscaled.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from app.models.lora.keys import ModuleKey, ParsedKeys, parse_keys

DEFAULT_CACHE_SIZE = 5


class NetworkError(ValueError):
    """A network file that cannot be used (unreadable, unsupported, wrong model); names the file."""


def _kind_of(weights: dict[str, torch.Tensor]) -> str | None:
    if "up" in weights and "down" in weights:
        return "lora"
    if all(k in weights for k in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")):
        return "loha"
    has_w1 = "lokr_w1" in weights or ("lokr_w1_a" in weights and "lokr_w1_b" in weights)
    has_w2 = "lokr_w2" in weights or ("lokr_w2_a" in weights and "lokr_w2_b" in weights)
    if has_w1 and has_w2:
        return "lokr"
    if "diff" in weights:
        return "full"
    if "w_norm" in weights:
        return "norm"
    return None


def _mat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _cp(t: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """Tucker/CP rebuild: ``t`` [r, r, k, k], ``wa`` [r, out], ``wb`` [r, in] → [out, in, k, k]."""
    return torch.einsum("ijkl,jr,ip->prkl", t, _mat(wb), _mat(wa))


@dataclass
class NetworkModule:
    """The tensors of one target module (float32, CPU) and their type."""

    key: ModuleKey
    file_key: str
    kind: str
    w: dict[str, torch.Tensor]

    @property
    def dim(self) -> int | None:
        w = self.w
        if self.kind == "lora":
            return int(w["down"].shape[0])
        if self.kind == "loha":
            return int(w["hada_w1_b"].shape[0])
        if self.kind == "lokr":
            for k in ("lokr_w1_b", "lokr_w2_b"):
                if k in w:
                    return int(w[k].shape[0])
        return None

    @property
    def scale(self) -> float:
        if "scale" in self.w:
            return float(self.w["scale"].item())
        if self.dim is not None and "alpha" in self.w:
            return float(self.w["alpha"].item()) / self.dim
        return 1.0

    def rebuild(self, shape: torch.Size) -> torch.Tensor:
        """The unscaled weight update, reshaped to the target *shape* (``NetworkError`` if it can't be)."""
        w = self.w
        if self.kind == "lora":
            up, down = w["up"], w["down"]
            if "mid" in w:
                out = torch.einsum("nmkl,in,mj->ijkl", w["mid"], _mat(up), _mat(down))
            else:
                out = _mat(up) @ _mat(down)
        elif self.kind == "loha":
            if "hada_t1" in w and "hada_t2" in w:
                out = _cp(w["hada_t1"], w["hada_w1_a"], w["hada_w1_b"]) * _cp(
                    w["hada_t2"], w["hada_w2_a"], w["hada_w2_b"]
                )
            else:
                out = (w["hada_w1_a"] @ _mat(w["hada_w1_b"])) * (w["hada_w2_a"] @ _mat(w["hada_w2_b"]))
        elif self.kind == "lokr":
            w1 = w["lokr_w1"] if "lokr_w1" in w else w["lokr_w1_a"] @ w["lokr_w1_b"]
            if "lokr_w2" in w:
                w2 = w["lokr_w2"]
            elif "lokr_t2" in w:
                w2 = _cp(w["lokr_t2"], w["lokr_w2_a"], w["lokr_w2_b"])
            else:
                w2 = w["lokr_w2_a"] @ w["lokr_w2_b"]
            if w2.ndim == 4:
                w1 = w1.reshape(*w1.shape, 1, 1)
            out = torch.kron(w1, w2)
        elif self.kind == "full":
            out = w["diff"]
        else:  # norm
            out = w["w_norm"]
        if out.numel() != shape.numel():
            raise NetworkError(
                f"module {self.file_key}: update has shape {tuple(out.shape)}, the model's weight is {tuple(shape)}"
            )
        return out.reshape(shape)

    def bias_delta(self) -> torch.Tensor | None:
        return self.w.get("diff_b", self.w.get("b_norm"))

    def delta(self, orig_weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(ΔW, Δbias)`` for multiplier 1 (float32), given the module's original weight."""
        updown = self.rebuild(orig_weight.shape) * self.scale
        if "dora_scale" in self.w:
            orig = orig_weight.detach().to("cpu", torch.float32)
            merged = updown + orig
            dims = orig.ndim - 1
            norm = (
                merged.transpose(0, 1)
                .reshape(merged.shape[1], -1)
                .norm(dim=1, keepdim=True)
                .reshape(merged.shape[1], *[1] * dims)
                .transpose(0, 1)
            )
            updown = merged * (self.w["dora_scale"].to(torch.float32) / norm) - orig
        return updown, self.bias_delta()


@dataclass
class Network:
    """One parsed network file."""

    name: str
    filename: str
    modules: dict[ModuleKey, NetworkModule]
    unknown_keys: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)  # module keys whose tensor set no type explains
    bundled: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def network_from_state_dict(state_dict: dict[str, Any], name: str, filename: str = "") -> Network:
    """Build a ``Network`` from an already-read state dict (tensors are copied to float32 on CPU)."""
    parsed: ParsedKeys = parse_keys(state_dict)
    modules: dict[ModuleKey, NetworkModule] = {}
    unsupported: list[str] = []
    for key, tensors in parsed.modules.items():
        kind = _kind_of(tensors)
        if kind is None:
            unsupported.append(parsed.file_keys[key])
            continue
        w = {k: v.detach().to("cpu", torch.float32) for k, v in tensors.items()}
        modules[key] = NetworkModule(key, parsed.file_keys[key], kind, w)
    return Network(name, filename, modules, parsed.unknown, unsupported, parsed.bundled)


def read_network_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and safetensors metadata of a network file (pickles only when they hold tensors alone)."""
    from app.models.load.checkpoint_io import detect_file_format, read_state_dict

    path = Path(path)
    metadata: dict[str, Any] = {}
    try:
        state = read_state_dict(path)  # format by bytes, TorchScript refused, pickles weights-only, NaN check
        if detect_file_format(path) == "safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                metadata = dict(fh.metadata() or {})
    except NetworkError:
        raise
    except Exception as exc:
        raise NetworkError(f"{path.name}: cannot be read as a LoRA file ({type(exc).__name__}: {exc})") from exc
    return state, metadata


def load_network(path: str | Path, name: str | None = None) -> Network:
    """Read and parse a network file (``NetworkError`` naming it when that fails or nothing is usable)."""
    path = Path(path)
    state, metadata = read_network_file(path)
    net = network_from_state_dict(state, name or path.stem, os.path.abspath(path))
    net.metadata = metadata
    if not net.modules and not net.bundled:
        if not state:
            raise NetworkError(f"{path.name}: no LoRA/LyCORIS module in this file (it holds no tensors)")
        raise NetworkError(
            f"{path.name}: no LoRA/LyCORIS module in this file: not a network, or an unsupported network type "
            f"(OFT, IA3, GLoRA ... are not supported); first keys: {', '.join(list(state)[:3])}"
        )
    return net


class NetworkCache:
    """Recently used parsed networks, keyed by (path, mtime, size); thread-safe; ``limit`` 0 disables it."""

    def __init__(self, limit: int = DEFAULT_CACHE_SIZE) -> None:
        self.limit = limit
        self._items: OrderedDict[tuple[str, int, int], Network] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # files actually read (tests)

    def get(self, path: str | Path, name: str | None = None) -> Network:
        path = Path(path)
        try:
            st = path.stat()
        except OSError as exc:
            raise NetworkError(f"{path}: cannot open LoRA file ({exc.strerror or exc})") from exc
        key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        net = load_network(path, name)
        with self._lock:
            self.loads += 1
            if self.limit > 0:
                for old in [k for k in self._items if k[0] == key[0]]:  # an older version of the same file
                    del self._items[old]
                self._items[key] = net
                while len(self._items) > self.limit:
                    self._items.popitem(last=False)
        return net

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
