"""``modules.script_callbacks``: ``on_<event>(callback, name=None)`` registrations.

Callbacks are stored in the current ``PluginRegistry`` (``app.plugins.compat.current``: the one being loaded) under the extension being loaded and run
where Atelier has the matching hook: ``app_started`` (``registry.run_app_started``); ``model_loaded``
(``app.plugins.hooks.model_loaded``, called by the model manager with its registry); ``before_image_saved`` / ``image_saved``
adapted onto the native ``image_saving`` / ``image_saved`` hooks (the callback gets A1111's
``ImageSaveParams`` built from the native ``SaveInfo``, and what it changes is written back); every other
event through ``registry.run_callbacks(<event>, ...)`` at the call site that owns it (``ui_settings``...).
Events Atelier never raises are accepted and stored, so such extensions still load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.plugins.api import SaveInfo
from app.plugins.compat.current import current
from app.plugins.compat.processing import StableDiffusionProcessing

#: Every event name A1111 1.10 offers (spec §12.3); ``on_<name>`` exists for each.
EVENTS = (
    "app_started", "before_reload", "model_loaded", "ui_tabs", "ui_train_tabs", "ui_settings",
    "before_image_saved", "image_saved", "extra_noise", "cfg_denoiser", "cfg_denoised", "cfg_after_cfg",
    "before_component", "after_component", "image_grid", "infotext_pasted", "script_unloaded", "before_ui",
    "list_optimizers", "list_unets", "before_token_counter",
)


@dataclass
class ImageSaveParams:
    image: Any
    p: Any
    filename: str
    pnginfo: dict[str, Any] = field(default_factory=dict)


@dataclass
class CFGDenoiserParams:
    x: Any
    image_cond: Any
    sigma: Any
    sampling_step: int
    total_sampling_steps: int
    text_cond: Any
    text_uncond: Any
    denoiser: Any = None


@dataclass
class CFGDenoisedParams:
    x: Any
    sampling_step: int
    total_sampling_steps: int
    inner_model: Any = None


@dataclass
class AfterCFGCallbackParams:
    x: Any
    sampling_step: int
    total_sampling_steps: int


@dataclass
class ImageGridLoopParams:
    imgs: list[Any]
    cols: int
    rows: int


def _registry() -> Any:
    return current()


def _register(event: str, callback: Callable[..., Any], name: str | None = None) -> None:
    _registry().add_callback(event, callback)


def _make(event: str) -> Callable[..., None]:
    def register(callback: Callable[..., Any], name: str | None = None) -> None:
        _register(event, callback, name)

    register.__name__ = f"on_{event}"
    register.__doc__ = f"Register ``callback`` for the A1111 ``{event}`` event."
    return register


on_app_started = _make("app_started")
on_before_reload = _make("before_reload")
on_model_loaded = _make("model_loaded")
on_ui_tabs = _make("ui_tabs")
on_ui_train_tabs = _make("ui_train_tabs")
on_ui_settings = _make("ui_settings")


def _save_params(info: SaveInfo) -> ImageSaveParams:
    path = "" if info.path is None else str(info.path)
    return ImageSaveParams(info.image, StableDiffusionProcessing.from_params(info.params), path,
                           {"parameters": info.infotext})


def on_before_image_saved(callback: Callable[..., Any], name: str | None = None) -> None:
    """Register ``callback(ImageSaveParams)`` to run before an image is written, once its file name is decided
    (``params.filename``, as in A1111: sd-dynamic-prompts writes its prompts .csv next to it); it may replace
    ``params.image``, ``params.pnginfo["parameters"]`` (the infotext stored in the file) or ``params.filename``."""
    def adapted(info: SaveInfo) -> None:
        save = _save_params(info)
        callback(save)
        info.image = save.image
        info.infotext = str(save.pnginfo.get("parameters", info.infotext))
        if info.path is not None and save.filename and str(save.filename) != str(info.path):
            info.path = Path(save.filename)

    adapted.__wrapped__ = callback  # type: ignore[attr-defined]
    _register("image_saving", adapted, name)


def on_image_saved(callback: Callable[..., Any], name: str | None = None) -> None:
    """Register ``callback(ImageSaveParams)`` to run after an image was written (``params.filename``)."""
    def adapted(info: SaveInfo) -> None:
        callback(_save_params(info))

    adapted.__wrapped__ = callback  # type: ignore[attr-defined]
    _register("image_saved", adapted, name)


on_extra_noise = _make("extra_noise")
on_cfg_denoiser = _make("cfg_denoiser")
on_cfg_denoised = _make("cfg_denoised")
on_cfg_after_cfg = _make("cfg_after_cfg")
on_image_grid = _make("image_grid")
on_infotext_pasted = _make("infotext_pasted")
on_script_unloaded = _make("script_unloaded")
on_before_ui = _make("before_ui")
on_list_optimizers = _make("list_optimizers")
on_list_unets = _make("list_unets")
on_before_token_counter = _make("before_token_counter")


def on_before_component(callback: Callable[..., Any], name: str | None = None) -> None:
    _register("before_component", callback, name)


def on_after_component(callback: Callable[..., Any], name: str | None = None) -> None:
    _register("after_component", callback, name)


def remove_current_script_callbacks() -> None:
    """Drop the callbacks registered by the extension being loaded (A1111: by the current script file)."""
    registry = _registry()
    if registry.loading:
        registry.remove_callbacks_of(registry.loading)


def remove_callbacks_for_function(callback: Callable[..., Any]) -> None:
    registry = _registry()
    for event in list(registry.callbacks):
        registry.callbacks[event] = [c for c in registry.callbacks[event]
                                     if getattr(c.fn, "__wrapped__", c.fn) is not callback]
