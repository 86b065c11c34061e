"""``modules.sd_models``: the checkpoint list and the loaded model as A1111 extensions read them, over the
runtime's catalog (``app.models.catalog``) and model manager.

``checkpoints_list`` (title → info), ``checkpoint_aliases``, ``checkpoint_tiles()``, ``list_models()``,
``get_closet_checkpoint_match()``, ``select_checkpoint()``, ``model_hash()``, ``reload_model_weights()``,
``unload_model_weights()`` and ``model_data.get_sd_model()`` / ``model_data.sd_model`` (the description of
the loaded model of ``modules.shared.sd_model``; the weights stay inside the engine).
"""

from __future__ import annotations

import hashlib
from typing import Any

from app.plugins.compat.current import current


class CheckpointInfo:
    """A1111's ``CheckpointInfo`` over one catalog entry (``hash`` is A1111's old 8-hex hash)."""

    def __init__(self, info: Any) -> None:
        self._info = info

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.__dict__["_info"], name)

    @property
    def hash(self) -> str | None:
        return getattr(self._info, "old_hash", None) or None

    @property
    def metadata(self) -> dict[str, Any]:
        return {}

    def calculate_shorthash(self) -> str | None:
        """The 10-hex sha256 prefix (hashes the file once when it is not known yet)."""
        catalog = _catalog()
        if catalog is not None and not self._info.sha256:
            self._info = catalog.ensure_hash(self._info)
        return self._info.shorthash

    def __repr__(self) -> str:
        return f"CheckpointInfo({self._info.title!r})"


def _runtime() -> Any:
    return current().runtime


def _catalog() -> Any:
    runtime = _runtime()
    return getattr(runtime, "catalog", None) if runtime is not None else None


def _infos() -> list[CheckpointInfo]:
    catalog = _catalog()
    return [CheckpointInfo(info) for info in catalog.checkpoints()] if catalog is not None else []


def list_models() -> None:
    """Rescan the checkpoint folders."""
    catalog = _catalog()
    if catalog is not None:
        catalog.refresh_checkpoints()


def checkpoint_tiles(use_short: bool = False) -> list[str]:
    """The checkpoint dropdown entries."""
    catalog = _catalog()
    return list(catalog.checkpoint_titles(use_short)) if catalog is not None else []


def get_closet_checkpoint_match(search_string: str) -> CheckpointInfo | None:
    """A1111's lookup by alias, title substring, or title without ``[hash]`` (its spelling kept)."""
    catalog = _catalog()
    found = catalog.find_checkpoint(search_string) if catalog is not None else None
    return CheckpointInfo(found) if found is not None else None


def select_checkpoint() -> CheckpointInfo | None:
    """The checkpoint the ``sd_model_checkpoint`` setting names, else the first one (None without any)."""
    settings = current().settings
    wanted = settings.get("sd_model_checkpoint", "") if settings is not None else ""
    return get_closet_checkpoint_match(wanted) or next(iter(_infos()), None)


def model_hash(filename: str) -> str:
    """A1111's old 8-hex model hash (sha256 of 64 KiB at offset 1 MiB)."""
    try:
        with open(filename, "rb") as f:
            f.seek(0x100000)
            return hashlib.sha256(f.read(0x10000)).hexdigest()[0:8]
    except OSError:
        return "NOFILE"


def _manager() -> Any:
    runtime = _runtime()
    if runtime is None:
        raise RuntimeError("modules.sd_models: no Atelier runtime is running")
    return runtime.manager


def reload_model_weights(sd_model: Any = None, info: Any = None, forced_reload: bool = False) -> Any:
    """Load ``info``'s checkpoint (else the selected one) through the model manager; returns ``sd_model``."""
    chosen = info if info is not None else select_checkpoint()
    title = chosen if isinstance(chosen, str) else getattr(chosen, "title", None)
    manager = _manager()
    if forced_reload:
        manager.reload(title)
    else:
        manager.get(title)
    return model_data.get_sd_model()


def load_model(checkpoint_info: Any = None, already_loaded_state_dict: Any = None) -> Any:
    """Load a checkpoint (A1111 ``load_model``)."""
    return reload_model_weights(info=checkpoint_info)


def unload_model_weights(sd_model: Any = None, info: Any = None) -> None:
    """Drop the loaded models (``/sdapi/v1/unload-checkpoint``)."""
    _manager().unload()


def apply_token_merging(sd_model: Any, token_merging_ratio: float) -> None:
    """Token merging is not part of Atelier's engine; a ratio of 0 is accepted, others are refused."""
    if token_merging_ratio:
        raise NotImplementedError("unsupported: token merging (ToMe) is not implemented by Atelier's engine")


class _ModelData:
    """``sd_models.model_data``: the loaded model (a description; see ``modules.shared.sd_model``)."""

    def get_sd_model(self) -> Any:
        from app.plugins.compat.shared import SdModelPlaceholder

        return SdModelPlaceholder()

    @property
    def sd_model(self) -> Any:
        return self.get_sd_model()

    def set_sd_model(self, value: Any, already_loaded: bool = False) -> None:
        raise NotImplementedError("unsupported: replacing the loaded model object; use reload_model_weights(info=...)")


model_data = _ModelData()


def __getattr__(name: str) -> Any:
    if name == "checkpoints_list":
        return {info.title: info for info in _infos()}
    if name == "checkpoint_aliases":
        return {alias: info for info in _infos() for alias in info.ids}
    raise AttributeError(f"module 'modules.sd_models' has no attribute {name!r}")
