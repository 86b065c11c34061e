"""ModelManager: the only code that loads weights, moves them between devices and swaps VAEs.

- ``get(checkpoint, vae=...)`` resolves a title/alias through the catalog, loads it with
  ``app.models.load.loader.load_pipeline`` (hash computed on load), and makes it the active model.
- A RAM LRU keeps the active model plus up to ``sd_checkpoint_cache`` recently used ones; a model
  that stops being active is moved off the GPU (CPU only: references are simply kept).
- The VAE is chosen per request (``Automatic`` | ``None`` | file name, A1111 order via
  ``catalog_vae.resolve_vae``); an external VAE's weights are copied into the pipeline's VAE in
  place, and the checkpoint's baked VAE is restored the same way.
- Split-file models (Z-Image): the text encoder and VAE files come from the catalog's part resolution with the
  setting ``forge_additional_modules`` (Forge's "VAE / Text Encoder"); a cached model whose parts no longer match
  the setting is reloaded. ``sd_vae`` applies to SD checkpoints only.
- ``--medvram``/``--lowvram`` use diffusers' model / sequential CPU offload on a GPU; moving a model's weights
  (device, dtypes, offload hooks) is ``app.models.placement``, this class decides which model is where.
- A failed load leaves the previous model active and raises ``ModelLoadError`` naming the file.
- One re-entrant lock makes every public method thread-safe.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from pathlib import Path
from typing import Any

import torch

from app.devices import DevicePolicy, free_memory
from app.engine.image.upscalers import UpscalerRegistry
from app.firstrun import no_checkpoint_message
from app.models import memory_check
from app.models.handle import ModelFileError, ModelHandle, ModelLoadError, ModelNotFoundError  # noqa: F401  (public here too)
from app.models.placement import components, move_off_device, place, weights_editable
from app.models.taesd import load_taesd
from app.plugins import hooks
from app.plugins.registry import PluginRegistry
from app.prompts.extra_networks import ExtraNetworkRegistry

log = logging.getLogger(__name__)


def _setting(settings: Any, key: str, default: Any) -> Any:
    if settings is None:
        return default
    value = settings.get(key) if hasattr(settings, "get") else None
    return default if value is None else value


class ModelManager:
    """See module doc. ``catalog``: ``app.models.catalog.Catalog``; ``device_policy``: ``DevicePolicy``."""

    def __init__(
        self,
        catalog: Any,
        settings: Any = None,
        device_policy: Any = None,
        *,
        embeddings: Any = None,
        paths: Any = None,
        vae_path: str | None = None,
        allow_unsafe: bool = False,
        extra_networks: ExtraNetworkRegistry | None = None,
        upscalers: UpscalerRegistry | None = None,
        plugins: PluginRegistry | None = None,
    ):
        self.catalog = catalog
        self.paths = paths
        self.embeddings = embeddings  # EmbeddingDatabase or None
        self.settings = settings
        self.policy = device_policy if device_policy is not None else DevicePolicy.cpu()
        self.vae_path = vae_path  # --vae-path (None: the catalog uses paths.vae_file)
        self.allow_unsafe = allow_unsafe  # --disable-safe-unpickle: full pickles in .ckpt/.pt files
        #: handlers of ``<lora:...>``-style prompt tags for this manager's jobs (the Runtime registers LoRA here)
        self.extra_networks = extra_networks if extra_networks is not None else ExtraNetworkRegistry()
        #: the upscalers (ESRGAN... model files) this manager's jobs use: hires fix, SD upscale, extras, img2img resize
        self.upscalers = upscalers if upscalers is not None else UpscalerRegistry(paths, settings, self.policy.device)
        #: the extensions' registry whose hooks this manager's jobs and loads call (the Runtime's ``runtime.plugins``)
        self.plugins = plugins if plugins is not None else PluginRegistry()
        self._lock = threading.RLock()
        self._cache: collections.OrderedDict[str, ModelHandle] = collections.OrderedDict()  # filename → handle
        self._active: ModelHandle | None = None
        self._vae_state_cache: tuple[str, dict[str, torch.Tensor]] | None = None
        self._taesd: dict[str, Any] = {}
        self.load_count = 0  # checkpoints actually read from disk (tests, /memory)
        #: free bytes of a device (``memory_check.free_memory``); loads and jobs that cannot fit are refused first
        self.memory_probe: memory_check.FreeProbe | None = memory_check.free_memory

    # -- public ------------------------------------------------------------------------------
    @property
    def lock(self) -> threading.RLock:
        return self._lock

    @property
    def current(self) -> ModelHandle | None:
        return self._active

    def loaded_filenames(self) -> list[str]:
        """Files held in RAM, least recently used first (the active model is last)."""
        with self._lock:
            return list(self._cache)

    def get(self, checkpoint: str | None = None, vae: str | None = None) -> ModelHandle:
        """The model for *checkpoint* (title/alias; empty = setting ``sd_model_checkpoint``, else the
        first checkpoint), active on the device with the VAE *vae* (empty = setting ``sd_vae``)."""
        with self._lock:
            info = self._resolve(checkpoint)
            handle = self._cache.get(os.path.abspath(info.filename))
            if handle is not None and self._parts_changed(handle, info):
                self._cache.pop(os.path.abspath(info.filename), None)
                move_off_device(handle, self.policy)
                if self._active is handle:
                    self._active = None
                handle = None
            if handle is None:
                handle = self._load_making_room(info)
            self._activate(handle)
            self.apply_vae(handle, vae)
            return handle

    def parts_for(self, info: Any) -> dict[str, Any] | None:
        """The text encoder / VAE files of a split-file model under the current ``forge_additional_modules``
        (None for a checkpoint that holds everything); ``MissingPartError`` names a missing file and its folder."""
        if not hasattr(self.catalog, "model_parts"):
            return None
        chosen = _setting(self.settings, "forge_additional_modules", [])
        return self.catalog.model_parts(info, [str(c) for c in chosen] if isinstance(chosen, (list, tuple)) else [])

    def _parts_changed(self, handle: ModelHandle, info: Any) -> bool:
        loaded_parts = getattr(handle.loaded, "extra", {}).get("parts")
        if not loaded_parts:
            return False
        try:
            wanted = self.parts_for(info) or {}
        except FileNotFoundError:
            return False  # keep what is loaded; the missing file is reported on the next real load
        return any(str(v) != loaded_parts.get(k) for k, v in wanted.items())

    def _load_making_room(self, info: Any) -> ModelHandle:
        """Load a checkpoint after moving the active one off the GPU and evicting for its RAM slot;
        a failed load puts the previous model back in place."""
        previous = self._active
        if previous is not None:
            move_off_device(previous, self.policy)
            self._active = None
        self._evict(reserve=1)
        try:
            return self._load(info)
        except Exception:
            if previous is not None:
                place(previous, self.policy)
                self._active = previous
            raise

    def activate(self, handle: ModelHandle, vae: str | None = None) -> ModelHandle:
        """Make a handle obtained earlier the active model again (it is re-cached if it was evicted)."""
        with self._lock:
            key = os.path.abspath(handle.info.filename)
            if self._cache.get(key) is not handle:
                self._cache[key] = handle
            self._activate(handle)
            self.apply_vae(handle, vae)
            return handle

    def apply_vae(self, handle: ModelHandle, choice: str | None = None) -> None:
        """Put the chosen VAE's weights into ``handle.pipe.vae`` (restoring the baked one for None)."""
        with self._lock:
            if getattr(handle.loaded, "extra", {}).get("parts"):
                return  # split-file models: the VAE is a part (forge_additional_modules), never an SD VAE
            value = choice if choice else _setting(self.settings, "sd_vae", "Automatic")
            overrides = bool(_setting(self.settings, "sd_vae_overrides_per_model_preferences", True))
            vae_info, source = self.catalog.resolve_vae(value, handle.info, self.vae_path, overrides)
            wanted = os.path.abspath(vae_info.filename) if vae_info is not None else None
            if wanted == handle.vae_filename:
                return
            vae = handle.loaded.pipe.vae
            if wanted is None:
                if handle.baked_vae_state is not None:
                    with weights_editable(handle, self.policy, active=self._active is handle):
                        vae.load_state_dict(handle.baked_vae_state)
                handle.vae_name = handle.vae_hash = handle.vae_filename = None
                log.info("VAE: using the checkpoint's own VAE (%s)", source)
                return
            state = self._read_vae_state(wanted, handle)
            with weights_editable(handle, self.policy, active=self._active is handle):
                if handle.baked_vae_state is None:
                    handle.baked_vae_state = {k: v.detach().to("cpu", copy=True) for k, v in vae.state_dict().items()}
                try:
                    vae.load_state_dict(state)
                except Exception as exc:
                    vae.load_state_dict(handle.baked_vae_state)
                    raise ModelLoadError(f"VAE {vae_info.filename} does not fit this checkpoint's VAE: {exc}") from exc
            handle.vae_name = vae_info.name
            handle.vae_filename = wanted
            handle.vae_hash = self._vae_hash(vae_info)
            log.info("VAE: loaded %s (%s)", vae_info.filename, source)

    def encoder(self, handle: ModelHandle) -> Any:
        """The handle's prompt encoder (built once by its family), with the embeddings checked against its width."""
        from app.families import family_of

        family = family_of(handle.loaded)
        with self._lock:
            db = self.embeddings if family.textual_inversion else None
            if db is not None:
                dims = _embedding_dims(handle)
                if db.expected_dims != dims:
                    db.set_model(dims)
                else:
                    db.refresh_if_changed()
            if handle.encoder is None:
                backtrack = int(_setting(self.settings, "comma_padding_backtrack", 20))
                handle.encoder = family.prompt_encoder(
                    handle.loaded.pipe, handle.loaded.family, db, comma_padding_backtrack=backtrack,
                    compute_device=self.policy.device,
                )
            return handle.encoder

    def taesd(self, handle: ModelHandle) -> Any:
        """A TAESD decoder for live previews (``models/VAE-taesd/taesd[xl]_decoder.{safetensors,pth}``) or None.

        Original TAESD files (``nn.Sequential`` keys ``1.weight``...) and diffusers ``AutoencoderTiny``
        decoder keys are both accepted. Loaded once per file, on the compute device.
        """
        with self._lock:
            stem = "taesdxl_decoder" if getattr(handle.loaded, "is_sdxl", False) else "taesd_decoder"
            folder = getattr(self.paths, "models_dir", None)
            candidates = [] if folder is None else [folder / "VAE-taesd" / f"{stem}{ext}" for ext in (".safetensors", ".pth", ".pt")]
            path = next((c for c in candidates if c.is_file()), None)
            if path is None:
                return None
            if str(path) not in self._taesd:
                try:
                    self._taesd[str(path)] = load_taesd(path, self.policy)
                except ModelLoadError as exc:  # previews fall back to the cheap approximation
                    log.warning("%s", exc)
                    self._taesd[str(path)] = None
            return self._taesd[str(path)]

    def unload(self) -> None:
        """Drop every cached model (``/sdapi/v1/unload-checkpoint``)."""
        with self._lock:
            for handle in self._cache.values():
                move_off_device(handle, self.policy)
            self._cache.clear()
            self._active = None
            self._vae_state_cache = None
        free_memory()

    def reload(self, checkpoint: str | None = None) -> ModelHandle:
        """Re-read the checkpoint from disk (``/sdapi/v1/reload-checkpoint``)."""
        with self._lock:
            info = self._resolve(checkpoint)
            old = self._cache.pop(os.path.abspath(info.filename), None)
            if old is not None:
                move_off_device(old, self.policy)
                if self._active is old:
                    self._active = None
            return self.get(checkpoint)

    def vae_dtype_fallback(self, handle: ModelHandle) -> None:
        """Switch the VAE to fp32 for good after a NaN decode (A1111 ``auto_vae_precision``)."""
        with self._lock:
            handle.vae_fp32 = True
            handle.loaded.pipe.vae.to(dtype=torch.float32)

    # -- internals ---------------------------------------------------------------------------
    def _resolve(self, checkpoint: str | None) -> Any:
        wanted = checkpoint or ""
        if not wanted:  # the setting; a stale value (file gone) falls back like A1111, with a warning
            configured = str(_setting(self.settings, "sd_model_checkpoint", "") or "")
            if configured and self.catalog.find_checkpoint(configured) is not None:
                wanted = configured
            elif configured:
                log.warning("checkpoint %r from the settings not found; using another one", configured)
        info = self.catalog.find_checkpoint(wanted) if wanted else None
        if info is None and not wanted and self._active is not None:
            return self._active.info
        if info is None and not wanted:
            available = self.catalog.checkpoints()
            if not available:
                raise ModelNotFoundError(no_checkpoint_message(self._checkpoint_folder()))
            info = available[0]
        if info is None:
            names = ", ".join(c.title for c in self.catalog.checkpoints()[:20])
            raise ModelNotFoundError(f"checkpoint {wanted!r} not found; available: {names or '(none)'}")
        return info

    def _checkpoint_folder(self) -> Path:
        """Where new checkpoints go (absolute), for the "no checkpoint" message."""
        dirs = getattr(self.paths, "ckpt_dirs", None)
        return Path(dirs[0]) if dirs else Path("models", "Stable-diffusion").resolve()

    def _load(self, info: Any) -> ModelHandle:
        from app.models.load import loader

        try:
            if hasattr(self.catalog, "ensure_hash"):
                info = self.catalog.ensure_hash(info) or info
            parts = self.parts_for(info)
            memory_check.check_load(info.filename, parts, self.policy, free=self.memory_probe)
            kwargs = {"parts": parts} if parts is not None else {}
            loaded = loader.load_pipeline(info.filename, device_policy=self.policy, allow_unsafe=self.allow_unsafe,
                                          **kwargs)
        except memory_check.InsufficientMemoryError:
            raise  # its message says the numbers and what to do
        except Exception as exc:
            free_memory()
            raise _load_error(exc)(f"could not load checkpoint {info.filename}: {type(exc).__name__}: {exc}") from exc
        self.load_count += 1
        pipe = loaded.pipe
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)
        for module in components(pipe).values():
            module.requires_grad_(False)
            module.eval()
        from app.models.optim import apply_optimisations

        handle = ModelHandle(loaded=loaded, info=info)
        handle.optimisations = apply_optimisations(pipe, self.settings)
        self._cache[os.path.abspath(info.filename)] = handle
        log.info("loaded checkpoint %s (%s)", info.filename, getattr(loaded, "family", "?"))
        hooks.model_loaded(handle, self.plugins)  # extensions' on_model_loaded (A1111 script_callbacks.on_model_loaded)
        return handle

    def _activate(self, handle: ModelHandle) -> None:
        key = os.path.abspath(handle.info.filename)
        self._cache.move_to_end(key)
        if self._active is not handle:
            if self._active is not None:
                move_off_device(self._active, self.policy)
            place(handle, self.policy)
            self._active = handle
        self._evict()

    def _evict(self, reserve: int = 0) -> None:
        keep = 1 + max(0, int(_setting(self.settings, "sd_checkpoint_cache", 2))) - reserve
        evicted = False
        while len(self._cache) > keep:
            _, old = self._cache.popitem(last=False)
            move_off_device(old, self.policy)
            evicted = True
            log.info("evicted %s from the checkpoint cache", old.info.filename)
        if evicted:
            free_memory()

    def _read_vae_state(self, filename: str, handle: ModelHandle) -> dict[str, torch.Tensor]:
        if self._vae_state_cache is not None and self._vae_state_cache[0] == filename:
            return self._vae_state_cache[1]
        from app.models.load import loader

        try:
            vae = loader.load_vae(filename, like=handle.loaded, device_policy=self.policy, allow_unsafe=self.allow_unsafe)
        except Exception as exc:
            raise _load_error(exc)(f"could not load VAE {filename}: {type(exc).__name__}: {exc}") from exc
        state = {k: v.detach().to("cpu") for k, v in vae.state_dict().items()}
        self._vae_state_cache = (filename, state)
        return state

    def _vae_hash(self, info: Any) -> str | None:
        try:
            return self.catalog.vae_hash(info)
        except Exception as exc:  # a hash failure must not stop generation
            log.warning("could not hash VAE %s: %s", info.filename, exc)
            return None


def _embedding_dims(handle: ModelHandle) -> dict[str, int]:
    """Expected textual-inversion widths per text encoder slot for the handle's family."""
    pipe = handle.loaded.pipe
    family = str(handle.loaded.family)
    if family == "sdxl-refiner":  # OpenCLIP bigG alone
        return {"clip_g": int(pipe.text_encoder_2.config.hidden_size)}
    width = int(pipe.text_encoder.config.hidden_size)
    if family.startswith("sdxl"):
        return {"clip_l": width, "clip_g": int(pipe.text_encoder_2.config.hidden_size)}
    if family.startswith("sd2"):
        return {"clip_h": width}
    return {"clip_l": width}


def create_manager(runtime: Any) -> ModelManager:
    """Build the manager of a ``Runtime`` (catalog, settings, device policy, embeddings folders)."""
    from app.models.embeddings import EmbeddingDatabase
    from app.models.optim import tune_allocator

    tune_allocator()  # before the job worker thread starts (see there)
    paths = runtime.paths
    db = EmbeddingDatabase(getattr(paths, "embeddings_dirs", ()))
    allow_unsafe = bool(getattr(runtime.args, "disable_safe_unpickle", False))
    return ModelManager(runtime.catalog, runtime.settings, runtime.devices, embeddings=db, paths=paths,
                        allow_unsafe=allow_unsafe, extra_networks=getattr(runtime, "extra_networks", None),
                        upscalers=getattr(runtime, "upscalers", None), plugins=getattr(runtime, "plugins", None))


def _load_error(exc: BaseException) -> type[ModelLoadError]:
    """``ModelFileError`` (a 4xx for the request) when the file itself was refused or is corrupt."""
    from app.models.catalog.parts import MissingPartError
    from app.models.load.checkpoint_io import CheckpointLoadError

    return ModelFileError if isinstance(exc, (CheckpointLoadError, MissingPartError)) else ModelLoadError

