"""The "X/Y/Z plot" controls under the Script dropdown (A1111 1.10 ``scripts/xyz_grid.py`` ``ui()``), torch-free.

Returns the inputs in A1111's positional order (the engine reads them as ``script_args``): for X, Y and Z an axis
type dropdown (its index in the tab's axis list, ``tab_axes``: extensions' axes last), a values textbox and a
values multi-select dropdown (shown instead of the textbox for a choice axis, unless "Use text inputs instead of
dropdowns"), then the checkboxes and the margin slider. The 📒 button fills a choice axis with all its choices; the
swap buttons exchange two axes. Element ids are A1111's (``script_txt2img_xyz_plot_x_type``, ...); the ids A1111
repeats on both tabs (``xyz_grid_fill_x_tool_button``, ``xy_grid_swap_axes_button``, ...) get an ``img2img_``
prefix on img2img, as element ids are unique here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from app.infotext.parse import parse_generation_parameters
from app.plugins import hooks, registry_for
from app.ui.common import TabForm, tool_button
from app.ui.context import UiContext
from app.xyz.axes import STATIC_CHOICES, Axis, axes_for, from_options
from app.xyz.values import csv_values, to_csv

FILL = "\U0001f4d2"  # 📒
XYZ_TITLE = "X/Y/Z plot"


def choice_source(ctx: UiContext, tab: str) -> Callable[[str], list[str]]:
    """Choice-list name → the values offered in the values dropdown."""
    def lists(name: str) -> list[str]:
        if name in STATIC_CHOICES:
            return list(STATIC_CHOICES[name])
        if name == "samplers":
            return ctx.choices("samplers", tab)
        if name == "schedulers":
            return ctx.choices("schedulers", tab)
        if name == "checkpoints":
            return sorted(ctx.checkpoint_titles(), key=str.casefold)
        if name == "checkpoints_or_none":
            return ["None", *sorted(ctx.checkpoint_titles(), key=str.casefold)]
        if name == "vaes":
            return ctx.vae_names()
        if name == "styles":
            return ctx.style_names()
        if name == "hr_upscalers":
            return ctx.hires_upscalers()
        return []
    return lists


def axis_choices(axis: Axis, lists: Callable[[str], list[str]]) -> list[str] | None:
    """The values dropdown's choices of *axis* (an extension's axis: its ``choices()``); None for a free-text axis."""
    if axis.choices is None:
        return None
    if axis.ext is not None:
        return axis.ext.choice_list() or []
    return lists(axis.choices)


def tab_axes(ctx: UiContext, tab: str) -> list[Axis]:
    """The tab's axis list: A1111's and ours, then the extensions' (``app.plugins.hooks.xyz_axis_options``)."""
    return axes_for(tab, from_options(hooks.xyz_axis_options(registry_for(ctx.runtime))))


def paste_xyz(text: str, axes: list[Any], lists: Callable[[str], list[str]]) -> list[Any]:
    """Paste ↙️ of an X/Y/Z grid's infotext (``Script: X/Y/Z plot``, ``X Type``, ``X Values``, ...): updates for
    the Script dropdown and each axis's type, values textbox and values dropdown (A1111's ``infotext_fields``);
    no change for any other infotext."""
    parsed = parse_generation_parameters(text) if text and text.strip() else {}
    if str(parsed.get("Script", "")) != XYZ_TITLE:
        return [gr.update()] * 10
    out: list[Any] = [gr.update(value=XYZ_TITLE)]
    by_label = {a.label.lower(): a for a in axes}
    for name in "XYZ":
        axis = by_label.get(str(parsed.get(f"{name} Type", "Nothing")).lower(), axes[0])
        values = str(parsed.get(f"{name} Values", "") or "")
        if axis.choices is not None:
            options = axis_choices(axis, lists) or []
            chosen = [v for v in csv_values(values) if v in options]
            out += [gr.update(value=axis.label), gr.update(value=""), gr.update(choices=options, value=chosen)]
        else:
            out += [gr.update(value=axis.label), gr.update(value=values), gr.update(value=[])]
    return out


def _saved(ctx: UiContext, tab: str) -> Callable[..., Any]:
    """``get(label, field, default, choices=None)``: the ui-config.json value of a control
    (``customscript/xyz_grid.py/<tab>/<label>/<field>``, as A1111 records script controls), the default recorded."""
    cfg = ctx.ui_config

    def get(label: str, field: str, default: Any, choices: list[str] | None = None) -> Any:
        key = f"customscript/xyz_grid.py/{tab}/{label}/{field}"
        return cfg.get_or_default(key, default, choices) if cfg is not None else default
    return get


def build_xyz(ctx: UiContext, tab: str, form: TabForm | None = None) -> list[Any]:
    """The controls, inside the caller's group; their values in ``script_args`` order. With *form* (the tab's),
    its Paste ↙️ button also fills them from an X/Y/Z grid's infotext in the prompt box (or params.txt)."""
    axes = tab_axes(ctx, tab)
    labels = [a.label for a in axes]
    lists = choice_source(ctx, tab)
    prefix = f"script_{tab}_xyz_plot"
    shared = "" if tab == "txt2img" else f"{tab}_"  # A1111 repeats these ids on both tabs; ours are unique
    get = _saved(ctx, tab)
    csv_start = bool(get("Use text inputs instead of dropdowns", "value", False))
    rows: list[tuple[Any, Any, Any, Any]] = []
    for name, default in (("x", 1), ("y", 0), ("z", 0)):
        upper = name.upper()
        with gr.Row():
            chosen = get(f"{upper} type", "value", labels[default], labels)
            options = axis_choices(axes[labels.index(chosen)], lists)
            kind = gr.Dropdown(labels, value=chosen, type="index", label=f"{upper} type",
                               elem_id=f"{prefix}_{name}_type")
            text = gr.Textbox(get(f"{upper} values", "value", ""), label=f"{upper} values", lines=1,
                              visible=options is None or csv_start, elem_id=f"{prefix}_{name}_values")
            drop = gr.Dropdown(options or [], value=[], label=f"{upper} values", multiselect=True,
                               visible=options is not None and not csv_start, interactive=True, allow_custom_value=True,
                               elem_id=f"{prefix}_{name}_values_dropdown")
            fill = tool_button(FILL, f"{shared}xyz_grid_fill_{name}_tool_button", "Fill with all the choices",
                               visible=options is not None)
        rows.append((kind, text, drop, fill))

    def check(label: str, default: bool, elem: str, **kw: Any) -> Any:
        return gr.Checkbox(label=label, value=get(label, "value", default), elem_id=f"{prefix}_{elem}", **kw)

    with gr.Row(variant="compact", elem_id=f"{shared}axis_options"):
        with gr.Column():
            legend = check("Draw legend", True, "draw_legend")
            keep_seeds = check("Keep -1 for seeds", False, "no_fixed_seeds")
            with gr.Row():
                vary = [check(f"Vary seeds for {n}", False, f"vary_seeds_{n.lower()}", min_width=80) for n in "XYZ"]
        with gr.Column():
            lone = check("Include Sub Images", False, "include_lone_images")
            subgrids = check("Include Sub Grids", False, "include_sub_grids")
        with gr.Column():
            margin_label = "Grid margins (px)"
            margin = gr.Slider(get(margin_label, "minimum", 0), get(margin_label, "maximum", 500),
                               value=get(margin_label, "value", 0), step=get(margin_label, "step", 2),
                               label=margin_label, elem_id=f"{prefix}_margin_size")
        with gr.Column():
            csv_mode = check("Use text inputs instead of dropdowns", False, "csv_mode")
    with gr.Row(variant="compact", elem_id=f"{shared}swap_axes"):
        swaps = [gr.Button(value=f"Swap {a}/{b} axes", elem_id=f"{shared}{a.lower()}{b.lower()}_grid_swap_axes_button")
                 for a, b in (("X", "Y"), ("Y", "Z"), ("X", "Z"))]
    _wire(rows, csv_mode, swaps, labels, axes, lists)
    if form is not None and "paste" in form.extra and "prompt" in form.components and "script_name" in form.components:
        def paste(prompt: str) -> list[Any]:
            return paste_xyz(str(prompt or "").strip() or ctx.params_txt(), axes, lists)

        form.extra["paste"].click(paste, form.components["prompt"],
                                  [form.components["script_name"], *[c for r in rows for c in r[:3]]], queue=False)
    out: list[Any] = []
    for kind, text, drop, _fill in rows:
        out += [kind, text, drop]
    return out + [legend, lone, subgrids, keep_seeds, *vary, margin, csv_mode]


class AxisHandlers:
    """The event handlers of the axis rows (module level, so they can be tested without a page): *axes* is the
    tab's axis list (the type dropdowns' index), *lists* gives a choice list by name."""

    def __init__(self, axes: list[Any], lists: Callable[[str], list[str]]) -> None:
        self.axes, self.lists = axes, lists
        self.labels = [a.label for a in axes]

    def choices_of(self, index: Any) -> list[str] | None:
        axis = self.axes[index] if isinstance(index, int) and 0 <= index < len(self.axes) else self.axes[0]
        return axis_choices(axis, self.lists)

    def select(self, index: Any, text: str, chosen: list[str] | None, csv: bool) -> tuple[Any, Any, Any]:
        """A new axis type (or text mode): updates for the 📒 button, the values textbox and the values dropdown."""
        options = self.choices_of(index)
        if options is None:  # the text is left alone: the user may have typed while this update was on its way
            return gr.update(visible=False), gr.update(visible=True), gr.update(visible=False)
        if csv and chosen:
            text, chosen = to_csv([c for c in chosen if c in options]), []
        elif not csv and text:
            chosen, text = [c for c in csv_values(text) if c in options], ""
        return (gr.update(visible=True), gr.update(visible=csv, value=text),
                gr.update(choices=options, visible=not csv, value=chosen or []))

    def fill_all(self, index: Any, csv: bool) -> tuple[Any, Any]:
        """📒: every choice of the axis, into the textbox (text mode, as CSV) or the dropdown."""
        options = self.choices_of(index)
        if options is None:
            return gr.update(), gr.update()
        return (gr.update(value=to_csv(options)), gr.update()) if csv else (gr.update(), gr.update(value=options))

    def change_mode(self, csv: bool, *values: Any) -> list[Any]:
        out: list[Any] = []
        for i in range(3):
            out += list(self.select(values[i * 3], values[i * 3 + 1], values[i * 3 + 2], csv))
        return out

    def swap(self, a_kind: Any, a_text: str, a_drop: Any, b_kind: Any, b_text: str, b_drop: Any) -> tuple[Any, ...]:
        """Swap two axes' type, values text and values selection."""
        return self.labels[b_kind or 0], b_text, b_drop, self.labels[a_kind or 0], a_text, a_drop


def _wire(rows: list[tuple[Any, Any, Any, Any]], csv_mode: Any, swaps: list[Any], labels: list[str], axes: list[Any],
          lists: Callable[[str], list[str]]) -> None:
    h = AxisHandlers(axes, lists)
    for kind, text, drop, fill in rows:
        kind.change(h.select, [kind, text, drop, csv_mode], [fill, text, drop], show_progress="hidden")
        fill.click(h.fill_all, [kind, csv_mode], [text, drop], show_progress="hidden")
    flat = [c for kind, text, drop, _f in rows for c in (kind, text, drop)]
    csv_mode.change(h.change_mode, [csv_mode, *flat],
                    [c for kind, text, drop, fill in rows for c in (fill, text, drop)], show_progress="hidden")
    for button, (i, j) in zip(swaps, ((0, 1), (1, 2), (0, 2)), strict=True):
        pair = [*rows[i][:3], *rows[j][:3]]
        button.click(h.swap, pair, pair, show_progress="hidden")
