"""Tiny GGUF files for tests: a state dict quantized the way city96's conversions are, written with the ``gguf`` package.

``write_gguf(sd, path, quant)`` writes every tensor of *sd* (PyTorch order, names kept) as:

- ``quant`` (``Q8_0``, ``Q5_K_S`` -> ``Q5_K``, ``Q4_K_S`` -> ``Q4_K``) for weights of two or more dimensions whose
  rows fit the type's block (32 values for ``Q8_0``, 256 for the K types);
- ``Q8_0`` for such weights whose rows fit 32 but not 256 (the small/odd tensors the ``_S`` mixes keep in a larger
  type), ``F16`` for other matrices, ``F32`` for vectors (norms, biases), as city96's files do.

``Q8_0`` blocks come from the ``gguf`` package's reference quantizer. It has no K-quant encoder, so ``_kquant`` here
encodes ``Q4_K`` / ``Q5_K`` super-blocks (256 values: 8 sub-blocks of 32 with 6-bit scales and mins, fp16 ``d`` and
``dmin``) with a plain min/max fit per sub-block: not llama.cpp's error-minimising search, but the same bit layout,
decoded by the same dequantizer diffusers uses, which is what the tests need.

``write_tiny_flux_gguf(data_dir, quant, variant)`` writes the tiny FLUX.1 transformer in BFL's names (arch ``flux``,
``img_in`` / ``txt_in`` / ``time_in`` / ``vector_in`` / ``guidance_in`` / ``final_layer`` kept ``F32`` as city96's
``flux1-dev-Q8_0.gguf``) and the tiny T5 encoder with llama.cpp's names (arch ``t5encoder``, ``enc.blk.N.attn_q``...,
as city96's ``t5-v1_1-xxl-encoder-Q8_0.gguf``), the same weights as ``tiny_flux``'s files.

``write_tiny_zimage_gguf(data_dir, quant)`` writes the tiny Z-Image transformer (original key names, as city96's
``z_image_turbo-Q8_0.gguf``) and the tiny Qwen3 text encoder with llama.cpp's names (``token_embd``, ``blk.N.*``,
architecture ``qwen3``, as unsloth's ``Qwen3-4B-Q8_0.gguf``) next to the bf16 files of ``tiny_zimage``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

QUANTS = ("Q8_0", "Q5_K_S", "Q4_K_S")
_MAIN_TYPE = {"Q8_0": "Q8_0", "Q5_K_S": "Q5_K", "Q4_K_S": "Q4_K"}
QK_K = 256


def _pack_scales(sc: np.ndarray, mn: np.ndarray) -> np.ndarray:
    """The 12-byte 6-bit scale/min packing of a K super-block (``[n, 8]`` each, values 0..63)."""
    sc, mn = sc.astype(np.uint8), mn.astype(np.uint8)
    out = np.zeros((sc.shape[0], 12), dtype=np.uint8)
    out[:, 0:4] = (sc[:, :4] & 0x3F) | ((sc[:, 4:] >> 4) << 6)
    out[:, 4:8] = (mn[:, :4] & 0x3F) | ((mn[:, 4:] >> 4) << 6)
    out[:, 8:12] = (sc[:, 4:] & 0x0F) | ((mn[:, 4:] & 0x0F) << 4)
    return out


def _kquant(rows: np.ndarray, bits: int) -> np.ndarray:
    """``Q4_K`` (bits 4) or ``Q5_K`` (bits 5) blocks of float32 *rows* (row length a multiple of 256), uint8."""
    levels = (1 << bits) - 1
    blocks = rows.reshape(-1, 8, 32).astype(np.float32)
    lo = np.minimum(blocks.min(axis=2), 0.0)  # value = d*sc*q - dmin*m with q >= 0: m covers the negative part
    hi = blocks.max(axis=2)
    scale = (hi - lo) / levels
    mins = -lo
    d = scale.max(axis=1, keepdims=True) / 63
    dmin = mins.max(axis=1, keepdims=True) / 63
    d16, dmin16 = d.astype(np.float16), dmin.astype(np.float16)
    d, dmin = d16.astype(np.float32), dmin16.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.clip(np.where(d > 0, np.rint(scale / d), 0), 0, 63)
        mn = np.clip(np.where(dmin > 0, np.rint(mins / dmin), 0), 0, 63)
        step = (d * sc)[..., None]
        q = np.where(step > 0, np.rint((blocks + (dmin * mn)[..., None]) / step), 0)
    q = np.clip(q, 0, levels).astype(np.uint8)  # [n, 8, 32]
    low = q & 0x0F
    qs = (low[:, 0::2, :] | (low[:, 1::2, :] << 4)).reshape(-1, 128)
    parts = [d16.view(np.uint8), dmin16.view(np.uint8), _pack_scales(sc, mn)]
    if bits == 5:
        high = (q >> 4) & 0x01  # bit k of qh[i] is the high bit of sub-block k, element i
        qh = np.zeros((q.shape[0], 32), dtype=np.uint8)
        for k in range(8):
            qh |= high[:, k, :] << k
        parts.append(qh)
    parts.append(qs)
    n_rows = rows.shape[0]
    return np.concatenate(parts, axis=1).reshape(n_rows, -1)


def _encode(t: torch.Tensor, quant: str, keep_float: bool = False) -> tuple[np.ndarray, object]:
    """(data, ggml type) of one tensor under the *quant* mix (see module doc); *keep_float*: ``F32``."""
    import gguf

    q_type = gguf.GGMLQuantizationType
    arr = t.detach().to(torch.float32).numpy()
    if arr.ndim < 2 or keep_float:
        return arr, q_type.F32
    width = arr.shape[-1]
    rows = arr.reshape(-1, width)
    main = _MAIN_TYPE[quant]
    if main in ("Q4_K", "Q5_K") and width % QK_K == 0:
        data = _kquant(rows, 4 if main == "Q4_K" else 5)
        return data.reshape(*arr.shape[:-1], -1), getattr(q_type, main)
    if width % 32 == 0:
        return gguf.quants.quantize(arr, q_type.Q8_0), q_type.Q8_0
    return arr.astype(np.float16), q_type.F16


def write_gguf(sd: dict[str, torch.Tensor], path: str | Path, quant: str = "Q8_0", arch: str = "atelier-tiny",
               extra: dict[str, object] | None = None, keep_float: tuple[str, ...] = ()) -> Path:
    """Write *sd* to a GGUF file at *path* with the *quant* mix (``QUANTS``); *extra* adds metadata (str/int/float);
    tensors whose name starts with one of *keep_float* are written ``F32`` (city96 keeps FLUX's input embedders and
    final layer so)."""
    import gguf

    if quant not in QUANTS:
        raise ValueError(f"unknown quantization {quant!r}; expected one of {', '.join(QUANTS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_file_type(0)
    writer.add_string("general.quantization", quant)
    for key, value in (extra or {}).items():
        if isinstance(value, str):
            writer.add_string(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        else:
            writer.add_float32(key, float(value))
    for name, tensor in sd.items():
        data, ggml_type = _encode(tensor, quant, bool(keep_float) and name.startswith(keep_float))
        writer.add_tensor(name, data, raw_dtype=ggml_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_tiny_zimage_gguf(out_dir: str | Path, quant: str = "Q8_0", seed: int = 0) -> dict[str, Path]:
    """The tiny Z-Image transformer and Qwen3 encoder of ``tiny_zimage`` (same *seed*) as GGUF files in the data dir
    *out_dir*; returns ``{"zimage:diffusion_model_gguf": path, "zimage:text_encoder_gguf": path}``."""
    from app.devtools.tiny_zimage import tiny_qwen3, tiny_zimage_transformer
    from app.models.load.gguf_load import hf_to_llama_qwen3
    from app.models.load.zimage_convert import diffusers_to_original

    models = Path(out_dir) / "models"
    dm = models / "diffusion_models" / f"z_image_turbo-{quant}.gguf"
    te = models / "text_encoders" / f"Qwen3-4B-{quant}.gguf"
    # the same weights as write_tiny_zimage's bf16 files (its seeds: transformer seed+1, encoder seed+2), rounded to
    # bf16 first so that the GGUF file quantizes exactly what the bf16 file holds
    transformer = {k: v.to(torch.bfloat16) for k, v in diffusers_to_original(tiny_zimage_transformer(seed + 1).state_dict()).items()}
    write_gguf(transformer, dm, quant, arch="lumina2")
    encoder = {"model." + k: v.to(torch.bfloat16) for k, v in tiny_qwen3(seed + 2).state_dict().items()}
    write_gguf(hf_to_llama_qwen3(encoder), te, quant, arch="qwen3")
    return {"zimage:diffusion_model_gguf": dm, "zimage:text_encoder_gguf": te}


#: the FLUX tensors city96's converter keeps in a float type (input embedders, final layer)
FLUX_FLOAT_PREFIXES = ("img_in.", "txt_in.", "time_in.", "vector_in.", "guidance_in.", "final_layer.")


def write_tiny_flux_gguf(out_dir: str | Path, quant: str = "Q8_0", variant: str = "dev", seed: int = 0) -> dict[str, Path]:
    """The tiny FLUX.1 transformer of ``tiny_flux.write_tiny_flux`` (same *variant* and *seed*) and its tiny T5
    encoder as GGUF files in the data dir *out_dir*; returns ``{"<tag>:diffusion_model_gguf": path,
    "<tag>:t5xxl_gguf": path}`` with tag ``flux`` (dev), ``flux-schnell`` or ``flux-fill``."""
    from app.devtools.tiny_flux import VARIANT_FAMILY, flux_file_tensors
    from app.devtools.tiny_t5 import tiny_t5_file_tensors
    from app.models.load.gguf_load import hf_to_llama_t5

    tag = VARIANT_FAMILY[variant]
    models = Path(out_dir) / "models"
    dm = models / "diffusion_models" / f"flux1-{variant}-{quant}.gguf"
    te = models / "text_encoders" / f"t5-v1_1-xxl-encoder-{quant}.gguf"
    write_gguf(flux_file_tensors(variant, seed), dm, quant, arch="flux", keep_float=FLUX_FLOAT_PREFIXES)
    write_gguf(hf_to_llama_t5(tiny_t5_file_tensors(seed + 3, torch.float16)), te, quant, arch="t5encoder")
    return {f"{tag}:diffusion_model_gguf": dm, f"{tag}:t5xxl_gguf": te}
