"""The X/Y/Z plot's controls: Paste ↙️ of an X/Y/Z grid's infotext selects the script and fills each axis's type
and values (a choice axis's values go to its dropdown; any other infotext changes nothing); the 📒 fill and swap
buttons' handlers; the controls' defaults recorded in (and read from) ui-config.json."""

from __future__ import annotations

from types import SimpleNamespace

from app.settings import Settings
from app.settings.ui_config import UiConfig
from app.ui.context import UiContext
from app.ui.xyz import AxisHandlers, build_xyz, paste_xyz
from app.xyz.axes import axes_for

GRID = ('a boat\nSteps: 2, Sampler: Euler, Seed: 3, Script: X/Y/Z plot, X Type: Seed, X Values: "3, 4", '
        'Fixed X Values: "3, 4", Y Type: Sampler, Y Values: "Euler,DPM++ 2M,Nope", Z Type: Steps, Z Values: 1-2, '
        'Version: atelier-0.1.0')


def test_paste_fills_the_axes():
    lists = {"samplers": ["Euler", "Euler a", "DPM++ 2M"]}.get
    updates = paste_xyz(GRID, axes_for("txt2img"), lists)
    assert updates[0]["value"] == "X/Y/Z plot"
    assert [updates[1]["value"], updates[2]["value"], updates[3]["value"]] == ["Seed", "3, 4", []]
    assert updates[4]["value"] == "Sampler" and updates[5]["value"] == ""
    assert updates[6]["value"] == ["Euler", "DPM++ 2M"] and updates[6]["choices"] == ["Euler", "Euler a", "DPM++ 2M"]
    assert [updates[7]["value"], updates[8]["value"]] == ["Steps", "1-2"]


def test_other_infotexts_change_nothing():
    updates = paste_xyz("a cat\nSteps: 20, Seed: 1", axes_for("img2img"), lambda name: [])
    assert len(updates) == 10 and all("value" not in u for u in updates)


def _handlers() -> AxisHandlers:
    return AxisHandlers(axes_for("txt2img"), {"samplers": ["Euler", "DPM++ 2M"]}.get)


def test_fill_button_puts_every_choice_in_the_values():
    h, labels = _handlers(), [a.label for a in axes_for("txt2img")]
    sampler, steps = labels.index("Sampler"), labels.index("Steps")
    text, drop = h.fill_all(sampler, False)
    assert "value" not in text and drop["value"] == ["Euler", "DPM++ 2M"]  # the dropdown
    text, drop = h.fill_all(sampler, True)
    assert text["value"] == "Euler,DPM++ 2M" and "value" not in drop  # text mode: the textbox, as CSV
    assert all("value" not in u for u in h.fill_all(steps, False))  # a free-text axis: nothing to fill
    fill, text, drop = h.select(sampler, "Euler, Nope", [], False)  # choosing the axis keeps the known values
    assert fill["visible"] and not text["visible"] and drop["value"] == ["Euler"]


def test_swap_buttons_exchange_two_axes():
    h, labels = _handlers(), [a.label for a in axes_for("txt2img")]
    sampler = labels.index("Sampler")
    assert h.swap(1, "1, 2", [], sampler, "", ["Euler"]) == ("Sampler", "", ["Euler"], "Seed", "1, 2", [])
    assert h.swap(None, "", [], 4, "10-20", []) == ("Steps", "10-20", [], "Nothing", "", [])


def test_control_defaults_are_recorded_in_ui_config(tmp_path):
    import gradio as gr

    key = "customscript/xyz_grid.py/txt2img/{}".format
    cfg = UiConfig(tmp_path / "ui-config.json", {key("Y type/value"): "SGM noise multiplier",
                                                 key("Draw legend/value"): False,
                                                 key("Grid margins (px)/maximum"): 100,
                                                 key("Z type/value"): "No such axis"})
    paths = SimpleNamespace(data_dir=tmp_path, styles_file=tmp_path / "s.csv", styles_files=[])
    runtime = SimpleNamespace(settings=Settings.load(tmp_path / "config.json"), ui_config=cfg, paths=paths, args=None)
    with gr.Blocks():
        inputs = build_xyz(UiContext(runtime), "txt2img")
    assert [inputs[0].value, inputs[3].value, inputs[6].value] == ["Seed", "SGM noise multiplier", "Nothing"]
    assert inputs[5].visible and not inputs[4].visible  # a saved choice axis starts with its values dropdown
    assert inputs[9].value is False and inputs[16].maximum == 100
    recorded = cfg.data
    assert recorded[key("X type/value")] == "Seed" and recorded[key("Include Sub Grids/value")] is False
    assert recorded[key("Grid margins (px)/step")] == 2 and recorded[key("X values/value")] == ""
    assert recorded[key("Use text inputs instead of dropdowns/value")] is False
