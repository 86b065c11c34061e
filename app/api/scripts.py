"""The scripts the API can name (`script_name`, `alwayson_scripts`, `/scripts`, `/script-info`).

Built-in selectable scripts are listed only when the engine module that runs them is installed (so the API
never offers a script that cannot run). Extensions add more through the plugin registry
(`app.plugins.registry_for(runtime).api_scripts()`, dicts shaped like `ApiScript` fields): always-on plugins are
`alwayson_scripts` keys whose args fill the plugin's declared `ExtraField`s (`plugin_fields`).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiScript:
    """One script as `/sdapi/v1/script-info` describes it; `title` is the A1111 dropdown title."""

    title: str
    is_txt2img: bool
    is_img2img: bool
    alwayson: bool = False
    module: str = ""
    args: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def name(self) -> str:
        return self.title.lower()

    def info(self, is_img2img: bool) -> dict[str, Any]:
        return {"name": self.name, "is_alwayson": self.alwayson, "is_img2img": is_img2img, "args": list(self.args)}


def _arg(label: str, value: Any, minimum: Any = None, maximum: Any = None, step: Any = None,
         choices: list[str] | None = None) -> dict[str, Any]:
    return {"label": label, "value": value, "minimum": minimum, "maximum": maximum, "step": step, "choices": choices}


#: Built-in scripts (spec §8) and the module that implements each.
BUILTIN_SCRIPTS: tuple[ApiScript, ...] = (
    ApiScript("Prompt matrix", True, True, module="app.engine.prompt_matrix", args=(
        _arg("Put variable parts at start of prompt", False),
        _arg("Use different seed for each picture", False),
        _arg("Select prompt", "positive", choices=["positive", "negative"]),
        _arg("Select joining char", "comma", choices=["comma", "space"]),
        _arg("Grid margins (px)", 0, 0, 500, 2),
    )),
    ApiScript("Prompts from file or textbox", True, True, module="app.engine.prompts_from_file", args=(
        _arg("Iterate seed every line", False),
        _arg("Use same random seed for all lines", False),
        _arg("Insert prompts at the", "start", choices=["start", "end"]),
        _arg("List of prompt inputs", ""),
    )),
    ApiScript("X/Y/Z plot", True, True, module="app.engine.xyz_grid"),
    ApiScript("SD upscale", False, True, module="app.engine.modes.sd_upscale", args=(
        _arg("Tile overlap", 64, 0, 256, 16),
        _arg("Upscaler", None),
        _arg("Scale Factor", 2.0, 1.0, 4.0, 0.05),
    )),
)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def plugin_registry(runtime: Any = None) -> Any:
    """The runtime's plugin registry (`app.plugins.registry_for`), or None when plugins are not installed."""
    try:
        plugins = importlib.import_module("app.plugins")
    except ImportError:
        return None
    registry_for = getattr(plugins, "registry_for", None)
    return registry_for(runtime) if callable(registry_for) else None


def _plugin_scripts(runtime: Any) -> list[ApiScript]:
    registry = plugin_registry(runtime)
    provider = getattr(registry, "api_scripts", None)
    if provider is None:
        return []
    out: list[ApiScript] = []
    try:
        for item in provider() or ():
            out.append(item if isinstance(item, ApiScript) else ApiScript(**item))
    except Exception:  # noqa: BLE001 - a broken plugin must not break the API
        log.exception("the plugin registry's api_scripts failed; plugin scripts are not listed")
    return out


def plugin_fields(kind: str, runtime: Any = None) -> dict[str, tuple[Any, ...]]:
    """Always-on plugin title → its declared `ExtraField`s (each has `name` and `coerce(value)`)."""
    registry = plugin_registry(runtime)
    out: dict[str, tuple[Any, ...]] = {}
    for _owner, plugin in getattr(registry, "plugins", None) or ():
        title = getattr(plugin, "title", "")
        if title and kind in getattr(plugin, "kinds", (kind,)):
            out[title] = tuple(getattr(plugin, "extra_fields", ()) or ())
    return out


def available_scripts(runtime: Any = None) -> list[ApiScript]:
    """Scripts that can run now: installed built-ins, then plugin scripts."""
    builtin = [s for s in BUILTIN_SCRIPTS if not s.module or _installed(s.module)]
    return builtin + _plugin_scripts(runtime)


def scripts_for(kind: str, runtime: Any = None, alwayson: bool = False) -> dict[str, str]:
    """lower-cased title → title, for `kind` ("txt2img"/"img2img") and selectable or always-on scripts."""
    out: dict[str, str] = {}
    for s in available_scripts(runtime):
        if s.alwayson == alwayson and (s.is_img2img if kind == "img2img" else s.is_txt2img):
            out[s.name] = s.title
    return out
