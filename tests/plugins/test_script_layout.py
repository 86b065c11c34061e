"""A1111's positional script_args without a UI (the API, --nowebui): every Script subclass a module re-exports is
registered, each script's ui() values get args_from/args_to in A1111's order, and a job that sends no values
gets the ui() defaults (the index for type="index" dropdowns)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.params import GenerationParams, ScriptParams
from app.plugins import hooks, load_extensions
from app.plugins.compat import current as compat_current
from app.plugins.compat.adapter import run_script_job
from app.plugins.compat.script_layout import layout_for
from tests.plugins.test_plugins import fake_plan, make_runtime


@pytest.fixture(autouse=True)
def _restore_current_registry():
    previous = compat_current.set_current(None)
    yield
    compat_current.set_current(previous)


def _registry(tmp_path: Path, *names: str):
    return load_extensions(make_runtime(tmp_path, names=names or ("ui-scripts",)))


def test_re_exported_script_classes_are_registered(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    ext = registry.extension("ui-scripts")
    assert ext.errors == [] and ext.scripts == ["scripts/entry.py"]
    assert [s.title for s in registry.selectable_scripts(False)] == ["Grid tiles", "Custom code"]
    assert [p.title for _, p in registry.plugins] == ["Prompt suffix", "Prompt suffix"]  # one per tab
    assert len(registry.a1111_scripts) == 6


def test_layout_orders_alwayson_then_selectable_with_defaults(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    layout = layout_for(registry, False)
    suffix, tiles, lines = (slot.script for slot in layout.slots)
    assert (suffix.args_from, suffix.args_to) == (1, 4) and (tiles.args_from, tiles.args_to) == (4, 8)
    assert (lines.args_from, lines.args_to) == (8, 10) and layout.size == 10
    # Dropdown(type="index", value="Chess") defaults to its index, as the control would send it
    assert layout.script_args(GenerationParams()) == [0, True, "best quality", 1, "<p>Tiles the image</p>", 1, 512,
                                                      False, False, ""]
    # the selected script's index + 1 at position 0, its values over its defaults
    chosen = GenerationParams(script=ScriptParams(name="Custom code", args=[True]))
    assert layout.script_args(chosen)[0] == 2 and layout.script_args(chosen)[8:] == [True, ""]
    info = next(s for s in registry.scripts if s.title == "Grid tiles" and not s.is_img2img)
    assert [a["label"] for a in info.args] == ["", "Tile mode", "Tile width", "Save tiles"]
    assert info.args[1]["choices"] == ["Linear", "Chess", "None"] and info.args[2]["maximum"] == 2048
    assert layout_for(registry, False) is layout  # made once


def test_alwayson_script_runs_with_its_defaults_when_the_job_sends_none(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    params = hooks.adjust_params(GenerationParams(prompt="a cat", batch_size=2), None, registry)
    plan = fake_plan(params, registry=registry)
    hooks.job_started(plan)
    assert plan.all_prompts == ["a cat, best quality"] * 2
    assert plan.extra["Suffix"] == "best quality x1" and plan.extra["Suffix args"] == "True|best quality|1"


def test_alwayson_values_overlay_the_defaults(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    # a shorter list keeps the defaults of the values it leaves out; extra values are dropped (A1111's min())
    params = GenerationParams(prompt="a cat", extras={"alwayson_scripts": {"prompt suffix": {"args": [True, "hdr"]}}})
    params = hooks.adjust_params(params, None, registry)
    plan = fake_plan(params, registry=registry)
    hooks.job_started(plan)
    assert plan.all_prompts == ["a cat, hdr"] and plan.extra["Suffix"] == "hdr x1"
    off = GenerationParams(prompt="a dog", extras={"alwayson_scripts": {"Prompt suffix": [False, "x", 3, "extra"]}})
    plan = fake_plan(hooks.adjust_params(off, None, registry), registry=registry)
    hooks.job_started(plan)
    assert plan.all_prompts == ["a dog"] and "Suffix" not in plan.extra


def test_bad_alwayson_args_are_a_job_warning(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    params = GenerationParams(prompt="a cat", extras={"alwayson_scripts": {"Prompt suffix": "oops"}})
    params = hooks.adjust_params(params, None, registry)
    assert any("must be a list" in w for w in registry.take_warnings(params))


class _Ctx:
    def __init__(self, params: GenerationParams, registry) -> None:
        self.params = params
        self.manager = type("M", (), {"plugins": registry})()
        self.interrupted = False


def test_selectable_script_gets_defaults_for_what_the_request_leaves_out(tmp_path: Path, monkeypatch) -> None:
    registry = _registry(tmp_path)
    seen = {}

    def fake_process_images(p):
        from app.plugins.compat.processing import Processed

        seen.update(p.extra_generation_params)
        return Processed(p, ["img"], seed=1)

    import ui_scripts_lib.selectable as selectable  # the fixture's package (imported by the loader)

    monkeypatch.setattr(selectable.processing, "process_images", fake_process_images)
    params = GenerationParams(prompt="x", script=ScriptParams(name="Grid tiles", args=["", 0]))
    result = run_script_job(_Ctx(params, registry))
    assert result is not None and result.images == ["img"]
    assert seen["Tiles"] == "Linear 512 save=False more=0" and seen["Tiles index"] == 1
    # values beyond the controls reach run() (A1111's API passes all of script_args)
    params = GenerationParams(prompt="x", script=ScriptParams(name="grid tiles", args=["", 2, 128, True, "more"]))
    run_script_job(_Ctx(params, registry))
    assert seen["Tiles"] == "None 128 save=True more=1"


def test_a_failing_ui_is_reported_and_the_script_gets_no_args(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, names=())
    broken = Path(runtime.paths.extensions_dir) / "broken-ui" / "scripts"
    broken.mkdir(parents=True)
    (broken / "b.py").write_text(
        "from modules import scripts\n"
        "class B(scripts.Script):\n"
        "    def title(self): return 'Broken UI'\n"
        "    def show(self, is_img2img): return scripts.AlwaysVisible\n"
        "    def ui(self, is_img2img): raise RuntimeError('no ui today')\n"
        "    def process(self, p, *args): p.extra_generation_params['B'] = len(args)\n")
    registry = load_extensions(runtime)
    layout = layout_for(registry, False)
    assert layout.size == 1 and layout.slots[0].error.startswith("ui() failed: RuntimeError")
    assert any("Broken UI: ui() failed: RuntimeError: no ui today" in e for e in registry.extension("broken-ui").errors)
    plan = fake_plan(hooks.adjust_params(GenerationParams(), None, registry), registry=registry)
    hooks.job_started(plan)
    assert plan.extra["B"] == 0
