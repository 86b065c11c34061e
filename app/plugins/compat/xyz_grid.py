"""A1111's ``scripts/xyz_grid.py`` as extensions reach it: the X/Y/Z plot module whose ``axis_options`` they extend.

Extensions find it through ``modules.scripts.scripts_data`` (the entry whose ``script_class.__module__`` is
``"xyz_grid.py"``, with ``.module``; ``scripts.py`` lists it) and append ``AxisOption(label, type, apply, ...)``
to ``axis_options``, at import (ControlNet) or in ``on_before_ui`` (ADetailer; the loader runs it after loading).
``axis_options`` is the list of the registry being loaded (``registry.xyz_axis_options``), so each load starts
from A1111's own axes (Atelier's ``app.xyz.axes.AXES``, flagged ``builtin``; the engine applies
those itself). What extensions add after them joins the plot's axis list after Atelier's own axes
(``app.plugins.hooks.xyz_axis_options``). Running one: ``AxisOption.apply_to_params`` builds a compat ``p`` over
the cell's params, calls the extension's ``apply(p, x, xs)``, and carries what it set into the cell's job: A1111
fields and ``override_settings`` directly (``p`` is a live view), other attributes through
``params.extras[P_ATTRIBUTES]`` (the always-on scripts' ``p`` gets them, ``adapter.ScriptPlugin.p_for``),
``p.extra_generation_params`` into the infotext, ``p.script_args`` back into ``alwayson_scripts``.
"""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Callable, Sequence
from io import StringIO
from typing import Any

from app.plugins.compat.current import current
from app.plugins.compat.processing import P_ATTRIBUTES, StableDiffusionProcessing
from app.plugins.hooks import CARRIED_EXTRA


# -- A1111's helper functions extensions pass to AxisOption ------------------------------------------------------
def apply_field(field: str) -> Callable[[Any, Any, Any], None]:
    """``apply`` that sets ``p.<field>`` to the value."""
    def fun(p: Any, x: Any, xs: Any) -> None:
        setattr(p, field, x)
    return fun


def apply_override(field: str, boolean: bool = False) -> Callable[[Any, Any, Any], None]:
    """``apply`` that sets ``p.override_settings[field]`` ("true"/"false" text as a bool with ``boolean``)."""
    def fun(p: Any, x: Any, xs: Any) -> None:
        if boolean:
            x = str(x).lower() == "true"
        p.override_settings[field] = x
    return fun


def boolean_choice(reverse: bool = False) -> Callable[[], list[str]]:
    def choice() -> list[str]:
        return ["False", "True"] if reverse else ["True", "False"]
    return choice


def format_value_add_label(p: Any, opt: Any, x: Any) -> str:
    if isinstance(x, float):
        x = round(x, 8)
    return f"{opt.label}: {x}"


def format_value(p: Any, opt: Any, x: Any) -> Any:
    return round(x, 8) if isinstance(x, float) else x


def format_value_join_list(p: Any, opt: Any, x: Any) -> str:
    return ", ".join(x)


def format_nothing(p: Any, opt: Any, x: Any) -> str:
    return ""


def format_remove_path(p: Any, opt: Any, x: Any) -> str:
    return os.path.basename(str(x))


def do_nothing(p: Any, x: Any, xs: Any) -> None:
    pass


def str_permutations(x: Any) -> Any:
    """Marks an axis whose values are every permutation of the typed values (A1111's "Prompt order")."""
    return x


def list_to_csv_string(data_list: Sequence[Any]) -> str:
    with StringIO() as out:
        csv.writer(out).writerow(list(data_list))
        return out.getvalue().strip()


def csv_string_to_list_strip(data_str: str) -> list[str]:
    return [s.strip() for s in itertools.chain.from_iterable(csv.reader(StringIO(data_str), skipinitialspace=True))]


# -- axis options ------------------------------------------------------------------------------------------------
class AxisOption:
    """One axis: ``apply(p, x, xs)`` changes a cell's ``p``; ``type`` converts typed values (int / float get
    A1111's ranges); ``confirm(p, xs)`` checks them; ``choices()`` fills the values dropdown."""

    is_img2img: bool | None = None  # None: both tabs
    builtin = False

    def __init__(self, label: str, type: Any, apply: Callable[..., Any],  # noqa: A002 - A1111's name
                 format_value: Callable[..., Any] = format_value_add_label, confirm: Callable[..., Any] | None = None,
                 cost: float = 0.0, choices: Callable[[], Sequence[str]] | None = None,
                 prepare: Callable[[str], list[Any]] | None = None) -> None:
        self.label = label
        self.type = type
        self.apply = apply
        self.format_value = format_value
        self.confirm = confirm
        self.cost = cost
        self.prepare = prepare
        self.choices = choices
        self.registry = current()  # the registry being loaded: its script layout gives p.script_args

    @property
    def value_kind(self) -> str:
        """How the plot parses typed values: ``int`` / ``float`` (ranges), ``permutations`` or ``str``."""
        if self.type is int:
            return "int"
        if self.type is float:
            return "float"
        return "permutations" if self.type is str_permutations else "str"

    def choice_list(self) -> list[str] | None:
        """The values dropdown's choices (None: a free-text axis); an extension's failure gives an empty list."""
        if self.choices is None:
            return None
        try:
            return [str(c) for c in self.choices()]
        except Exception as exc:  # noqa: BLE001 - the extension's fault must not break the plot's controls
            self.registry.note_error("", f"X/Y/Z axis {self.label!r}: choices() failed: {type(exc).__name__}: {exc}")
            return []

    def label_for(self, value: Any) -> str:
        """The grid label of one value (the extension's ``format_value``)."""
        return str(self.format_value(StableDiffusionProcessing(), self, value))

    def convert(self, params: Any, values: list[Any]) -> list[Any]:
        """The parsed values through ``type`` (other than int/float/str, done already) and ``confirm(p, xs)``,
        which may change the list in place or raise (the plot refuses to start)."""
        if self.type not in (int, float, str, str_permutations) and callable(self.type):
            values = [self.type(v) for v in values]
        if self.confirm is not None:
            self.confirm(StableDiffusionProcessing.from_params(params.copy()), values)
        return values

    def apply_to_params(self, params: Any, value: Any, values: Sequence[Any]) -> None:
        """Run ``apply(p, value, values)`` on a compat ``p`` over *params* (one cell's copy) and carry what it set
        into that cell's job (see the module docstring)."""
        from app.plugins.compat.script_layout import layout_for

        p = StableDiffusionProcessing.from_params(params)
        fresh = set(p.__dict__)
        carried = params.extras.get(P_ATTRIBUTES)
        if isinstance(carried, dict):  # what an earlier axis of this cell set
            p.__dict__.update(carried)
        layout = layout_for(self.registry, p.is_img2img)
        before = layout.script_args(params)
        p.script_args = list(before)
        self.apply(p, value, values)
        attributes = {k: v for k, v in p.__dict__.items() if k not in fresh}
        if attributes:
            params.extras[P_ATTRIBUTES] = attributes
        if p.extra_generation_params:
            params.extras[CARRIED_EXTRA] = {**params.extras.get(CARRIED_EXTRA, {}), **p.extra_generation_params}
        if list(p.script_args) != before:
            _write_back(layout, params, list(p.script_args), before)


class AxisOptionImg2Img(AxisOption):
    is_img2img = True


class AxisOptionTxt2Img(AxisOption):
    is_img2img = False


def _write_back(layout: Any, params: Any, args: list[Any], before: list[Any]) -> None:
    """Always-on scripts whose slice of ``p.script_args`` the axis changed get it as their ``alwayson_scripts``."""
    given = params.extras.get("alwayson_scripts")
    if not isinstance(given, dict):
        given = params.extras["alwayson_scripts"] = {}
    for slot in layout.slots:
        new = args[slot.args_from:slot.args_to]
        if not slot.alwayson or new == before[slot.args_from:slot.args_to]:
            continue
        key = next((k for k in given if str(k).strip().lower() == slot.title.strip().lower()), slot.title)
        given[key] = {"args": new}


def _builtin_options() -> list[AxisOption]:
    """A1111's own axes (Atelier's list), in order; the engine applies them itself."""
    from app.xyz.axes import AXES

    types = {"none": lambda x: 0, "int": int, "float": float, "permutations": str_permutations}
    out: list[AxisOption] = []
    for axis in AXES:
        kind = AxisOptionTxt2Img if axis.modes == ("txt2img",) else (
            AxisOptionImg2Img if axis.modes == ("img2img",) else AxisOption)
        opt = kind(axis.label, types.get(axis.kind, str), do_nothing, cost=axis.cost,
                   format_value=format_nothing if axis.fmt == "nothing" else format_value_add_label)
        opt.builtin = True
        out.append(opt)
    return out


def options_of(registry: Any) -> list[AxisOption]:
    """*registry*'s ``axis_options`` list (made with the built-in axes on first use)."""
    if registry.xyz_axis_options is None:
        registry.xyz_axis_options = _builtin_options()
    return registry.xyz_axis_options


def __getattr__(name: str) -> Any:
    """``axis_options``: the list of the registry being loaded (each load starts from the built-in axes)."""
    if name == "axis_options":
        return options_of(current())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Script:
    """Stands for A1111's X/Y/Z plot script in ``scripts_data`` (extensions only read its ``__module__``); the
    plot itself is Atelier's built-in script (``app.engine.scripts.xyz_plot``)."""

    def title(self) -> str:
        return "X/Y/Z plot"

    def show(self, is_img2img: bool) -> bool:
        return True


Script.__module__ = "xyz_grid.py"  # A1111 loads scripts under their file name; extensions look for that


def _register() -> None:
    """The ``scripts_data`` entry extensions look for (once per process)."""
    import sys

    from app.plugins.compat import scripts

    if not any(d.script_class is Script for d in scripts.scripts_data):
        folder = os.path.dirname(__file__)
        scripts.scripts_data.append(scripts.ScriptClassData(Script, __file__, folder, sys.modules[__name__]))


_register()
