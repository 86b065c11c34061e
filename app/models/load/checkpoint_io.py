"""Reading model files safely: format detection by bytes, state-dict loading without code execution.

This module is the one way the app reads a single model file (checkpoints, VAEs, LoRA, embeddings,
upscalers, TAESD): nothing else calls ``torch.load``, ``torch.jit.load`` or a library's load-from-path.

- ``detect_file_format(path)`` looks at the bytes, never the extension (a ``.ckpt`` that is really a
  safetensors file is read as safetensors, a ``.pth`` that is really TorchScript is TorchScript).
- ``load_model_file(path)`` returns the file's contents (tensors in dicts/lists): safetensors directly,
  pickles with ``torch.load(weights_only=True)``, which refuses any pickled object that is not a
  tensor/container/primitive. A refusal becomes ``UnsafeCheckpointError`` with torch's precise reason;
  the file is never executed. Only ``allow_unsafe=True`` (the ``--disable-safe-unpickle`` flag) loads
  a full pickle, with a warning. TorchScript archives are always refused (``TorchScriptError``):
  loading one runs code stored in the file, and the flag does not change that.
- ``read_state_dict(path)`` is ``load_model_file`` unwrapped to a flat ``{name: tensor}`` dict.
- Every load checks the tensors for NaN/Inf (``check_finite``): a file whose weights are entirely
  non-finite is refused with ``NonFiniteWeightsError`` naming the file and the tensors, instead of
  loading "fine" and failing every job later. The check samples at most ``FINITE_SAMPLE`` values at
  three places of each tensor (a few pages per tensor, milliseconds for a multi-GB file).
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any, Literal

import torch

from app.models.catalog.scan import read_safetensors_header
from app.models.hashes import SAFETENSORS_MAX_HEADER

logger = logging.getLogger(__name__)

FileFormat = Literal["safetensors", "gguf", "torch-zip", "torchscript", "pickle", "diffusers-folder"]


class CheckpointLoadError(ValueError):
    """A model file could not be read (truncated, corrupt, wrong kind); the message names the file."""


class UnsafeCheckpointError(CheckpointLoadError):
    """A pickle holds non-tensor objects and was refused by the safe loader."""


class TorchScriptError(UnsafeCheckpointError):
    """A TorchScript archive: refused, since loading one runs the code stored in it."""


class NonFiniteWeightsError(CheckpointLoadError):
    """The weights of a file are NaN/Inf (a corrupt merge or conversion); the message names the file."""


def _is_torchscript(names: list[str]) -> bool:
    """True for a TorchScript archive (``<archive>/code/...``, ``constants.pkl``; mobile: ``bytecode.pkl``;
    the pre-1.4 format: ``model.json``). ``torch.save`` archives never hold these entries."""
    for name in names:
        # entries are "<archive>/..."; the archive name comes from the file name (a "code.pth" is "code/...")
        rel = name.split("/", 1)[1] if "/" in name else name
        if rel in ("constants.pkl", "bytecode.pkl", "model.json") or rel.startswith("code/"):
            return True
    return False


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
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise CheckpointLoadError(f"corrupt zip archive (torch checkpoint?): {path}: {exc}") from exc
        if _is_torchscript(names):
            return "torchscript"
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "torch-zip"
        raise ValueError(f"a zip archive but not a torch checkpoint (no data.pkl): {path}")
    if head[:1] == b"\x80":
        return "pickle"
    shown = head[:8].hex(" ") if head else "empty file"
    raise CheckpointLoadError(
        f"unrecognised model file format: {path} (first bytes: {shown}, size {size}); "
        "expected safetensors or a PyTorch state dict (.pth/.pt/.ckpt/.bin)"
    )


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
            "The file was not executed. Convert it to .safetensors (for checkpoints and VAEs only, "
            "--disable-safe-unpickle loads such files anyway: use it only if you trust their source)."
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


def _refuse_torchscript(path: Path) -> TorchScriptError:
    return TorchScriptError(
        f"refused to load {path}: it is a TorchScript archive (it contains code/ and constants.pkl). "
        "TorchScript model files are not supported because loading one runs code stored in the file; "
        "the file was not loaded. Use the model as .safetensors or as a plain state-dict .pth instead."
    )


def load_model_file(
    path: str | Path,
    allow_unsafe: bool = False,
    device: str | torch.device = "cpu",
    check_weights: bool = True,
) -> Any:
    """The contents of a single model file (tensors in dicts/lists), read without running code from it.

    The format comes from the bytes (``detect_file_format``); TorchScript and unknown formats are
    refused, pickles go through ``torch.load(weights_only=True)`` unless *allow_unsafe*. With
    *check_weights* the tensors are checked by ``check_finite`` (``NonFiniteWeightsError``).
    Every error is a ``CheckpointLoadError`` (a ``ValueError``) whose message names the file.
    """
    path = Path(path)
    fmt = detect_file_format(path)
    if fmt == "diffusers-folder":
        raise CheckpointLoadError(f"{path} is a diffusers folder, not a single model file")
    if fmt == "torchscript":
        raise _refuse_torchscript(path)
    if fmt == "gguf":  # quantized blocks (GGUFParameter) are not finite-checked: they are not floats
        return read_gguf_state_dict(path)
    try:
        if fmt == "safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device=str(device))
        else:
            obj = _load_pickle(path, fmt, allow_unsafe, device)
    except CheckpointLoadError:
        raise
    except Exception as exc:  # truncated / corrupt containers raise many different types
        if "TorchScript" in str(exc):  # torch's own refusal, should our zip check ever miss an archive
            raise _refuse_torchscript(path) from None
        raise CheckpointLoadError(f"could not read {fmt} file {path}: {type(exc).__name__}: {exc}") from exc
    if check_weights:
        check_finite(obj, path)
    return obj


def read_gguf_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a GGUF file: quantized ones as ``GGUFParameter`` (raw blocks), ``F32``/``F16`` as tensors.

    Errors (the ``gguf`` package missing, a quantization diffusers cannot compute, a truncated file) become a
    ``CheckpointLoadError`` naming the file.
    """
    try:
        from diffusers.models.model_loading_utils import load_gguf_checkpoint

        return load_gguf_checkpoint(str(path))
    except ImportError as exc:
        raise CheckpointLoadError(f"{path}: reading GGUF files needs the 'gguf' package (pip install gguf): {exc}") from None
    except (ValueError, OSError, KeyError, IndexError) as exc:
        raise CheckpointLoadError(f"could not read GGUF file {path}: {type(exc).__name__}: {exc}") from exc


def read_state_dict(
    path: str | Path, allow_unsafe: bool = False, device: str | torch.device = "cpu", keep_fp8_scales: bool = False
) -> dict[str, torch.Tensor]:
    """All tensors of a single model file, ``{"state_dict": ...}`` unwrapped; non-tensor entries dropped.

    ComfyUI's scaled fp8 weights are folded to bf16 (``fold_fp8_scales``), unless *keep_fp8_scales*: then they stay
    fp8 with their ``scale_weight`` / ``weight_scale`` tensors next to them, for a loader that keeps them small
    (``fp8_store.pop_scales``; it must fold whatever it does not keep); the input scales and markers go either way."""
    path = Path(path)
    sd = _unwrap(load_model_file(path, allow_unsafe=allow_unsafe, device=device), path)
    if keep_fp8_scales:
        drop_fp8_markers(sd)
        return sd
    folded = fold_fp8_scales(sd)
    if folded:
        logger.info("%s: %d scaled fp8 weights rescaled to bf16", path, folded)
    return sd


def drop_fp8_markers(sd: dict[str, Any]) -> None:
    """Remove what a scaled fp8 file holds besides weights and their scales: the ``scaled_fp8`` marker and the input
    scales (``scale_input`` / ``input_scale``: ComfyUI uses them only for fp8 x fp8 products, not computed here)."""
    for key in [k for k in sd if k.endswith((".scale_input", ".input_scale")) or k.rsplit(".", 1)[-1] == "scaled_fp8"]:
        del sd[key]


def fold_fp8_scales(sd: dict[str, Any], dtype: torch.dtype = torch.bfloat16) -> int:
    """Undo ComfyUI's "scaled fp8" storage in place: such files (``sd3.5_large_fp8_scaled.safetensors``,
    ``t5xxl_fp8_e4m3fn_scaled.safetensors``) store ``weight / scale`` in float8 with the scale next to it
    (``<module>.scale_weight``, newer files ``<module>.weight_scale``; a scalar or one per row) and a ``scaled_fp8``
    marker. Read as plain fp8 the weights would be wrong by that factor, so each weight becomes ``weight * scale`` in
    *dtype* (bf16 by default: more precision than fp8 holds; a loader passes its compute dtype) and the scale,
    ``scale_input`` and marker tensors are dropped. Returns how many
    weights were rescaled. Loaders that keep such weights fp8 read with ``keep_fp8_scales`` instead and call this on
    the parts they do not keep (CLIP, VAE)."""
    from app.models.load.fp8_store import fold, pop_scales

    scales = pop_scales(sd)
    for key, scale in scales.items():
        sd[key] = fold(sd[key], scale, dtype)
    drop_fp8_markers(sd)
    return len(scales)


# -- NaN / Inf weights ---------------------------------------------------------------------------------

#: values read from each of three places (start, middle, end) of a tensor by ``check_finite``
FINITE_SAMPLE = 256
#: keys never used for inference (EMA copies in training checkpoints): not checked
_UNUSED_PREFIXES = ("model_ema.",)


def _tensors(obj: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, torch.Tensor]]:
    """(dotted name, tensor) of every tensor in nested dicts/lists/tuples (bounded depth)."""
    if isinstance(obj, torch.Tensor):
        return [(prefix or "tensor", obj)]
    found: list[tuple[str, torch.Tensor]] = []
    if depth > 8:
        return found
    if isinstance(obj, dict):
        items: Any = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        items = getattr(getattr(obj, "_parameters", None), "items", lambda: ())()  # torch ParameterDict
    for key, value in items:
        found += _tensors(value, f"{prefix}.{key}" if prefix else str(key), depth + 1)
    return found


def _sample(t: torch.Tensor) -> torch.Tensor:
    """At most ``3 * FINITE_SAMPLE`` values of *t*: its start, middle and end (contiguous runs, so a
    memory-mapped file is touched in a few pages only)."""
    flat = t.detach().reshape(-1)
    n, k = flat.numel(), FINITE_SAMPLE
    if n > 3 * k:
        mid = (n - k) // 2
        flat = torch.cat((flat[:k], flat[mid : mid + k], flat[n - k :]))
    return flat.float()  # a small copy; isfinite is not implemented for every dtype (float8_e4m3fn)


def check_finite(obj: Any, path: str | Path, what: str = "") -> None:
    """Refuse weights that are NaN/Inf: ``NonFiniteWeightsError`` naming *path* when a floating tensor's
    sampled values are all non-finite (a whole tensor of NaN/Inf is never a working weight). Tensors with
    only some non-finite sampled values are logged as a warning. Cost: ``_sample`` per tensor, no copy of
    the weights: at most ``3 * FINITE_SAMPLE`` values per tensor whatever its size (measured: 30-60 ms
    for 1,100-2,000 tensors on one CPU thread; a memory-mapped file is touched in three pages per tensor).
    """
    bad: list[str] = []
    partly: list[str] = []
    checked = 0
    for name, t in _tensors(obj):
        if not t.is_floating_point() or t.numel() == 0 or t.device.type == "meta":
            continue
        if name.startswith(_UNUSED_PREFIXES):
            continue
        checked += 1
        finite = torch.isfinite(_sample(t))
        if not bool(finite.any()):
            bad.append(name)
        elif not bool(finite.all()):
            partly.append(name)
    kind = f"{what} " if what else ""
    if bad:
        scope = "all" if len(bad) == checked else f"{len(bad)} of {checked}"
        shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        raise NonFiniteWeightsError(
            f"refused to load {kind}{path}: {scope} of its weight tensors are NaN/Inf ({shown}); "
            "the file is corrupt (a failed merge, conversion or download). Re-download or re-create it."
        )
    if partly:
        logger.warning("%s%s: %d tensors contain NaN/Inf values (e.g. %s); images may come out black",
                       kind, path, len(partly), ", ".join(partly[:3]))


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
    if detect_file_format(path) == "gguf":  # the header's logical shapes (quantized data is [rows, bytes])
        from app.models.load.gguf_header import read_gguf_header

        try:
            return {k: shape for k, (shape, _) in read_gguf_header(path)[1].items()}
        except (OSError, ValueError) as exc:
            raise CheckpointLoadError(f"could not read GGUF header of {path}: {exc}") from exc
    return {k: tuple(v.shape) for k, v in read_state_dict(path, allow_unsafe=allow_unsafe).items()}
