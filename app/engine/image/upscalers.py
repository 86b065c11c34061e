"""Image upscalers: a registry keyed by stable ids, spandrel model files, tiled inference.

Entries (A1111 names): ``None``, ``Lanczos``, ``Nearest``, the ``Latent ...`` modes (names only:
latent upscaling is done on latents by ``app.engine.modes.hires``) and every model file in the ESRGAN,
RealESRGAN, SwinIR and DAT folders (``--esrgan-models-path`` etc. arrive through ``Paths``); a
model file is shown by its file stem, its architecture is detected by spandrel when it is loaded.
Files are read by ``app.models.load.checkpoint_io.load_model_file`` (never by spandrel from a path): a
TorchScript file is refused, because loading it would run code stored in it.
Stable ids: ``none``, ``lanczos``, ``nearest``, ``latent:<name>``, ``<kind>:<stem>`` (e.g.
``esrgan:4x-UltraSharp``).

Model upscaling runs tile by tile (settings ``ESRGAN_tile`` 192, 0 = whole image, and
``ESRGAN_tile_overlap`` 8): only one tile is on the device at a time, the result is assembled on
the CPU with linear blending across the overlaps. A small LRU keeps the last loaded models.
A scale other than the model's native one is done by repeated passes (at most 3, like A1111)
followed by a Lanczos resize to ``int(w*scale) x int(h*scale)``.

There is no process-wide registry: the Runtime builds one ``UpscalerRegistry`` (``runtime.upscalers``) and hands
it to its model manager (``manager.upscalers``, which jobs reach through ``registry_of(plan.manager)``), the UI
and the API.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.engine.image.tiles import tile_starts
from app.params import LATENT_UPSCALE_MODES
from app.settings import setting_value

log = logging.getLogger(__name__)

LATENT_NAMES: tuple[str, ...] = LATENT_UPSCALE_MODES  # hires-fix latent modes (app.params)
#: (Paths attribute, kind) of the upscaler model folders, in listing order.
MODEL_KINDS: tuple[tuple[str, str], ...] = (
    ("esrgan_dirs", "ESRGAN"),
    ("realesrgan_dirs", "RealESRGAN"),
    ("swinir_dirs", "SwinIR"),
    ("dat_dirs", "DAT"),
)
#: Image upscalers that need no model file.
PIL_UPSCALERS = ("Lanczos", "Nearest")
MODEL_EXTENSIONS = (".pth", ".pt", ".safetensors", ".ckpt")
MAX_PASSES = 3


class UpscalerError(ValueError):
    """Unknown upscaler, unreadable model file or an unusable scale (the message names which)."""


@dataclass(frozen=True)
class UpscalerInfo:
    id: str
    name: str
    model_path: Path | None = None
    scale: float = 4
    kind: str = "builtin"  # builtin | latent | ESRGAN | RealESRGAN | SwinIR | DAT

    @property
    def model_name(self) -> str | None:
        """What A1111's ``/upscalers`` reports as ``model_name`` (the model family), None for built-ins."""
        return self.kind if self.model_path is not None else None

    @property
    def is_latent(self) -> bool:
        return self.kind == "latent"


_BUILTIN = (
    UpscalerInfo("none", "None", None, 1),
    UpscalerInfo("lanczos", "Lanczos", None, 4),
    UpscalerInfo("nearest", "Nearest", None, 4),
)


def _scan(dirs: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    for folder in dirs:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*"), key=lambda p: str(p).lower()):
            if path.is_file() and path.suffix.lower() in MODEL_EXTENSIONS:
                found.append(path)
    return found


def _guess_scale(stem: str) -> float:
    """Native scale from the file name (``4x-...``, ``..._x2``); 4 when the name does not say."""
    match = re.search(r"(?:^|[^a-z0-9])(\d)x(?:[^a-z0-9]|$)|x(\d)(?:[^0-9]|$)|^(\d)x", stem.lower())
    if match:
        digit = next(g for g in match.groups() if g)
        if 1 <= int(digit) <= 8:
            return int(digit)
    return 4


class UpscalerRegistry:
    """Upscaler entries for one data dir, with an LRU of loaded spandrel models."""

    def __init__(
        self,
        paths: Any = None,
        settings: Any = None,
        device: Any = None,
        cache_size: int = 2,
        model_dirs: dict[str, Sequence[Path]] | None = None,
    ):
        self.paths = paths
        self.settings = settings
        #: where models run: a device, or a callable giving it on first load (the Runtime's probes torch, which the
        #: server process must not do just to list names)
        self._device = device
        self.cache_size = max(1, int(cache_size))
        self._dirs = model_dirs
        self._lock = threading.RLock()
        self._entries: list[UpscalerInfo] | None = None
        self._models: OrderedDict[str, Any] = OrderedDict()
        self.load_count = 0

    @property
    def device(self) -> Any:
        """The device models are loaded onto (resolved on first use when a callable was given)."""
        if callable(self._device):
            self._device = self._device()
        return self._device

    # -- listing ----------------------------------------------------------------------------------
    def _model_dirs(self) -> dict[str, Sequence[Path]]:
        if self._dirs is not None:
            return self._dirs
        out: dict[str, Sequence[Path]] = {}
        for attr, kind in MODEL_KINDS:
            out[kind] = tuple(getattr(self.paths, attr, ()) or ()) if self.paths is not None else ()
        return out

    def refresh(self) -> None:
        entries = list(_BUILTIN)
        seen: set[str] = set()
        for kind, dirs in self._model_dirs().items():
            for path in _scan(dirs):
                stem = path.stem
                uid = f"{kind.lower()}:{stem}"
                if uid in seen:
                    log.warning("upscaler %s: %s is shadowed by an earlier file of the same name", uid, path)
                    continue
                seen.add(uid)
                entries.append(UpscalerInfo(uid, stem, path, _guess_scale(stem), kind))
        entries += [UpscalerInfo(f"latent:{n}", n, None, 2, "latent") for n in LATENT_NAMES]
        with self._lock:
            self._entries = entries

    def entries(self) -> list[UpscalerInfo]:
        with self._lock:
            if self._entries is None:
                self.refresh()
            return list(self._entries or [])

    def list(self, include_latent: bool = False) -> list[UpscalerInfo]:
        return [e for e in self.entries() if include_latent or not e.is_latent]

    def names(self) -> list[str]:
        return [e.name for e in self.list()]

    def find(self, name: str) -> UpscalerInfo:
        """By name, id or model file name (case-insensitive); ``UpscalerError`` listing the choices."""
        key = (name or "None").strip().lower()
        entries = self.entries()
        for attr in ("name", "id"):
            for e in entries:
                if getattr(e, attr).lower() == key:
                    return e
        for e in entries:
            if e.model_path is not None and e.model_path.name.lower() == key:
                return e
        raise UpscalerError(f"upscaler {name!r} not found; available: {', '.join(self.names())}")

    # -- models -----------------------------------------------------------------------------------
    def load(self, info: UpscalerInfo) -> Any:
        """The spandrel ``ImageModelDescriptor`` of a model entry (LRU cached, on ``self.device``)."""
        if info.model_path is None:
            raise UpscalerError(f"upscaler {info.name!r} has no model file")
        with self._lock:
            model = self._models.get(info.id)
            if model is not None:
                self._models.move_to_end(info.id)
                return model
        model = _load_spandrel(info.model_path, self.device)
        with self._lock:
            self._models[info.id] = model
            self.load_count += 1
            while len(self._models) > self.cache_size:
                self._models.popitem(last=False)
        return model

    def clear_cache(self) -> None:
        with self._lock:
            self._models.clear()

    # -- upscaling --------------------------------------------------------------------------------
    def upscale(
        self,
        image: Image.Image,
        name: str,
        scale: float,
        tile: int | None = None,
        overlap: int | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Image.Image:
        """``image`` upscaled by *scale* with upscaler *name* → ``int(w*scale) x int(h*scale)``."""
        info = self.find(name)
        if not scale > 0:
            raise UpscalerError(f"upscale factor must be > 0, got {scale}")
        target = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
        if info.is_latent:
            raise UpscalerError(f"{info.name!r} upscales latents (hires fix); it cannot upscale an image")
        if info.id == "none":
            return image.copy()
        if info.id in ("lanczos", "nearest"):
            resample = Image.Resampling.LANCZOS if info.id == "lanczos" else Image.Resampling.NEAREST
            return image.convert("RGB").resize(target, resample=resample)
        tile = int(setting_value(self.settings, "ESRGAN_tile", 192)) if tile is None else int(tile)
        overlap = int(setting_value(self.settings, "ESRGAN_tile_overlap", 8)) if overlap is None else int(overlap)
        model = self.load(info)
        current = image.convert("RGB")
        for _ in range(MAX_PASSES):
            if current.width >= target[0] and current.height >= target[1]:
                break
            current = run_model_tiled(model, current, tile, overlap, should_stop)
        if current.size != target:
            current = current.resize(target, resample=Image.Resampling.LANCZOS)
        return current


def _load_spandrel(path: Path, device: Any) -> Any:
    """The spandrel model of an upscaler file. The file is read by ``app.models.load.checkpoint_io`` (format by
    its bytes, TorchScript refused, pickles with ``weights_only=True``) and only the resulting state dict
    is given to spandrel: spandrel's own file loading would run a TorchScript ``.pt`` through
    ``torch.jit.load``, which executes code stored in the file."""
    # deferred: the registry lists upscalers for the UI and API without loading torch or spandrel
    import spandrel
    import torch

    from app.models.load.checkpoint_io import CheckpointLoadError, load_model_file

    shown = str(path)
    try:
        state = load_model_file(path, device="cpu")
    except CheckpointLoadError as exc:  # the message names the file
        raise UpscalerError(f"upscaler {path.stem!r}: {exc}") from None
    except OSError as exc:
        raise UpscalerError(f"upscaler model {shown} cannot be read: {exc}") from None
    if not isinstance(state, dict):
        raise UpscalerError(f"upscaler model {shown} holds a {type(state).__name__}, not a state dict")
    try:
        model = spandrel.ModelLoader(device=torch.device(device or "cpu")).load_from_state_dict(state)
    except spandrel.UnsupportedModelError as exc:
        raise UpscalerError(f"upscaler model {shown}: architecture not recognised by spandrel ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - bad/corrupt file: one clear message with the path
        raise UpscalerError(f"upscaler model {shown} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, spandrel.ImageModelDescriptor):
        raise UpscalerError(f"upscaler model {shown} is a {type(model).__name__}, not an image upscaler")
    if model.input_channels != 3 or model.output_channels != 3:
        raise UpscalerError(f"upscaler model {shown} maps {model.input_channels} to {model.output_channels} channels, not RGB")
    return model.eval()


def _ramp(length: int, before: int, after: int):
    """1-D blend weights: rises over the first *before* and falls over the last *after* samples."""
    import torch  # deferred: the registry lists upscalers without loading torch

    w = torch.ones(length)
    if before > 0:
        w[:before] = (torch.arange(before, dtype=torch.float32) + 1) / (before + 1)
    if after > 0:
        w[length - after :] = torch.minimum(w[length - after :], torch.arange(after, 0, -1, dtype=torch.float32) / (after + 1))
    return w


def run_model_tiled(
    model: Any,
    image: Image.Image,
    tile: int,
    overlap: int,
    should_stop: Callable[[], bool] | None = None,
) -> Image.Image:
    """One pass of *model* over *image*, tile by tile (``tile <= 0`` or a small image: one piece)."""
    import torch  # deferred: the registry lists upscalers without loading torch


    scale = int(model.scale)
    arr = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    h, w = arr.shape[1:]
    device, dtype = model.device, model.dtype
    if tile <= 0 or (w <= tile and h <= tile):
        with torch.inference_mode():
            out = model(arr[None].to(device, dtype)).float().cpu()[0]
        return _to_pil(out)
    overlap = min(max(0, overlap), tile - 1)
    xs = tile_starts(w, min(tile, w), overlap) if w > tile else [0]
    ys = tile_starts(h, min(tile, h), overlap) if h > tile else [0]
    tw, th = min(tile, w), min(tile, h)
    out = torch.zeros(3, h * scale, w * scale)
    weight = torch.zeros(1, h * scale, w * scale)
    for iy, y in enumerate(ys):
        for ix, x in enumerate(xs):
            if should_stop is not None and should_stop():
                raise InterruptedError("upscaling interrupted")
            piece = arr[:, y : y + th, x : x + tw]
            with torch.inference_mode():
                up = model(piece[None].to(device, dtype)).float().cpu()[0]
            # blend only where this tile overlaps a neighbour
            left = (xs[ix - 1] + tw - x) * scale if ix > 0 else 0
            right = (x + tw - xs[ix + 1]) * scale if ix + 1 < len(xs) else 0
            top = (ys[iy - 1] + th - y) * scale if iy > 0 else 0
            bottom = (y + th - ys[iy + 1]) * scale if iy + 1 < len(ys) else 0
            wx = _ramp(tw * scale, left, right)
            wy = _ramp(th * scale, top, bottom)
            wt = wy[:, None] * wx[None, :]
            sy, sx = y * scale, x * scale
            out[:, sy : sy + th * scale, sx : sx + tw * scale] += up * wt
            weight[:, sy : sy + th * scale, sx : sx + tw * scale] += wt
    return _to_pil(out / weight.clamp_min(1e-8))


def _to_pil(t) -> Image.Image:
    arr = (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(arr, "RGB")


# -- names ---------------------------------------------------------------------------------------
def hires_upscaler_names(registry: UpscalerRegistry | None = None) -> list[str]:
    """Hires upscaler choices: the latent modes, then Lanczos/Nearest and the model upscalers of *registry*
    (a model manager's ``upscalers``; None: no model upscalers). Names only: the UI lists them without torch."""
    names = list(LATENT_NAMES) + list(PIL_UPSCALERS)
    if registry is not None:
        try:
            names += [n for n in registry.names() if n not in names and n != "None"]
        except Exception:  # the registry is optional here; a broken one only hides model upscalers
            log.exception("could not list the model upscalers")
    return names


# -- whose registry -------------------------------------------------------------------------------
def registry_of(manager: Any) -> UpscalerRegistry:
    """The upscaler registry of a model manager (``manager.upscalers``; the Runtime builds one per instance and
    hands it to its manager, the UI and the API). A stand-in manager without one gets a fresh registry for its
    ``paths``: there is no process-wide registry."""
    registry = getattr(manager, "upscalers", None)
    if isinstance(registry, UpscalerRegistry):
        return registry
    return UpscalerRegistry(getattr(manager, "paths", None), getattr(manager, "settings", None))
