"""Issue 12, findings 4 and 5 through the web UI: the Generate and Generate-forever handlers refuse a prompt over
`api_max_prompt_length` and text that cannot be saved (a lone surrogate) before anything is queued, with an error
naming the field, and the UI keeps working."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.cli import parse_args
from app.ui import form as F


@pytest.fixture(scope="module")
def ui(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from app.runtime import Runtime
    from app.ui import build_blocks

    data = tmp_path_factory.mktemp("ui-sec")
    shutil.copytree(tiny_data_dir / "models", data / "models", ignore=shutil.ignore_patterns("tiny-sd2v*", "tiny-sdxl*"))
    runtime = Runtime(parse_args(["--data-dir", str(data)], environ={}))
    runtime.start()
    _, built = build_blocks(runtime)
    yield runtime, built, data
    runtime.shutdown()


def _args(**changes) -> list:
    values = {**F.defaults("txt2img"), "prompt": "a cat", "steps": 1, "width": 64, "height": 64, **changes}
    return [values[s.name] for s in F.fields_for("txt2img")]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"prompt": "cat " * 20000}, "prompt"),  # 80,000 characters > the 65,536 default
        ({"negative_prompt": "bad\ud800text"}, "negative_prompt"),
        ({"prompt": "a \udfff cat"}, "prompt"),
    ],
)
def test_ui_generate_refuses_hostile_text_before_queueing(ui, changes, field):
    from app.ui.generation import make_generate

    runtime, built, data = ui
    tab = built.txt2img
    jobs_before = len(runtime.service.jobs_snapshot())
    pngs_before = len(list(data.rglob("*.png")))
    gen = make_generate(built.ctx, tab, tab.extra["build_params"])
    (_, info, _, _), = list(gen(*_args(**changes)))
    assert "atelier-error" in info and field in info
    assert len(runtime.service.jobs_snapshot()) == jobs_before  # nothing was queued
    assert len(list(data.rglob("*.png"))) == pngs_before
    # the prompt was not remembered as the last used one either
    last = built.ctx.last_used.get("txt2img") or {}
    assert last.get(field) != changes[field]


def test_ui_generate_forever_refuses_an_overlong_prompt(ui):
    from app.ui.generation import checked_params_from_args

    _, built, _ = ui
    tab = built.txt2img
    with pytest.raises(ValueError, match="prompt"):
        checked_params_from_args(built.ctx, tab, tab.extra["build_params"], _args(prompt="x" * 70000))
    # within the limit it builds params as before
    _, params = checked_params_from_args(built.ctx, tab, tab.extra["build_params"], _args(prompt="x" * 1000))
    assert params.prompt == "x" * 1000
