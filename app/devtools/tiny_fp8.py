"""Tiny ComfyUI "scaled fp8" files, made from the tiny bf16 ones, for tests of the loaders that keep them fp8.

ComfyUI's ``*_fp8_scaled.safetensors`` files (``flux1-dev-fp8_scaled``, ``sd3.5_large_fp8_scaled``,
``t5xxl_fp8_e4m3fn_scaled``) store each matrix as ``weight / scale`` in ``float8_e4m3fn`` with the float32
``<module>.scale_weight`` next to it (one value: the matrix's largest magnitude over fp8's largest, 448, so the matrix
uses fp8's whole range), a ``<module>.scale_input`` (1.0; ComfyUI's fp8 x fp8 products read it) and an empty
``scaled_fp8`` marker tensor. Newer files store one scale per row under ``<module>.weight_scale`` (*per_row*).
Every two-dimensional ``.weight`` is scaled here, the embeddings and the linears outside the repeated blocks too,
so a test sees both what a loader keeps fp8 and what it folds; norms and biases keep their dtype.
"""

from __future__ import annotations

from pathlib import Path

import torch

#: the largest finite float8_e4m3fn value
FP8_MAX = 448.0


def scaled_fp8_tensors(sd: dict[str, torch.Tensor], per_row: bool = False, marker: str = "") -> dict[str, torch.Tensor]:
    """*sd* in ComfyUI's scaled fp8 layout (see the module doc); *marker* is the ``scaled_fp8`` key's prefix."""
    out: dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        if not (key.endswith(".weight") and t.ndim == 2 and t.is_floating_point()):
            out[key] = t
            continue
        w = t.float()
        peak = w.abs().amax(dim=1, keepdim=True) if per_row else w.abs().amax().reshape(1, 1)
        scale = torch.where(peak > 0, peak / FP8_MAX, torch.ones_like(peak))
        module = key.removesuffix(".weight")
        out[key] = (w / scale).to(torch.float8_e4m3fn)
        if per_row:
            out[module + ".weight_scale"] = scale.reshape(-1).contiguous()
        else:
            out[module + ".scale_weight"] = scale.reshape(())
            out[module + ".scale_input"] = torch.tensor(1.0)
    out[marker + "scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    return out


def scaled_name(path: Path) -> Path:
    """The scaled fp8 download's name for *path*: ``t5xxl_fp16`` -> ``t5xxl_fp8_e4m3fn_scaled``, else
    ``<stem>-fp8_scaled`` (``flux1-dev-fp8_scaled.safetensors``)."""
    stem = path.stem.removesuffix("_fp16").removesuffix("_bf16")
    return path.with_name(f"{stem}_fp8_e4m3fn_scaled{path.suffix}" if stem.startswith("t5xxl") else
                          f"{stem}-fp8_scaled{path.suffix}")


def to_scaled_fp8_files(paths: dict[str, Path], suffixes: tuple[str, ...], per_row: bool = False) -> dict[str, Path]:
    """Rewrite the files of *paths* whose label ends with one of *suffixes* as scaled fp8 files (``scaled_name``);
    the originals are removed. Returns *paths* with those labels pointing at the new files."""
    from safetensors.torch import load_file, save_file

    out = dict(paths)
    for label, path in paths.items():
        if not label.endswith(suffixes):
            continue
        new = scaled_name(path)
        save_file(scaled_fp8_tensors(load_file(str(path)), per_row=per_row), str(new))
        path.unlink()
        out[label] = new
    return out
