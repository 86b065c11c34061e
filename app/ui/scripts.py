"""The inputs of the selectable scripts (shown under the Script dropdown when that script is chosen); the
extensions' scripts are rendered by `app.ui.extension_scripts`.

Each script's args go to `ScriptParams.args` in order, as the engine modules read them (spec §8). Defaults and
ranges come from ui-config.json under `customscript/<file>.py/<tab>/<Label>/...`, as in A1111."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from app.params import RUNNABLE_SCRIPTS
from app.ui.common import TabForm
from app.ui.context import UiContext


@dataclass(frozen=True)
class ScriptArg:
    label: str
    kind: str  # slider | checkbox | dropdown | radio | textbox | checkboxgroup | html
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] | str | None = None  # "upscalers" = the extras upscaler list
    lines: int = 1


SCRIPT_FILES = {"Prompt matrix": "prompt_matrix.py", "Prompts from file or textbox": "prompts_from_file.py",
                "X/Y/Z plot": "xyz_grid.py", "SD upscale": "sd_upscale.py"}
SCRIPT_FILES.update({"Loopback": "loopback.py", "Outpainting mk2": "outpainting_mk_2.py",
                     "Poor man's outpainting": "poor_mans_outpainting.py"})
_SIDES = ("left", "right", "up", "down")
XYZ = "X/Y/Z plot"  # its controls: app/ui/xyz.py
SCRIPT_ARGS: dict[str, tuple[ScriptArg, ...]] = {
    "Prompt matrix": (
        ScriptArg("Put variable parts at start of prompt", "checkbox", False),
        ScriptArg("Use different seed for each picture", "checkbox", False),
        ScriptArg("Select prompt", "radio", "positive", choices=("positive", "negative")),
        ScriptArg("Select joining char", "radio", "comma", choices=("comma", "space")),
        ScriptArg("Grid margins (px)", "slider", 0, 0, 500, 2),
    ),
    "Prompts from file or textbox": (
        ScriptArg("Iterate seed every line", "checkbox", False),
        ScriptArg("Use same random seed for all lines", "checkbox", False),
        ScriptArg("Insert prompts at the", "radio", "start", choices=("start", "end")),
        ScriptArg("List of prompt inputs", "textbox", "", lines=4),
    ),
    "Loopback": (
        ScriptArg("Loops", "slider", 4, 1, 32, 1),
        ScriptArg("Final denoising strength", "slider", 0.5, 0, 1, 0.01),
        ScriptArg("Denoising strength curve", "dropdown", "Linear", choices=("Aggressive", "Linear", "Lazy")),
        ScriptArg("Append interrogated prompt at each iteration", "dropdown", "None", choices=("None",)),
    ),
    "Outpainting mk2": (
        ScriptArg("Recommended settings: Sampling Steps: 80-100, Sampler: Euler a, Denoising strength: 0.8", "html",
                  ""),
        ScriptArg("Pixels to expand", "slider", 128, 8, 256, 8),
        ScriptArg("Mask blur", "slider", 8, 0, 64, 1),
        ScriptArg("Outpainting direction", "checkboxgroup", list(_SIDES), choices=_SIDES),
        ScriptArg("Fall-off exponent (lower=higher detail)", "slider", 1.0, 0.0, 4.0, 0.01),
        ScriptArg("Color variation", "slider", 0.05, 0.0, 1.0, 0.01),
    ),
    "Poor man's outpainting": (
        ScriptArg("Pixels to expand", "slider", 128, 8, 256, 8),
        ScriptArg("Mask blur", "slider", 4, 0, 64, 1),
        ScriptArg("Masked content", "radio", "fill", choices=("fill", "original", "latent noise", "latent nothing")),
        ScriptArg("Outpainting direction", "checkboxgroup", list(_SIDES), choices=_SIDES),
    ),
    "SD upscale": (
        ScriptArg("Tile overlap", "slider", 64, 0, 256, 16),
        ScriptArg("Upscaler", "dropdown", "None", choices="upscalers"),
        ScriptArg("Scale Factor", "slider", 2.0, 1.0, 4.0, 0.05),
    ),
}


def _component(ctx: UiContext, tab: str, script: str, arg: ScriptArg, index: int) -> Any:
    prefix = f"customscript/{SCRIPT_FILES[script]}/{tab}/{arg.label}"
    cfg = ctx.ui_config

    def get(field: str, default: Any, choices: Sequence[Any] | None = None) -> Any:
        return cfg.get_or_default(f"{prefix}/{field}", default, choices) if cfg is not None else default

    elem_id = f"script_{tab}_{SCRIPT_FILES[script].removesuffix('.py')}_{index}"
    if arg.kind == "slider":
        return gr.Slider(get("minimum", arg.minimum), get("maximum", arg.maximum), step=get("step", arg.step),
                         value=get("value", arg.default), label=arg.label, elem_id=elem_id)
    if arg.kind == "checkbox":
        return gr.Checkbox(value=get("value", arg.default), label=arg.label, elem_id=elem_id)
    if arg.kind == "textbox":
        return gr.Textbox(value=get("value", arg.default), label=arg.label, lines=arg.lines, elem_id=elem_id)
    if arg.kind == "html":
        return gr.HTML(f"<p style='margin-bottom:0.75em'>{arg.label}</p>", elem_id=elem_id)
    if arg.kind == "checkboxgroup":
        return gr.CheckboxGroup(list(arg.choices or ()), value=get("value", arg.default), label=arg.label,
                                elem_id=elem_id)
    choices = ctx.upscaler_names() if arg.choices == "upscalers" else list(arg.choices or ())
    value = get("value", arg.default, choices)
    if arg.kind == "radio":
        return gr.Radio(choices, value=value, label=arg.label, elem_id=elem_id)
    return gr.Dropdown(choices, value=value if value in choices else choices[0], label=arg.label, elem_id=elem_id)


def build_script_args(ctx: UiContext, tab: TabForm) -> None:
    """One hidden group per offered script with its inputs; selecting the script shows its group."""
    from app.ui.extension_scripts import build_selectable_scripts
    from app.ui.xyz import build_xyz

    offered = ctx.script_names(tab.tab)
    groups: dict[str, Any] = {}
    inputs: list[Any] = tab.extra.setdefault("script_inputs", [])  # the always-on scripts' controls come first
    spans: dict[str, tuple[int, int]] = {}
    selected = tab.components["script_name"].value
    for script in offered:
        args = SCRIPT_ARGS.get(script)
        if (not args and script != XYZ) or tab.tab not in RUNNABLE_SCRIPTS.get(script, ()):  # else an extension's
            continue
        with gr.Group(visible=script == selected, elem_id=f"script_{tab.tab}_{SCRIPT_FILES[script][:-3]}") as group:
            start = len(inputs)
            if script == XYZ:
                inputs += build_xyz(ctx, tab.tab, tab)  # app/ui/xyz.py: its own layout, events and paste
            else:
                inputs += [_component(ctx, tab.tab, script, arg, i) for i, arg in enumerate(args or ())]
            if script == "Prompts from file or textbox":
                _upload(tab.tab, inputs[-1])
        groups[script] = group
        spans[script] = (start, len(inputs))
    build_selectable_scripts(ctx, tab, selected, groups, spans)  # the extensions' ones
    tab.extra["script_inputs"] = inputs
    tab.extra["script_spans"] = spans
    if groups:
        names = list(groups)

        def show(choice: str) -> Any:
            updates = [gr.update(visible=choice == n) for n in names]
            return updates[0] if len(updates) == 1 else updates  # gradio does not unpack a list for one output

        tab.components["script_name"].change(show, tab.components["script_name"], [groups[n] for n in names],
                                             queue=False, show_progress="hidden")


def _upload(tab: str, textbox: Any) -> None:
    """A1111's "Upload prompt inputs": a text file whose lines replace the list of prompt inputs."""
    upload = gr.File(label="Upload prompt inputs", type="binary", elem_id=f"script_{tab}_prompts_from_file_file")

    def load(data: Any) -> Any:
        if data is None:
            return gr.update(), gr.update()
        raw = data if isinstance(data, bytes) else bytes(data)
        lines = [line.strip() for line in raw.decode("utf8", errors="ignore").split("\n")]
        return None, gr.update(value="\n".join(lines), lines=7)

    upload.change(load, upload, [upload, textbox], show_progress="hidden")


def attach_script_args(tab: TabForm, params: Any, values: Sequence[Any]) -> Any:
    """Put the chosen script's input values into `params.script.args` (in the engine's order), and each extension
    always-on script's into `params.extras["alwayson_scripts"][<title>]`."""
    from app.ui.extension_scripts import alwayson_values

    alwayson = alwayson_values(tab, values, _plain)
    if alwayson:
        params.extras.setdefault("alwayson_scripts", {}).update(alwayson)
    script = getattr(params, "script", None)
    if script is None:
        return params
    span = tab.extra.get("script_spans", {}).get(script.name)
    if span is not None:
        script.args = [_plain(v) for v in values[span[0]:span[1]]]
    return params


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
