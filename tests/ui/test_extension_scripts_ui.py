"""Extension scripts in the built UI (no browser): always-on ui() groups above the Script dropdown, selectable
ones under it, before/after_component on the tab fields, the on_ui_tabs tab, and the values reaching the job
(the tests/fixtures/extensions/ui-scripts extension, shaped like sd-dynamic-prompts and ultimate-upscale)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.ui import form as F
from tests.helpers import ui_with_extension


@pytest.fixture(scope="module")
def built(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    yield from ui_with_extension(tiny_data_dir, tmp_path_factory.mktemp("ext-ui-data"), "ui-scripts")


def _components(demo) -> dict[str, dict]:
    return {c["props"].get("elem_id"): c for c in demo.get_config_file()["components"] if c["props"].get("elem_id")}


def _order(demo) -> list[str]:
    """elem_ids in the order the page lays them out (depth-first over the layout tree)."""
    config = demo.get_config_file()
    ids = {c["id"]: c["props"].get("elem_id") for c in config["components"]}
    out: list[str] = []

    def walk(node: dict) -> None:
        if ids.get(node["id"]):
            out.append(ids[node["id"]])
        for child in node.get("children", []):
            walk(child)

    walk(config["layout"])
    return out


@pytest.mark.parametrize("elem_id", [
    "prompt_suffix_enabled_txt2img", "prompt_suffix_text_txt2img", "prompt_suffix_repeat_txt2img",
    "prompt_suffix_enabled_img2img", "script_txt2img_grid_tiles_mode", "script_txt2img_grid_tiles_tile_width",
    "script_img2img_grid_tiles_save", "tab_suffix_tab", "suffix_tab_text", "suffix_tab_button",
    "prompt_suffix_marker_txt2img_cfg_scale", "prompt_suffix_marker_img2img_cfg_scale",
])
def test_extension_controls_and_tab_are_on_the_page(built, elem_id: str) -> None:
    assert elem_id in _components(built[1])


def test_places_follow_a1111(built) -> None:
    order = _order(built[1])
    # always-on groups sit above the Script dropdown, the selectable script's controls under it
    assert order.index("txt2img_seed") < order.index("prompt_suffix_enabled_txt2img") < order.index("txt2img_script")
    assert order.index("txt2img_script") < order.index("script_txt2img_grid_tiles_mode")
    # before_component("txt2img_cfg_scale") inserted its HTML just before the CFG field
    assert order.index("prompt_suffix_marker_txt2img_cfg_scale") + 1 == order.index("txt2img_cfg_scale")
    # on_ui_tabs tabs come after PNG Info and before Settings (A1111's order)
    assert order.index("tab_pnginfo") < order.index("tab_suffix_tab") < order.index("tab_settings")


def test_component_hooks_see_the_tab_fields(built) -> None:
    from ui_scripts_lib.always import SEEN

    runtime, demo, ui = built
    assert {"txt2img_prompt", "txt2img_width", "img2img_steps"} <= set(SEEN["after"])
    assert "txt2img_prompt" in SEEN["on_after"] and "img2img_prompt" in SEEN["on_after"]
    suffix = next(s for e, s in runtime.plugins.a1111_scripts if s.title() == "Prompt suffix" and not s.is_img2img)
    assert suffix.width_slider is ui.txt2img.components["width"]  # after_component handed over the real slider
    # before_component got the very component being created, before its __init__ ran (as A1111's patched gradio
    # does), with the constructor's keywords
    cfg = ui.txt2img.components["cfg_scale"]
    assert SEEN["before_component"]["txt2img_cfg_scale"] == ("Slider", False, id(cfg), "CFG Scale")
    assert SEEN["after_ids"]["txt2img_cfg_scale"] == id(cfg) and cfg.elem_id == "txt2img_cfg_scale"
    # the script wired its button to that slider: the page has the event
    config = demo.get_config_file()
    width_id = ui.txt2img.components["width"]._id
    assert any(width_id in dep["inputs"] for dep in config["dependencies"] if len(dep["inputs"]) == 1)


def _args(tab, values: dict, script_values: list) -> list:
    return [values[s.name] for s in F.fields_for("txt2img")] + script_values


def _script_values(tab, alwayson: list, **by_title: list) -> list:
    """Every script control's value: the always-on ones first, each chosen title's values in its span."""
    out: list = [None] * len(tab.extra["script_inputs"])
    out[:len(alwayson)] = alwayson
    for title, values in by_title.items():
        start, end = tab.extra["script_spans"][title]
        assert end - start == len(values)
        out[start:end] = values
    return out


def test_ui_values_reach_the_job_params(built) -> None:
    from app.ui.generation import params_from_args

    tab = built[2].txt2img
    controls = tab.extra["script_inputs"]
    spans = tab.extra["script_spans"]
    assert [c.label for c in controls[:3]] == ["Suffix enabled", "Suffix", "Repeat"]  # the always-on script first
    start, end = spans["Grid tiles"]
    assert [c.label for c in controls[start:end]] == [None, "Tile mode", "Tile width", "Save tiles"]
    start, end = spans["Custom code"]
    assert [c.label for c in controls[start:end]] == ["Iterate seed every line", "List of prompt inputs"]
    assert list(spans)[:2] == ["Prompt matrix", "Prompts from file or textbox"]  # the built-ins' own controls
    script_values = _script_values(tab, [True, "hdr", 2.0], **{"Grid tiles": ["<p>Tiles the image</p>", 0, 256.0,
                                                                             True], "Custom code": [False, ""]})
    values = {**F.defaults("txt2img"), "prompt": "a cat", "script_name": "Grid tiles"}
    _, params = params_from_args(tab, tab.extra["build_params"], _args(tab, values, script_values))
    assert params.extras["alwayson_scripts"] == {"Prompt suffix": [True, "hdr", 2]}
    assert params.script.name == "Grid tiles" and params.script.args == ["<p>Tiles the image</p>", 0, 256, True]
    layout = built[0].plugins.script_layouts[False]
    assert layout.script_args(params) == [1, True, "hdr", 2, "<p>Tiles the image</p>", 0, 256, True, False, ""]


@pytest.mark.slow
def test_generate_with_extension_scripts(built) -> None:
    from app.ui.generation import make_generate

    runtime, _, ui = built
    tab = ui.txt2img
    gen = make_generate(ui.ctx, tab, tab.extra["build_params"])
    values = {**F.defaults("txt2img"), "prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 3,
              "script_name": "Grid tiles"}
    script_values = _script_values(tab, [True, "hdr", 2], **{"Grid tiles": ["", 1, 128, False],
                                                             "Custom code": [False, ""]})
    outputs = list(gen(*_args(tab, values, script_values)))
    gallery, info, _progress, _state = outputs[-1]
    text = gallery[0].info["parameters"]
    assert text.startswith("a cat, hdr, hdr\n")  # the always-on script changed the prompt
    assert "Suffix: hdr x2" in text and "Tiles: Chess 128 save=False more=0" in text and "Tiles index: 1" in text


def test_extensions_tab_reports_what_each_extension_registered(built, tmp_path: Path) -> None:
    from app.plugins import load_extensions
    from app.plugins.compat import current as compat_current
    from app.ui.extensions_report import extension_report, extension_report_html

    runtime, demo, ui = built
    report = {e["name"]: e for e in extension_report(runtime.plugins)}["ui-scripts"]
    assert report["scripts"] == ["Prompt suffix (always-on: txt2img, img2img)",
                                 "Grid tiles (selectable: txt2img, img2img)",
                                 "Custom code (selectable: txt2img, img2img)"]
    assert report["callbacks"] == {"ui_tabs": 1} and report["errors"] == [] and not report["idle"]
    assert "Grid tiles (selectable: txt2img, img2img)" in _components(demo)["extensions_report"]["props"]["value"]
    # an extension whose script file exposes nothing (e.g. a Script class kept in a package it never imports)
    ext = tmp_path / "extensions" / "idle" / "scripts"
    ext.mkdir(parents=True)
    (ext / "nothing.py").write_text("VALUE = 1\n")
    (ext.parent / "javascript").mkdir()
    (ext.parent / "javascript" / "b.js").write_text("")
    (ext.parent / "javascript" / "a.js").write_text("")
    (ext.parent / "style.css").write_text("")
    previous = compat_current.current()
    try:
        registry = load_extensions(extensions_dir=tmp_path / "extensions", settings=runtime.settings)
    finally:
        compat_current.set_current(previous)
    idle = extension_report(registry)[0]
    assert idle["idle"] and idle["files"] == ["javascript/a.js", "javascript/b.js", "style.css"]
    assert "registered no script, callback or plugin" in extension_report_html(registry)


def test_choosing_a_script_shows_its_group(built) -> None:
    runtime, demo, ui = built
    dropdown = ui.txt2img.components["script_name"]
    fn = next(f for f in demo.fns.values() if [b._id for b in f.inputs] == [dropdown._id]
              and all(type(b).__name__ == "Group" for b in f.outputs))
    assert len(fn.outputs) == 5  # txt2img: Prompt matrix, Prompts from file, X/Y/Z plot, the extension's two
    assert [u["visible"] for u in fn.fn("Grid tiles")] == [False, False, False, True, False]
    assert [u["visible"] for u in fn.fn("Prompt matrix")] == [True, False, False, False, False]
    assert [u["visible"] for u in fn.fn("None")] == [False, False, False, False, False]


def test_an_extension_script_titled_like_an_a1111_builtin_atelier_does_not_run_shows_its_own_controls(built) -> None:
    from app.ui.scripts import attach_script_args

    tab = built[2].txt2img
    start, end = tab.extra["script_spans"]["Custom code"]
    assert [c.label for c in tab.extra["script_inputs"][start:end]] == ["Iterate seed every line",
                                                                          "List of prompt inputs"]
    assert "script_txt2img_custom_code_lines" in _components(built[1])
    assert not any("another script is titled" in e for e in built[0].plugins.extension("ui-scripts").errors)
    from app.params import GenerationParams, ScriptParams

    params = GenerationParams(script=ScriptParams(name="Custom code"))
    values = [None] * len(tab.extra["script_inputs"])
    values[start:end] = [True, "a\nb"]
    assert attach_script_args(tab, params, values).script.args == [True, "a\nb"]


def test_a_single_script_group_gets_one_update_not_a_list() -> None:
    """gradio does not unpack a one-element list for a single output (SD upscale's group never appeared)."""
    import gradio as gr

    from app.ui.common import TabForm
    from app.ui.scripts import build_script_args

    class Ctx:
        ui_config = None

        def script_names(self, tab: str) -> list[str]:
            return ["None", "SD upscale"]

        def upscaler_names(self) -> list[str]:
            return ["None", "Lanczos"]

        runtime = None

    tab = TabForm("img2img")
    with gr.Blocks() as demo:
        tab.components["script_name"] = gr.Dropdown(["None", "SD upscale"], value="None")
        build_script_args(Ctx(), tab)
    fn = next(f for f in demo.fns.values() if [b._id for b in f.inputs] == [tab.components["script_name"]._id])
    assert fn.fn("SD upscale") == {"__type__": "update", "visible": True}
