"""What the model lists show about a file besides its name: family, storage format, quantization and size.

``model_file_info(path)`` reads the header only (through the cached ``parts.file_role``), so listing hundreds of
files stays cheap. ``quant`` is the GGUF quantization a file is known by (``Q8_0``, ``Q5_K``, ``Q4_K``: the type
holding most weights), ``fp8_e4m3fn`` for a safetensors file whose weights are stored in float8, else the stored
float type (``bf16``, ``fp16``, ``fp32``). Pickled checkpoints are not opened for this (``family`` None).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from app.models.catalog.parts import file_role

#: safetensors dtype names -> the short names users know
_DTYPE_NAMES = {"F8_E4M3": "fp8_e4m3fn", "F8_E5M2": "fp8_e5m2", "BF16": "bf16", "F16": "fp16", "F32": "fp32"}
_ORDER = ("fp8_e4m3fn", "fp8_e5m2", "bf16", "fp16", "fp32")


def family_id(role: Any) -> str | None:
    """The family a model file runs as, by the id of ``app.families`` (``sd1``, ``sdxl``, ``zimage``, ``flux``,
    ``flux-schnell``, ``flux-fill``...), from its header role: a FLUX file's variant tells dev, schnell and Fill apart.
    Other files (text encoders, VAEs, LoRAs) keep the role's family (``clip_l``, ``flux_vae``...)."""
    if role.family == "flux" and role.role in ("checkpoint", "diffusion_model"):
        return str((role.detail or {}).get("variant") or "flux")
    return role.family


def model_file_info(path: str | Path) -> dict[str, Any]:
    """``{"family", "format", "quant", "size_bytes"}`` of a model file or diffusers folder (see module doc)."""
    p = Path(path)
    if p.is_dir():
        return {"family": None, "format": "diffusers", "quant": None, "size_bytes": None}
    try:
        size = os.path.getsize(p)
    except OSError:
        size = None
    if not p.name.lower().endswith((".safetensors", ".sft", ".gguf")):
        return {"family": None, "format": "pickle", "quant": None, "size_bytes": size}
    role = file_role(p)
    detail = role.detail or {}
    if detail.get("format") == "gguf":
        return {"family": family_id(role), "format": "gguf", "quant": detail.get("gguf_quant"), "size_bytes": size}
    names = {_DTYPE_NAMES.get(str(d), str(d).lower()) for d in detail.get("dtypes", ())}
    quant = next((n for n in _ORDER if n in names), None)
    return {"family": family_id(role), "format": "safetensors", "quant": quant, "size_bytes": size}
