"""``modules.shared``: ``opts`` (Atelier settings by attribute), ``cmd_opts`` (the flags), ``state``
(the running job), ``sd_model`` (a placeholder describing the selected checkpoint), ``OptionInfo`` and
``options_section`` so extensions can add settings."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

from app.plugins.compat.current import current
from app.plugins.compat.shared_state import State, TotalTQDM, state, total_tqdm  # noqa: F401 - A1111 names
from app.settings.schema import COMPONENTS, Section
from app.settings.schema import OptionInfo as _AtelierOption


def _runtime() -> Any:
    return current().runtime


_fallback_settings: Any = None


def _settings() -> Any:
    global _fallback_settings
    settings = current().settings
    if settings is not None:
        return settings
    if _fallback_settings is None:
        from app.settings import Settings

        _fallback_settings = Settings()
    return _fallback_settings


class OptionInfo:
    """A1111's ``shared.OptionInfo`` (chainable ``info``/``link``/``js``/``html``/``needs_restart``)."""

    def __init__(self, default: Any = None, label: str = "", component: Any = None, component_args: Any = None,
                 onchange: Callable[[], Any] | None = None, section: tuple[str, str] | None = None,
                 refresh: Any = None, comment_before: str = "", comment_after: str = "", infotext: str | None = None,
                 restrict_api: bool = False, category_id: str | None = None) -> None:
        self.default = default
        self.label = label
        self.component = component
        self.component_args = component_args
        self.onchange = onchange
        self.section = section
        self.refresh = refresh
        self.comment_before = comment_before
        self.comment_after = comment_after
        self.infotext = infotext
        self.restrict_api = restrict_api
        self.category_id = category_id
        self.do_not_save = False
        self.requires_restart = False

    def info(self, info: str) -> OptionInfo:
        self.comment_after += f" ({info})"
        return self

    def html(self, html: str) -> OptionInfo:
        self.comment_after += html
        return self

    def link(self, label: str, url: str) -> OptionInfo:
        self.comment_before += f"[{label}]({url})"
        return self

    def js(self, label: str, js_func: str) -> OptionInfo:
        return self

    def needs_restart(self) -> OptionInfo:
        self.requires_restart = True
        return self

    def needs_reload_ui(self) -> OptionInfo:
        return self

    def to_atelier(self, key: str) -> _AtelierOption:
        """The Atelier ``OptionInfo`` for this A1111 option (component mapped by gradio class name)."""
        name = getattr(self.component, "__name__", "") or ""
        component = name.lower() if name.lower() in COMPONENTS else _component_for(self.default)
        args = self.component_args
        static = args if isinstance(args, dict) else {}
        choices: Any = static.get("choices")
        if callable(args):
            def choices() -> list[Any]:  # A1111 component_args may be a lambda returning the current choices
                return list((args() or {}).get("choices") or [])
        elif component in ("dropdown", "radio") and not choices:
            component = _component_for(self.default)
        section = Section(*self.section[:2]) if self.section else Section("extensions_options", "Uncategorized")
        onchange = self.onchange
        multiselect = bool(static.get("multiselect")) or isinstance(self.default, list)
        return _AtelierOption(key=key, default=self.default, label=self.label or key, section=section,
                              component=component, choices=choices, minimum=static.get("minimum"),
                              maximum=static.get("maximum"), step=static.get("step"), infotext=self.infotext,
                              multiselect=multiselect and component == "dropdown",
                              requires_restart=self.requires_restart, comment=self.comment_after.strip(),
                              onchange=(lambda _k, _v: onchange()) if onchange else None)


def _component_for(default: Any) -> str:
    if isinstance(default, bool):
        return "checkbox"
    if isinstance(default, (int, float)):
        return "number"
    if isinstance(default, list):
        return "dropdown"
    return "textbox"


def options_section(section_identifier: tuple[str, str], options_dict: dict[str, OptionInfo]) -> dict[str, OptionInfo]:
    for value in options_dict.values():
        value.section = section_identifier
    return options_dict


class _OptionsTemplates(dict):
    """``shared.options_templates.update(...)`` registers the options at once."""

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        items = dict(*args, **kwargs)
        super().update(items)
        for key, info in items.items():
            opts.add_option(key, info)


options_templates = _OptionsTemplates()


#: A1111 options A1111's own scripts read that Atelier does not register, with the value that matches what Atelier
#: does (``return_grid``: the engine returns the grid first unless config.json says otherwise).
A1111_ONLY_DEFAULTS: dict[str, Any] = {"return_grid": True}


class Options:
    """``shared.opts``: attribute access over the Atelier settings (unknown key → AttributeError)."""

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        settings = _settings()
        if key in settings:
            return settings.get(key)
        if key in A1111_ONLY_DEFAULTS:  # A1111 options Atelier has no setting for (what the engine does anyway)
            return A1111_ONLY_DEFAULTS[key]
        raise AttributeError(f"opts has no setting {key!r}")

    def __setattr__(self, key: str, value: Any) -> None:
        _settings().set(key, value)

    def __contains__(self, key: str) -> bool:
        return key in _settings()

    def get(self, key: str, default: Any = None) -> Any:
        return _settings().get(key, default)

    def set(self, key: str, value: Any, is_api: bool = False, run_callbacks: bool = True) -> bool:
        return bool(_settings().set(key, value))

    def add_option(self, key: str, info: OptionInfo) -> None:
        """Register an extension's option (a value already in config.json is kept)."""
        settings = _settings()
        settings.register(info.to_atelier(key) if isinstance(info, OptionInfo) else info)

    def onchange(self, key: str, func: Callable[[], Any], call: bool = True) -> None:
        _settings().on_change(key, lambda _k, _v: func())
        if call:
            func()

    def get_default(self, key: str) -> Any:
        try:
            return _settings().default(key)
        except KeyError:
            return None

    def save(self, filename: str | None = None) -> None:
        _settings().save()

    @property
    def data(self) -> dict[str, Any]:
        return _settings().data

    @property
    def data_labels(self) -> dict[str, Any]:
        return {info.key: info for info in _settings().options()}


opts = Options()


#: A1111 flags whose default is a folder: flag → (``Paths`` attribute, index or None for a single path).
_PATH_FLAGS = {"ckpt_dir": ("ckpt_dirs", 0), "vae_dir": ("vae_dirs", 0), "lora_dir": ("lora_dirs", 0),
               "lyco_dir": ("lora_dirs", 1), "lyco_dir_backcompat": ("lora_dirs", 1),
               "embeddings_dir": ("embeddings_dirs", 0), "hypernetwork_dir": ("hypernetwork_dirs", 0),
               "esrgan_models_path": ("esrgan_dirs", 0), "realesrgan_models_path": ("realesrgan_dirs", 0),
               "swinir_models_path": ("swinir_dirs", 0), "dat_models_path": ("dat_dirs", 0),
               "data_dir": ("data_dir", None), "models_dir": ("models_dir", None),
               "ui_settings_file": ("config_file", None), "ui_config_file": ("ui_config_file", None)}


def _path_flag(key: str) -> str | None:
    """The folder A1111 resolves a path flag to when it is not given (``models/Lora``, ``embeddings``...)."""
    paths = getattr(_runtime(), "paths", None)
    if paths is None or key not in _PATH_FLAGS:
        return None
    attr, index = _PATH_FLAGS[key]
    value = getattr(paths, attr, None)
    if index is not None:
        value = value[index] if value is not None and len(value) > index else None
    return str(value) if value is not None else None


class CmdOpts:
    """``shared.cmd_opts``: the parsed flags, plus the defaults of flags extensions add in ``preload.py``."""

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        runtime = _runtime()
        args = getattr(runtime, "args", None)
        if args is not None and hasattr(args, key) and getattr(args, key) is not None:
            return getattr(args, key)
        if key in _PATH_FLAGS:
            return _path_flag(key)
        if args is not None and hasattr(args, key):
            return getattr(args, key)
        extra = _extra_defaults()
        if key in extra:
            return extra[key]
        raise AttributeError(f"cmd_opts has no flag {key!r}")

    def __contains__(self, key: str) -> bool:
        try:
            getattr(self, key)
        except AttributeError:
            return False
        return True


def _extra_defaults() -> dict[str, Any]:
    return current().cmd_defaults


cmd_opts = CmdOpts()





class CheckpointInfo:
    """``sd_model.sd_checkpoint_info`` from the ``sd_model_checkpoint`` setting (title ``name [hash]``)."""

    def __init__(self, title: str) -> None:
        self.title = title
        name, _, rest = title.partition(" [")
        self.name = self.name_for_extra = name
        self.model_name = name.rsplit(".", 1)[0] if "." in name else name
        self.shorthash = rest.rstrip("]") if rest else None
        self.hash = self.shorthash
        self.filename = name
        self.sha256 = _settings().get("sd_checkpoint_hash") or None


class SdModelPlaceholder:
    """``shared.sd_model``: what extensions read about the model (no weights are reachable here). The loaded
    model's title and family when one is active, else the ``sd_model_checkpoint`` setting."""

    def __init__(self) -> None:
        runtime = _runtime()
        manager = getattr(runtime, "_lazy", {}).get("manager") if runtime is not None else None
        handle = getattr(manager, "current", None) if manager is not None else None
        loaded = getattr(handle, "loaded", None)
        title = str(getattr(handle, "title", "") or _settings().get("sd_model_checkpoint") or "")
        self.sd_checkpoint_info = CheckpointInfo(title)
        self.sd_model_checkpoint = self.sd_checkpoint_info.filename
        self.sd_model_hash = self.sd_checkpoint_info.shorthash
        family = str(getattr(loaded, "family", "") or "")
        self.is_sdxl = bool(getattr(loaded, "is_sdxl", False))
        self.is_sd2 = family.startswith("sd2")
        self.is_sd1 = family.startswith("sd1")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        from app.plugins.compat.sd_hijack import UnsupportedAttribute

        raise UnsupportedAttribute(
            f"unsupported: shared.sd_model.{name}: the model's torch modules (A1111's ldm UNet, CLIP, VAE) are not "
            "reachable from extensions in Atelier, so patching them (attention forward as in Regional Prompter or "
            "LoRA Block Weight, CLIP hijacks) cannot work")


class _Scaler:
    def __init__(self, name: str, upscale: Callable[[Any, float], Any] | None = None) -> None:
        self.name = name
        self._upscale = upscale

    def upscale(self, img: Any, scale: float, selected_model: Any = None) -> Any:
        if self._upscale is not None:
            return self._upscale(img, scale)
        return _upscaler_registry().upscale(img, self.name, scale)


class UpscalerData:
    """An entry of ``shared.sd_upscalers`` (``name``, ``data_path``, ``scale``, ``scaler.upscale(img, scale, path)``)."""

    def __init__(self, name: str, data_path: str | None, scale: float, scaler: _Scaler) -> None:
        self.name = name
        self.data_path = data_path
        self.scale = scale
        self.scaler = scaler
        self.model = None


def _upscaler_registry() -> Any:
    """The current runtime's upscaler registry (built-ins only without a runtime)."""
    # deferred: the registry's module is part of the engine; `modules.shared` is imported before it is needed
    from app.engine.image.upscalers import UpscalerRegistry

    registry = getattr(_runtime(), "upscalers", None)
    return registry if isinstance(registry, UpscalerRegistry) else UpscalerRegistry()


def _sd_upscalers() -> list[UpscalerData]:
    """The engine's upscalers (None, Lanczos, Nearest, model files), then plugin upscalers."""
    out = [UpscalerData(u.name, str(u.model_path) if u.model_path else None, u.scale, _Scaler(u.name))
           for u in _upscaler_registry().list()]
    out += [UpscalerData(s.name, None, s.scale, _Scaler(s.name, s.upscale)) for _owner, s in current().upscalers.values()]
    return out


def _prompt_styles() -> Any:
    """``shared.prompt_styles``: the styles files of the runtime, read now (None without a runtime)."""
    paths = getattr(_runtime(), "paths", None)
    files = list(getattr(paths, "styles_files", ()) or ([paths.styles_file] if paths is not None else []))
    if not files:
        return None
    from app.prompts.styles import StyleDatabase

    return StyleDatabase(files)


def __getattr__(name: str) -> Any:
    if name == "sd_model":
        return SdModelPlaceholder()
    if name == "sd_upscalers":
        return _sd_upscalers()
    if name == "prompt_styles":
        return _prompt_styles()
    raise AttributeError(f"module 'modules.shared' has no attribute {name!r}")


#: A1111 module-level names some extensions read.
log = logging.getLogger("atelier.extensions")
demo = None
device = "cpu"
parser = argparse.ArgumentParser(add_help=False)
