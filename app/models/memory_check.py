"""A clear error before an allocation that cannot fit, instead of an out-of-memory error in the middle of a job.

Two checks, both comparing an estimate with the free memory of where the bytes will go:

- ``check_load(path, parts, policy)``, before a model is read: its bytes come from the file headers (never the
  tensor data): safetensors ``dtype × shape`` as the loader keeps them (float tensors in the compute dtype, fp8
  weights one byte: ``fp8_store`` keeps them so; EMA copies not counted), GGUF blocks at their quantized size
  (``Q8_0`` 34 bytes per 32 weights, ``Q4_K`` 144 per 256 ...); a pickle or a folder has no header: its size on
  disk counts for RAM and the GPU side is not checked (it may hold EMA or optimizer state the loader drops).
  Every file is read into CPU memory first, so
  the sum must fit the available RAM; on a GPU without ``--medvram`` / ``--lowvram`` the parts that stay on the
  GPU must fit its free memory (a split-file model: the diffusion model and VAE, or a visiting text encoder, the
  larger; a checkpoint: all of it). With ``--medvram`` / ``--lowvram`` the GPU check is left out: the offload is
  what makes a model fit. Each side adds a working margin (``LOAD_MARGIN``).
- ``check_job(...)``, before a job runs: the latents and the full-resolution VAE decode of its size (``batch ×
  W × H × 128 channels × 8 live maps`` at the VAE's element size: the decoder's last blocks run at full resolution
  with 128 channels; with Tiled VAE the decode is bounded by one tile) must fit the free memory of the device.

Free memory: CUDA ``torch.cuda.mem_get_info`` plus what torch's caching allocator holds unused; MPS the recommended
maximum minus what the driver allocated; CPU the available RAM (``psutil`` if installed, else ``/proc/meminfo``).
Unknown (None) skips the check. The probe is a parameter (``free``) so tests give their own numbers.

The estimates are deliberately simple (documented in docs/ARCHITECTURE.md); the error says the numbers and what to
do: ``--medvram`` / ``--lowvram``, a smaller quantization (GGUF ``Q8_0`` / ``Q4_K_S``, fp8), a smaller size or
batch, Tiled VAE.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from app.errors import UserError

MiB = 1 << 20
GiB = 1 << 30
#: room kept free on top of the weights when loading (allocator slack, CUDA context, workspaces)
LOAD_MARGIN = 512 * MiB
#: ggml block types: (values per block, bytes per block)
GGML_BLOCKS = {"Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22), "Q5_1": (32, 24), "Q8_0": (32, 34),
               "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210),
               "Q8_K": (256, 292)}
_ST_SIZES = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2, "U8": 1, "I8": 1, "BOOL": 1,
             "F8_E4M3": 1, "F8_E5M2": 1}
_FLOATS = ("F64", "F32", "F16", "BF16")
#: VAE decode: live full-resolution maps of 128 channels at the peak
DECODE_CHANNELS, DECODE_MAPS = 128, 8

FreeProbe = Callable[[Any], "int | None"]


class InsufficientMemoryError(UserError, MemoryError):
    """A model or job would not fit in the free memory; the message names the numbers and what to do."""


def gib(n: float) -> str:
    return f"{n / GiB:.1f} GB"


# -- free memory ----------------------------------------------------------------------------------------------

def available_ram() -> int | None:
    """Available CPU memory in bytes (``psutil``, else ``/proc/meminfo`` MemAvailable); None when unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def free_memory(device: Any) -> int | None:
    """Free bytes on *device* (a ``torch.device`` or name) as described in the module doc; None when unknown."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type == "mps":
        mps = getattr(torch, "mps", None)
        if mps is None or not hasattr(mps, "recommended_max_memory"):
            return None
        return int(mps.recommended_max_memory() - mps.driver_allocated_memory())
    return available_ram()


# -- model bytes from file headers ------------------------------------------------------------------------------

def _numel(shape: Any) -> int:
    return math.prod(int(d) for d in shape) if shape else 1


def header_bytes(path: str | Path, compute_size: int) -> int | None:
    """The bytes the weights of the model file *path* take once loaded, tensors in a compute dtype of
    *compute_size* bytes, read from its header (see the module doc; EMA copies, which the loader drops, are not
    counted); None for a format without a header (a pickle, a folder)."""
    path = Path(path)
    if path.is_dir():
        return None
    from app.models.load.gguf_header import FLOAT_TYPES, is_gguf, read_gguf_header

    if is_gguf(path):
        _, tensors = read_gguf_header(path)
        total = 0
        for shape, ggml_type in tensors.values():
            n = _numel(shape)
            if ggml_type in GGML_BLOCKS:
                per, size = GGML_BLOCKS[ggml_type]
                total += -(-n // per) * size
            else:
                total += n * (compute_size if ggml_type in FLOAT_TYPES else 4)
        return total
    if path.suffix.lower() in (".safetensors", ".sft"):
        from app.models.catalog.scan import read_safetensors_header

        total = 0
        for key, info in read_safetensors_header(path).items():
            if key == "__metadata__" or not isinstance(info, dict) or key.startswith("model_ema."):
                continue
            dtype = str(info.get("dtype"))
            size = compute_size if dtype in _FLOATS else _ST_SIZES.get(dtype, 4)
            total += _numel(info.get("shape", ())) * size
        return total
    return None


def file_bytes(path: str | Path, compute_size: int) -> int:
    """``header_bytes``, or for a format without a header the bytes on disk (a folder: its weight files), which is
    what reading it into memory takes."""
    got = header_bytes(path, compute_size)
    if got is not None:
        return got
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.suffix in (".safetensors", ".bin", ".ckpt", ".pt"))
    return path.stat().st_size


def _compute_size(policy: Any) -> int:
    import torch

    dtype = getattr(policy, "dtype", torch.float32)
    return torch.empty((), dtype=dtype).element_size()


# -- the checks -----------------------------------------------------------------------------------------------

def _refuse(what: str, where: str, need: int, detail: str, free: int, advice: str) -> InsufficientMemoryError:
    return InsufficientMemoryError(
        f"Not enough memory on {where} for {what}: it needs about {gib(need)} ({detail}) but {gib(free)} is free. "
        f"{advice}"
    )


def check_load(path: str | Path, parts: Mapping[str, str | Path] | None, policy: Any,
               free: FreeProbe = free_memory) -> dict[str, int]:
    """Refuse (``InsufficientMemoryError``) a model load that cannot fit in RAM or, without offload, on the GPU;
    returns the estimate ``{"ram": bytes, "device": bytes}`` (device 0 when nothing is checked there)."""
    import torch

    size = _compute_size(policy)
    parts = {k: Path(v) for k, v in (parts or {}).items() if v is not None}
    main = file_bytes(path, size)
    sizes = {k: file_bytes(p, size) for k, p in parts.items()}
    ram_need = main + sum(sizes.values())
    name = Path(path).name
    ram_free = free(torch.device("cpu"))
    if ram_free is not None and ram_need + LOAD_MARGIN > ram_free:
        raise _refuse(name, "the CPU (RAM)", ram_need + LOAD_MARGIN, f"{gib(ram_need)} of weights", ram_free,
                      "Close other programs, or use a smaller quantization of the model (GGUF Q8_0 / Q4_K_S, fp8).")
    device = getattr(policy, "device", torch.device("cpu"))
    offload = policy.offload_for(False) if hasattr(policy, "offload_for") else "none"
    device_need = 0
    estimable = all(header_bytes(p, size) is not None for p in (Path(path), *parts.values()))
    if device.type != "cpu" and offload in (None, "none") and estimable:
        encoders = [v for k, v in sizes.items() if k.startswith("text_encoder")]
        resident = main + sizes.get("vae", 0)
        device_need = max([resident, *encoders]) if parts else main  # split files: encoders visit the GPU alone
        dev_free = free(device)
        if dev_free is not None and device_need + LOAD_MARGIN > dev_free:
            raise _refuse(name, str(device), device_need + LOAD_MARGIN, f"{gib(device_need)} of weights + "
                          f"{gib(LOAD_MARGIN)} working margin", dev_free,
                          "Start with --medvram (one part on the GPU at a time) or --lowvram (layer by layer), or "
                          "use a smaller quantization (GGUF Q8_0 / Q4_K_S, fp8).")
    return {"ram": ram_need, "device": device_need}


def job_bytes(width: int, height: int, batch: int, latent_channels: int, downscale: int, vae_size: int,
              tile_pixels: int | None = None) -> int:
    """Latents (fp32) plus the VAE decode peak of a *batch* of *width* × *height* images (module doc);
    *tile_pixels* bounds the decoded area per tile (Tiled VAE)."""
    latents = batch * latent_channels * (height // downscale) * (width // downscale) * 4
    pixels = width * height if tile_pixels is None else min(width * height, tile_pixels)
    decode = batch * pixels * DECODE_CHANNELS * DECODE_MAPS * vae_size
    return latents + decode + batch * 3 * width * height * 4  # + the decoded images in fp32


def check_job(width: int, height: int, batch: int, latent_channels: int, downscale: int, vae_size: int,
              device: Any, tile_pixels: int | None = None, free: FreeProbe = free_memory) -> int:
    """Refuse (``InsufficientMemoryError``) a job whose latents and VAE decode cannot fit the free memory of
    *device*; returns the estimate in bytes."""
    need = job_bytes(width, height, batch, latent_channels, downscale, vae_size, tile_pixels)
    available = free(device)
    if available is not None and need > available:
        tiled = " or turn on Tiled VAE (setting vae_tiling_mp)" if tile_pixels is None else ""
        raise _refuse(f"a {width}x{height} job of {batch} image(s)", str(device), need,
                      "latents and VAE decode", available,
                      f"Use a smaller size or batch{tiled}, or start with --medvram / --lowvram.")
    return need


def job_size(params: Any) -> tuple[int, int]:
    """The largest image size a job decodes: its size, or the hires fix's target when that is on."""
    width, height = int(params.width), int(params.height)
    hires = getattr(params, "hires", None)
    if hires is None or not getattr(hires, "enabled", False):
        return width, height
    rx, ry = int(hires.resize_x or 0), int(hires.resize_y or 0)
    if rx or ry:
        return rx or round(width * ry / height), ry or round(height * rx / width)
    return int(width * hires.scale), int(height * hires.scale)


def check_plan_job(manager: Any, model: Any, family: Any, params: Any, settings: Any) -> int | None:
    """``check_job`` for a prepared job: its model's latent format and VAE dtype, the manager's device and probe
    (``manager.memory_probe``; None skips), Tiled VAE from the setting ``vae_tiling_mp``."""
    probe = getattr(manager, "memory_probe", None)
    policy = getattr(manager, "policy", None)
    vae = getattr(getattr(model, "loaded", None), "pipe", None)
    vae = getattr(vae, "vae", None)
    if probe is None or policy is None or vae is None:
        return None
    width, height = job_size(params)
    limit = float(settings.get("vae_tiling_mp", 0.0) or 0.0)
    tile = None
    if limit > 0 and width * height > limit * 1_000_000:
        side = int(getattr(vae, "tile_sample_min_size", 0) or getattr(vae.config, "sample_size", 512) or 512)
        tile = side * side
    vae_size = next(vae.parameters()).element_size()
    return check_job(width, height, int(params.batch_size), family.latent.channels, family.latent.downscale, vae_size,
                     policy.device, tile, probe)
