"""Hires. fix as A1111's InputAccordion (checkbox and "from WxH to WxH" in the header), and "Send to extras"
keeping the image's `parameters` chunk through gradio's image round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import parse_args
from app.ui.txt2img import HR_ACCORDION, HR_CHECKBOX, HR_FINAL_RESOLUTION, hires_resolution_text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((True, 512, 512, 2.0, 0, 0), ("512x512", "1024x1024")),
        ((True, 512, 768, 1.5, 0, 0), ("512x768", "768x1152")),
        ((True, 512, 512, 2.0, 1000, 0), ("512x512", "1000x1000")),  # one resize value keeps the aspect
        ((True, 512, 512, 2.0, 1024, 768), ("512x512", "1024x768")),  # both: cover, then crop to exactly that
        ((True, "640", 512.0, "2", None, None), ("640x512", "1280x1024")),  # values as the browser may send them
    ],
)
def test_final_resolution_label(args, expected) -> None:
    text = hires_resolution_text(*args)
    assert text == (f"from <span class='resolution'>{expected[0]}</span> "
                    f"to <span class='resolution'>{expected[1]}</span>")


@pytest.mark.parametrize("args", [(False, 512, 512, 2.0, 0, 0), (True, "", 512, 2.0, 0, 0), (True, 512, 512, 0, 0, 0)])
def test_final_resolution_label_is_empty_when_off_or_incomplete(args) -> None:
    assert hires_resolution_text(*args) == ""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    from app.runtime import Runtime
    from app.ui import build_blocks

    runtime = Runtime(parse_args(["--data-dir", str(tmp_path_factory.mktemp("hires-ui"))], environ={}))
    runtime.start()
    demo, ui = build_blocks(runtime)
    yield demo, ui
    runtime.shutdown()


def _component(demo, elem_id: str) -> dict:
    found = [c for c in demo.get_config_file()["components"] if c.get("props", {}).get("elem_id") == elem_id]
    assert len(found) == 1, elem_id
    return found[0]


def test_input_accordion_layout(built) -> None:
    demo, ui = built
    acc = _component(demo, HR_ACCORDION)
    assert acc["type"] == "accordion" and "input-accordion" in acc["props"]["elem_classes"]
    assert acc["props"]["label"] == "Hires. fix"
    box = _component(demo, HR_CHECKBOX)
    assert box["type"] == "checkbox" and box["props"]["label"] == "Hires. fix"  # ui-config key unchanged
    assert ui.txt2img.config_keys["enable_hr"] == "txt2img/Hires. fix/value"
    assert _component(demo, HR_FINAL_RESOLUTION)["type"] == "html"
    # the label is refreshed on page load and whenever one of the six inputs changes
    loads = [fn for fn, _inputs, out in ui.txt2img.extra["on_load"] if out is ui.txt2img.extra["hires_final_resolution"]]
    assert loads == [hires_resolution_text]


def test_send_to_extras_keeps_the_parameters_chunk(built, tmp_path: Path) -> None:
    """The extras input stores what it is sent as PNG, so the job receives the image with its infotext."""
    from PIL import Image

    _demo, ui = built
    image = Image.new("RGB", (16, 16), (10, 20, 30))
    image.info["parameters"] = "a cat\nSteps: 2, Seed: 7"
    component = ui.extras["image"]
    received = component.preprocess(component.postprocess(image))
    assert received.info.get("parameters") == "a cat\nSteps: 2, Seed: 7"


def test_a_last_used_hires_checkpoint_is_kept_across_its_hash(tmp_path: Path) -> None:
    """A first run lists `tiny.safetensors` (not hashed yet); last_used.json may hold the hashed title (or the other
    way round): the Hires checkpoint keeps the model, in the list's current form."""
    import json
    import shutil

    from app.devtools.tiny_models import write_tiny_models
    from app.runtime import Runtime
    from app.ui import build_blocks

    models = tmp_path / "tiny"
    write_tiny_models(models, families=("sd1",))
    data = tmp_path / "data"
    shutil.copytree(models / "models", data / "models")
    (data / "last_used.json").write_text(json.dumps({"txt2img": {"hr_checkpoint_name": "tiny-sd1.safetensors [0123456789]"}}))
    runtime = Runtime(parse_args(["--data-dir", str(data)], environ={}))
    runtime.start()
    try:
        demo, _ui = build_blocks(runtime)
        assert _component(demo, "txt2img_hr_checkpoint")["props"]["value"] == "tiny-sd1.safetensors"
    finally:
        runtime.shutdown()
