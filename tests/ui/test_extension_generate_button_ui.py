"""An extension that keeps the Generate buttons from ``on_after_component`` and wires them in its script's ``ui()``
(ADetailer's way; tests/fixtures/extensions/generate-grabber): the toprow is announced before the scripts' ui()
runs, as in A1111, so its controls are built, its click is on the real button and its values reach the job."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.ui import form as F
from tests.helpers import ui_with_extension


@pytest.fixture(scope="module")
def built(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    yield from ui_with_extension(tiny_data_dir, tmp_path_factory.mktemp("grabber-data"), "generate-grabber")


def _script(runtime, is_img2img: bool):
    return next(s for _e, s in runtime.plugins.a1111_scripts
                if s.title() == "Grabber" and bool(s.is_img2img) == is_img2img)


def test_its_ui_builds_with_the_generate_buttons(built) -> None:
    runtime, demo, ui = built
    assert runtime.plugins.extension("generate-grabber").errors == []
    ids = {c["props"].get("elem_id") for c in demo.get_config_file()["components"]}
    for tab in ("txt2img", "img2img"):
        assert {f"script_{tab}_grabber_accordion", f"script_{tab}_grabber_enable", f"script_{tab}_grabber_text"} <= ids
        script = _script(runtime, tab == "img2img")
        assert script.button is getattr(ui, tab).extra["generate"]  # on_after_component handed over the real button


def test_its_click_is_on_the_generate_button(built) -> None:
    runtime, demo, ui = built
    config = demo.get_config_file()
    for tab in ("txt2img", "img2img"):
        button, state = getattr(ui, tab).extra["generate"], _script(runtime, tab == "img2img").state
        clicks = [d for d in config["dependencies"] if [button._id, "click"] in [list(t) for t in d["targets"]]]
        assert any(state._id in d["outputs"] for d in clicks)  # the extension's handler
        assert any(d.get("api_name") == f"{tab}_generate" for d in clicks)  # and ours, still there


def test_the_toprow_is_announced(built) -> None:
    """The prompt boxes, the Generate/Interrupt/Skip buttons and the tool buttons under them reach
    on_after_component, each once per tab, before the tab's settings fields."""
    import sys

    runtime = built[0]
    seen = sys.modules[type(_script(runtime, False)).__module__].SEEN
    for tab in ("txt2img", "img2img"):
        toprow = [f"{tab}_prompt", f"{tab}_neg_prompt", f"{tab}_generate", f"{tab}_interrupt", f"{tab}_skip",
                  "paste" if tab == "txt2img" else f"{tab}_paste", f"{tab}_clear_prompt", f"{tab}_style_apply",
                  f"{tab}_styles"]
        assert all(seen.count(elem_id) == 1 for elem_id in toprow), [e for e in toprow if seen.count(e) != 1]
        assert max(seen.index(e) for e in toprow) < seen.index(f"{tab}_steps")


def test_its_values_reach_the_job_params(built) -> None:
    from app.ui.generation import params_from_args

    tab = built[2].txt2img
    controls = tab.extra["script_inputs"]
    start, end = tab.extra["alwayson_spans"]["Grabber"]
    assert end - start == 3
    values = {**F.defaults("txt2img"), "prompt": "a cat"}
    script_values = [None] * len(controls)
    script_values[start:end] = [True, "eyes", {"text": "eyes", "clicked": True}]
    args = [values[s.name] for s in F.fields_for("txt2img")] + script_values
    _, params = params_from_args(tab, tab.extra["build_params"], args)
    assert params.extras["alwayson_scripts"]["Grabber"] == [True, "eyes", {"text": "eyes", "clicked": True}]


@pytest.mark.slow
def test_generate_runs_its_process_with_the_page_values(built) -> None:
    from app.ui.generation import make_generate

    _, _, ui = built
    tab = ui.txt2img
    start, end = tab.extra["alwayson_spans"]["Grabber"]
    values = {**F.defaults("txt2img"), "prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 3}
    script_values = [None] * len(tab.extra["script_inputs"])
    script_values[start:end] = [True, "eyes", {"text": "eyes", "clicked": True}]
    gen = make_generate(ui.ctx, tab, tab.extra["build_params"])
    gallery, *_ = list(gen(*[values[s.name] for s in F.fields_for("txt2img")], *script_values))[-1]
    assert "Grabber: eyes|eyes" in gallery[0].info["parameters"]
