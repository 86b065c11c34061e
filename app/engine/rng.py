"""Seeds and noise with A1111 semantics (spec §6.3).

- ``resolve_seed`` / ``all_seeds``: -1 becomes a random seed; image ``i`` gets ``seed + i`` (all the
  same seed when a variation strength is set), subseeds ``subseed + i``.
- ``ImageRNG``: one generator per image, so image ``k`` of a batch equals the single image with that
  seed. ``first()`` is the initial latent noise (variation seed slerp, resize-seed-from); afterwards
  the generators are re-seeded with ``seed + ENSD`` (when ENSD ≠ 0) and ``next()`` gives the
  per-step noise of ancestral/SDE samplers.
- Sources: "CPU" (torch CPU generator), "GPU" (a generator on the compute device; CPU when that is
  the CPU or MPS), "NV" (Philox4x32-10 + Box-Muller in numpy: CUDA ``torch.randn`` on any machine).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

__all__ = [
    "RANDN_SOURCES",
    "ImageRNG",
    "Img2ImgSchedule",
    "PhiloxGenerator",
    "all_seeds",
    "generators_for",
    "img2img_schedule",
    "img2img_steps",
    "make_noise",
    "resolve_seed",
    "slerp",
]

RANDN_SOURCES = ("GPU", "CPU", "NV")
_SEED_RANGE = 4294967294


# ---------------------------------------------------------------- seeds
def resolve_seed(seed: object, rand: random.Random | None = None) -> int:
    """A fixed seed: -1, None, "" or anything that is not an integer becomes a random one."""
    value: int
    if seed is None or isinstance(seed, bool):
        value = -1
    elif isinstance(seed, int):
        value = seed
    elif isinstance(seed, float):
        value = int(seed) if seed == seed and abs(seed) != float("inf") else -1
    elif isinstance(seed, str):
        try:
            value = int(seed.strip())
        except ValueError:
            try:
                value = int(float(seed.strip()))
            except (ValueError, OverflowError):
                value = -1
    else:
        value = -1
    if value == -1:
        return int((rand or random).randrange(_SEED_RANGE))
    return value


def all_seeds(
    seed: object, subseed: object, subseed_strength: float, n_images: int, rand: random.Random | None = None
) -> tuple[list[int], list[int]]:
    """Per-image (seeds, subseeds): ``seed + i`` (or ``seed`` for all when a variation strength is set)
    and ``subseed + i``. Lists are taken as given (A1111 accepts explicit seed lists)."""
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    if isinstance(seed, (list, tuple)):
        seeds = [resolve_seed(s, rand) for s in seed]
    else:
        base = resolve_seed(seed, rand)
        seeds = [base + (i if not subseed_strength else 0) for i in range(n_images)]
    if isinstance(subseed, (list, tuple)):
        subseeds = [resolve_seed(s, rand) for s in subseed]
    else:
        sub = resolve_seed(subseed, rand)
        subseeds = [sub + i for i in range(n_images)]
    return seeds, subseeds


# ---------------------------------------------------------------- NV (Philox) generator
_PHILOX_M = (np.uint64(0xD2511F53), np.uint64(0xCD9E8D57))
_PHILOX_W = (np.uint32(0x9E3779B9), np.uint32(0xBB67AE85))
_TWO_POW32_INV = np.float32(2.3283064e-10)
_TWO_POW32_INV_2PI = np.float32(2.3283064e-10 * 6.2831855)


def _mulhilo(a: np.ndarray, m: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    prod = a.astype(np.uint64) * m
    return (prod >> np.uint64(32)).astype(np.uint32), (prod & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _philox4x32_10(counter: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Ten Philox rounds on a (4, N) uint32 counter with a (2,) uint32 key."""
    c = counter.copy()
    k0, k1 = key[0], key[1]
    with np.errstate(over="ignore"):
        for r in range(10):
            hi0, lo0 = _mulhilo(c[0], _PHILOX_M[0])
            hi1, lo1 = _mulhilo(c[2], _PHILOX_M[1])
            c = np.stack([hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0])
            if r < 9:
                k0 = np.uint32(k0 + _PHILOX_W[0])
                k1 = np.uint32(k1 + _PHILOX_W[1])
    return c


class PhiloxGenerator:
    """A1111's "NV" source: reproduces CUDA ``torch.randn`` for a seed, each call one new offset."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self.offset = 0

    def randn(self, shape: Sequence[int]) -> np.ndarray:
        n = int(np.prod(shape)) if len(shape) else 1
        counter = np.zeros((4, n), dtype=np.uint32)
        counter[0] = self.offset
        counter[2] = np.arange(n, dtype=np.uint32)
        self.offset += 1
        key = np.array([self.seed & 0xFFFFFFFF, self.seed >> 32], dtype=np.uint32)
        out = _philox4x32_10(counter, key)
        # Box-Muller on the first two words (CUDA's curand_normal uses the sine branch here).
        u = out[0] * _TWO_POW32_INV + _TWO_POW32_INV / 2
        v = out[1] * _TWO_POW32_INV_2PI + _TWO_POW32_INV_2PI / 2
        return (np.sqrt(-2.0 * np.log(u)) * np.sin(v)).astype(np.float32).reshape(tuple(shape))


# ---------------------------------------------------------------- noise
def slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """A1111's variation-seed slerp: norms along dim 1; near-parallel inputs use the (inverted)
    linear fallback ``low*val + high*(1-val)``, exactly as A1111 does."""
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (torch.sin(val * omega) / so).unsqueeze(1) * high


def _noise_device(source: str, device: torch.device) -> torch.device:
    if source == "GPU" and device.type not in ("cpu", "mps"):
        return device
    return torch.device("cpu")


def _make_generator(seed: int, source: str, device: torch.device) -> torch.Generator | PhiloxGenerator:
    if source == "NV":
        return PhiloxGenerator(seed)
    return torch.Generator(_noise_device(source, device)).manual_seed(int(seed) & 0xFFFFFFFFFFFFFFFF)


def _randn(generator: torch.Generator | PhiloxGenerator, shape: tuple[int, ...]) -> torch.Tensor:
    if isinstance(generator, PhiloxGenerator):
        return torch.from_numpy(generator.randn(shape))
    return torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)


def _paste_centered(dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """Paste ``src`` (C,h,w) centred into ``dst`` (C,H,W), centre-cropping where it is larger."""
    dx = (dst.shape[2] - src.shape[2]) // 2
    dy = (dst.shape[1] - src.shape[1]) // 2
    w = src.shape[2] if dx >= 0 else src.shape[2] + 2 * dx
    h = src.shape[1] if dy >= 0 else src.shape[1] + 2 * dy
    tx, ty = max(dx, 0), max(dy, 0)
    sx, sy = max(-dx, 0), max(-dy, 0)
    dst[:, ty : ty + h, tx : tx + w] = src[:, sy : sy + h, sx : sx + w]
    return dst


class ImageRNG:
    """Per-image generators: ``next()`` first gives the initial noise, then per-step noise [B,C,H,W]."""

    def __init__(
        self,
        shape_chw: Sequence[int],
        seeds: Sequence[int],
        subseeds: Sequence[int] | None = None,
        subseed_strength: float = 0.0,
        seed_resize_from: tuple[int, int] = (0, 0),
        source: str = "CPU",
        device: str | torch.device = "cpu",
        ensd: int = 0,
        latent_factor: int = 8,
    ) -> None:
        if source not in RANDN_SOURCES:
            raise ValueError(f"randn source must be one of {', '.join(RANDN_SOURCES)}, got {source!r}")
        if len(shape_chw) != 3:
            raise ValueError(f"noise shape must be (C, H, W), got {tuple(shape_chw)}")
        if not seeds:
            raise ValueError("ImageRNG needs at least one seed")
        self.shape = tuple(int(s) for s in shape_chw)
        self.seeds = [int(s) for s in seeds]
        self.subseeds = [int(s) for s in subseeds] if subseeds is not None else None
        self.subseed_strength = float(subseed_strength or 0.0)
        rw, rh = (int(seed_resize_from[0] or 0), int(seed_resize_from[1] or 0)) if seed_resize_from else (0, 0)
        self.seed_resize_from = (rw, rh)
        self.source = source
        self.device = torch.device(device)
        self.ensd = int(ensd or 0)
        self.latent_factor = int(latent_factor)
        self.generators = [_make_generator(s, source, self.device) for s in self.seeds]
        self.is_first = True

    def _fresh(self, seed: int, shape: tuple[int, ...]) -> torch.Tensor:
        return _randn(_make_generator(seed, self.source, self.device), shape)

    def first(self) -> torch.Tensor:
        """The initial latent noise; afterwards re-seeds with seed+ENSD when ENSD is set."""
        rw, rh = self.seed_resize_from
        resized = rw > 0 and rh > 0
        noise_shape = (self.shape[0], rh // self.latent_factor, rw // self.latent_factor) if resized else self.shape
        if resized and (noise_shape[1] < 1 or noise_shape[2] < 1):
            raise ValueError(f"seed_resize_from {rw}x{rh} is smaller than one latent pixel")
        xs = []
        for i, (seed, gen) in enumerate(zip(self.seeds, self.generators, strict=True)):
            subnoise = None
            if self.subseeds is not None and self.subseed_strength != 0:
                subseed = self.subseeds[i] if i < len(self.subseeds) else 0
                subnoise = self._fresh(subseed, noise_shape)
            noise = self._fresh(seed, noise_shape) if resized else _randn(gen, self.shape)
            if subnoise is not None:
                noise = slerp(self.subseed_strength, noise, subnoise.to(noise.device))
            if resized:
                noise = _paste_centered(_randn(gen, self.shape), noise)
            xs.append(noise)
        if self.ensd:
            self.generators = [_make_generator(s + self.ensd, self.source, self.device) for s in self.seeds]
        self.is_first = False
        return torch.stack(xs).to(self.device)

    def next(self) -> torch.Tensor:
        """The next noise batch [B,C,H,W] (the first call returns :meth:`first`)."""
        if self.is_first:
            return self.first()
        return torch.stack([_randn(g, self.shape) for g in self.generators]).to(self.device)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step noise shaped like ``x`` (a [B,C,H,W] latent of this RNG's batch)."""
        if tuple(x.shape) != (len(self.seeds), *self.shape):
            raise ValueError(f"randn_like: expected shape {(len(self.seeds), *self.shape)}, got {tuple(x.shape)}")
        return self.next().to(device=x.device, dtype=x.dtype)

    def torch_generators(self) -> list[torch.Generator]:
        """The per-image torch generators, to pass as ``generator=`` to a diffusers scheduler's
        ``step`` (its ``randn_tensor`` draws image ``i``'s noise from generator ``i``). Call after
        :meth:`first`. The NV source has no torch generators: CPU generators seeded with seed+ENSD
        stand in (an approximation of A1111's NV per-step noise)."""
        if self.source == "NV":
            return generators_for(self.seeds, self.ensd)
        return list(self.generators)  # type: ignore[arg-type]


def make_noise(
    seeds: Sequence[int],
    subseeds: Sequence[int] | None = None,
    subseed_strength: float = 0.0,
    shape_chw: Sequence[int] = (4, 64, 64),
    seed_resize_from: tuple[int, int] = (0, 0),
    source: str = "CPU",
    device: str | torch.device = "cpu",
    latent_factor: int = 8,
) -> torch.Tensor:
    """The initial latent noise [B,C,H,W] of a batch, one generator per image seed."""
    rng = ImageRNG(shape_chw, seeds, subseeds, subseed_strength, seed_resize_from, source, device, 0, latent_factor)
    return rng.first()


def generators_for(seeds: Sequence[int], ensd: int = 0, device: str | torch.device = "cpu") -> list[torch.Generator]:
    """Fresh per-image generators seeded with ``seed + ENSD`` (for a scheduler's ``generator=``)."""
    return [torch.Generator(torch.device(device)).manual_seed((int(s) + int(ensd)) & 0xFFFFFFFFFFFFFFFF) for s in seeds]


# ---------------------------------------------------------------- img2img step counts
class Img2ImgSchedule(NamedTuple):
    """How img2img runs: build a schedule of ``total_steps`` and run its last ``run_steps`` steps,
    starting at step index ``start_index`` (= total_steps - run_steps)."""

    total_steps: int
    t_enc: int
    run_steps: int
    start_index: int


def img2img_schedule(steps: int, denoising_strength: float, fix_steps: bool = False) -> Img2ImgSchedule:
    """A1111's rule: ``t_enc = int(min(d, 0.999) * steps)`` and ``t_enc + 1`` steps are run.
    With ``fix_steps`` (setting img2img_fix_steps, and always for the hires pass) exactly ``steps``
    run out of ``int(steps / min(d, 0.999))``. Strength 0 runs one step at the smallest noise."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0.0 <= float(denoising_strength) <= 1.0:
        raise ValueError(f"denoising_strength must be within [0, 1], got {denoising_strength}")
    d = min(float(denoising_strength), 0.999)
    if fix_steps and d > 0:
        total = int(steps / d)
        t_enc = steps - 1
    else:
        total = steps
        t_enc = int(d * steps)
    run = t_enc + 1
    return Img2ImgSchedule(total, t_enc, run, total - run)


def img2img_steps(steps: int, denoising_strength: float, fix_steps: bool = False) -> int:
    """Number of sampling steps img2img runs (20 at 0.75 → 16; with fix_steps → ``steps``)."""
    return img2img_schedule(steps, denoising_strength, fix_steps).run_steps
