"""The scripts the API can name (`script_name`, `alwayson_scripts`, `/scripts`, `/script-info`).

Built-in selectable scripts are listed only when the engine runs them (`app.params.RUNNABLE_SCRIPTS`, so the API
never offers a script that cannot run). Extensions add more through the plugin registry
(`app.plugins.registry_for(runtime).api_scripts()`, dicts shaped like `ApiScript` fields): always-on plugins are
`alwayson_scripts` keys whose args fill the plugin's declared `ExtraField`s (`plugin_fields`).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field, replace
from typing import Any

from app.params import RUNNABLE_SCRIPTS
from app.plugins import hooks, registry_for
from app.xyz.axes import Axis, axes_for, from_options

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiScript:
    """One script as `/sdapi/v1/script-info` describes it; `title` is the A1111 dropdown title."""

    title: str
    is_txt2img: bool
    is_img2img: bool
    alwayson: bool = False
    args: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    #: img2img's args where they differ from txt2img's (the X/Y/Z plot's axis lists); None = `args`.
    img2img_args: tuple[dict[str, Any], ...] | None = None

    @property
    def name(self) -> str:
        return self.title.lower()

    def info(self, is_img2img: bool) -> dict[str, Any]:
        args = self.img2img_args if is_img2img and self.img2img_args is not None else self.args
        return {"name": self.name, "is_alwayson": self.alwayson, "is_img2img": is_img2img, "args": list(args)}


def _arg(label: str, value: Any, minimum: Any = None, maximum: Any = None, step: Any = None,
         choices: list[str] | None = None) -> dict[str, Any]:
    return {"label": label, "value": value, "minimum": minimum, "maximum": maximum, "step": step, "choices": choices}


def _xyz_args(kind: str, extra: tuple[Axis, ...] = ()) -> tuple[dict[str, Any], ...]:
    """The X/Y/Z plot's args as A1111 1.10's `ui()` returns them; the axis types are indices into *kind*'s list
    (*extra*: the extensions' axes, last)."""
    labels = [a.label for a in axes_for(kind, extra)]
    out: list[dict[str, Any]] = []
    for name, default in (("X", labels[1]), ("Y", labels[0]), ("Z", labels[0])):
        out += [_arg(f"{name} type", default, choices=labels), _arg(f"{name} values", ""),
                _arg(f"{name} values", None, choices=[])]
    out += [_arg(label, False) for label in ("Include Sub Images", "Include Sub Grids", "Keep -1 for seeds",
                                             "Vary seeds for X", "Vary seeds for Y", "Vary seeds for Z")]
    out.insert(9, _arg("Draw legend", True))
    out += [_arg("Grid margins (px)", 0, 0, 500, 2), _arg("Use text inputs instead of dropdowns", False)]
    return tuple(out)


#: Built-in scripts (spec §8) with A1111's args; offered only when listed in `RUNNABLE_SCRIPTS`.
BUILTIN_SCRIPTS: tuple[ApiScript, ...] = (
    ApiScript("Prompt matrix", True, True, args=(
        _arg("Put variable parts at start of prompt", False),
        _arg("Use different seed for each picture", False),
        _arg("Select prompt", "positive", choices=["positive", "negative"]),
        _arg("Select joining char", "comma", choices=["comma", "space"]),
        _arg("Grid margins (px)", 0, 0, 500, 2),
    )),
    ApiScript("Prompts from file or textbox", True, True, args=(
        _arg("Iterate seed every line", False),
        _arg("Use same random seed for all lines", False),
        _arg("Insert prompts at the", "start", choices=["start", "end"]),
        _arg("List of prompt inputs", ""),
    )),
    ApiScript("X/Y/Z plot", True, True, args=_xyz_args("txt2img"), img2img_args=_xyz_args("img2img")),
    ApiScript("Loopback", False, True, args=(
        _arg("Loops", 4, 1, 32, 1),
        _arg("Final denoising strength", 0.5, 0, 1, 0.01),
        _arg("Denoising strength curve", "Linear", choices=["Aggressive", "Linear", "Lazy"]),
        _arg("Append interrogated prompt at each iteration", "None", choices=["None"]),
    )),
    ApiScript("Outpainting mk2", False, True, args=(
        _arg("", ""),
        _arg("Pixels to expand", 128, 8, 256, 8),
        _arg("Mask blur", 8, 0, 64, 1),
        _arg("Outpainting direction", ["left", "right", "up", "down"], choices=["left", "right", "up", "down"]),
        _arg("Fall-off exponent (lower=higher detail)", 1.0, 0.0, 4.0, 0.01),
        _arg("Color variation", 0.05, 0.0, 1.0, 0.01),
    )),
    ApiScript("Poor man's outpainting", False, True, args=(
        _arg("Pixels to expand", 128, 8, 256, 8),
        _arg("Mask blur", 4, 0, 64, 1),
        _arg("Masked content", "fill", choices=["fill", "original", "latent noise", "latent nothing"]),
        _arg("Outpainting direction", ["left", "right", "up", "down"], choices=["left", "right", "up", "down"]),
    )),
    ApiScript("SD upscale", False, True, args=(
        _arg("Tile overlap", 64, 0, 256, 16),
        _arg("Upscaler", None),
        _arg("Scale Factor", 2.0, 1.0, 4.0, 0.05),
    )),
)


def _sampler_args() -> tuple[dict[str, Any], ...]:
    from app.engine.sampling import names  # the pure name table (no torch)

    samplers, schedules = names.sampler_labels(), names.schedule_labels()
    return (_arg("Sampling steps", 20, 1, 150, 1), _arg("Sampling method", samplers[0], choices=samplers),
            _arg("Schedule type", schedules[0], choices=schedules))


#: A1111's built-in always-on scripts (`modules/processing_scripts/`: the Refiner, Seed and Sampler controls, and the
#: "Extra options" section); `app.api.builtin_alwayson` says what their args do.
BUILTIN_ALWAYSON_TITLES: tuple[str, ...] = ("Refiner", "Seed", "Sampler", "Extra options")


@functools.cache
def builtin_alwayson() -> tuple[ApiScript, ...]:
    """The built-in always-on scripts with their `ui()` args in A1111's order (built on first use: the Sampler's
    choices come from the sampler table, which the router does not import until a request needs it)."""
    return (
        ApiScript("Refiner", True, True, alwayson=True, args=(
            _arg("Refiner", False), _arg("Checkpoint", ""), _arg("Switch at", 0.8, 0.01, 1.0, 0.01),
        )),
        ApiScript("Seed", True, True, alwayson=True, args=(
            _arg("Seed", -1), _arg("Extra", False), _arg("Variation seed", -1),
            _arg("Variation strength", 0.0, 0, 1, 0.01),
            _arg("Resize seed from width", 0, 0, 2048, 8), _arg("Resize seed from height", 0, 0, 2048, 8),
        )),
        ApiScript("Sampler", True, True, alwayson=True, args=_sampler_args()),
        ApiScript("Extra options", True, True, alwayson=True),
    )


def plugin_registry(runtime: Any = None) -> Any:
    """The runtime's plugin registry (`app.plugins.registry_for`)."""
    return registry_for(runtime)


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
    builtin = [s for s in BUILTIN_SCRIPTS if s.title in RUNNABLE_SCRIPTS]
    extra = from_options(hooks.xyz_axis_options(plugin_registry(runtime)))
    if extra:  # the X/Y/Z plot's axis lists with the extensions' axes
        builtin = [replace(s, args=_xyz_args("txt2img", extra), img2img_args=_xyz_args("img2img", extra))
                   if s.title == "X/Y/Z plot" else s for s in builtin]
    return builtin + list(builtin_alwayson()) + _plugin_scripts(runtime)


def scripts_for(kind: str, runtime: Any = None, alwayson: bool = False) -> dict[str, str]:
    """lower-cased title → title, for `kind` ("txt2img"/"img2img") and selectable or always-on scripts."""
    out: dict[str, str] = {t.lower(): t for t in BUILTIN_ALWAYSON_TITLES} if alwayson else {}
    for s in [s for s in BUILTIN_SCRIPTS if s.title in RUNNABLE_SCRIPTS] + _plugin_scripts(runtime):
        if s.alwayson == alwayson and (s.is_img2img if kind == "img2img" else s.is_txt2img):
            out[s.name] = s.title
    return out
