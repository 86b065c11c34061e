"""Extensions: loading (A1111-style and native), isolation of failures, disabling, hooks, callbacks, opts,
selectable scripts. The example extensions live in tests/fixtures/extensions/ and are copied per test."""

from __future__ import annotations

import json
import shutil
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from app.params import GenerationParams, Img2ImgParams, ScriptParams
from app.plugins import api_scripts, compat, hooks, list_extensions, load_extensions
from app.plugins.api import ExtraField, ImageInfo, JobInfo, Plugin, SaveInfo, StepInfo
from app.plugins.compat import current as compat_current
from app.plugins.compat.adapter import run_script_job
from app.plugins.loader import INSTALL_NOTE
from app.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "extensions"


@pytest.fixture(autouse=True)
def _restore_current_registry():
    """The A1111 layer's current registry (what ``modules.*`` see) is process-global: restore it."""
    previous = compat_current.set_current(None)
    yield
    compat_current.set_current(previous)


def make_runtime(tmp_path: Path, config: dict[str, Any] | None = None, names: tuple[str, ...] | None = None,
                 **flags: Any) -> SimpleNamespace:
    ext_dir = tmp_path / "extensions"
    for src in sorted(FIXTURES.iterdir()):
        if names is None or src.name in names:
            shutil.copytree(src, ext_dir / src.name)
    ext_dir.mkdir(exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(config or {}), encoding="utf-8")
    args = SimpleNamespace(disable_all_extensions=False, disable_extra_extensions=False, **flags)
    return SimpleNamespace(paths=SimpleNamespace(extensions_dir=ext_dir, data_dir=tmp_path),
                           settings=Settings.load(tmp_path / "config.json"), args=args)


def fake_plan(params: GenerationParams, kind: str = "txt2img", ctx: Any = None, registry: Any = None) -> SimpleNamespace:
    """A job plan whose manager has ``registry`` as its plugins (None: a manager without extensions)."""
    n = params.n_images
    plan = SimpleNamespace(manager=SimpleNamespace(plugins=registry), params=params, kind=kind, all_prompts=[params.prompt] * n,
                           all_negative_prompts=[params.negative_prompt] * n, seeds=[100 + i for i in range(n)],
                           subseeds=[7 + i for i in range(n)], extra={"Sampler": "Euler"}, warnings=[], ctx=ctx)
    plan.warn = plan.warnings.append
    return plan


def by_name(registry) -> dict[str, Any]:
    return {e.name: e for e in registry.extensions}


# -- (a) an unmodified A1111-style extension -------------------------------------------------------------
def test_a1111_always_visible_script_runs_through_the_hooks(tmp_path):
    runtime = make_runtime(tmp_path, names=("a1111-simple",))
    registry = load_extensions(runtime)
    assert compat_current.current() is registry  # the A1111 layer's view; the hooks take it from the plan
    ext = by_name(registry)["a1111-simple"]
    assert ext.enabled and ext.errors == [] and ext.scripts == ["scripts/stamp.py"]
    # 1. before a job: before_process(p) sees the params through p
    params = GenerationParams(prompt="a cat", steps=5, batch_size=2)
    params = hooks.adjust_params(params, None, registry)
    # 2. job start: process(p) rewrites all_prompts and adds an infotext entry
    plan = fake_plan(params, registry=registry)
    hooks.job_started(plan)
    assert plan.all_prompts == ["a cat, stamped", "a cat, stamped"]
    assert plan.extra["Stamp"] == "2 prompts, seed 100"
    assert plan.extra["Stamp before"] == 5 and plan.extra["Sampler"] == "Euler"
    assert plan.extra["Stamp format"] == "png"  # shared.opts reads the runtime's settings
    # 3. per image: postprocess_image draws a red pixel
    image = Image.new("RGB", (8, 8), (0, 0, 0))
    out = hooks.after_image(plan, 1, image)
    assert out.getpixel((0, 0)) == (255, 0, 0) and out.getpixel((1, 1)) == (0, 0, 0)
    assert image.getpixel((0, 0)) == (0, 0, 0)  # the script copied it
    # 4. end of job: postprocess(p, processed)
    from app.jobs.job import JobResult

    result = JobResult(images=[out, image], infotexts=["a", "b"], seeds=[100, 101], subseeds=[7, 8])
    assert hooks.job_finished(plan, result) is result
    stamp = registry.plugins[0][1].script
    assert sys.modules[type(stamp).__module__].POSTPROCESSED == [(2, 100)]
    assert plan.warnings == [] and result.warnings == []


def test_registry_functions_directly_with_params_and_image(tmp_path):
    registry = load_extensions(make_runtime(tmp_path, names=("a1111-simple",)), make_current=False)
    assert compat_current.current() is not registry
    params = GenerationParams(prompt="x", img2img=Img2ImgParams())
    extra: dict[str, Any] = {}
    info = JobInfo(params, "img2img", ["x"], [""], [5], [6], extra)
    registry.run_job_start(info)
    assert info.all_prompts == ["x, stamped"] and extra["Stamp"] == "1 prompts, seed 5"
    image = Image.new("RGB", (4, 4), (0, 0, 255))
    result = registry.run_after_image(ImageInfo(params, "img2img", 0, image, 5, "x", "", extra))
    assert result.getpixel((0, 0)) == (255, 0, 0) and result.getpixel((3, 3)) == (0, 0, 255)


# -- (b) broken extensions are reported, the rest loads ---------------------------------------------------
def test_broken_extensions_are_reported_and_others_still_load(tmp_path):
    runtime = make_runtime(tmp_path)
    bad = runtime.paths.extensions_dir / "broken-syntax" / "scripts"
    bad.mkdir(parents=True)
    (bad / "bad.py").write_text("from modules import scripts\nclass Broken(scripts.Script)\n    pass\n")
    registry = load_extensions(runtime)
    exts = by_name(registry)
    assert len(exts["broken-syntax"].errors) == 1 and "scripts/bad.py: SyntaxError" in exts["broken-syntax"].errors[0]
    dep = exts["broken-import"]
    assert any("needs_dep.py: ModuleNotFoundError" in e and "atelier_test_dependency_that_does_not_exist" in e
               for e in dep.errors)
    assert dep.scripts == ["scripts/fine.py"]  # the good file of the same extension loaded
    assert INSTALL_NOTE in dep.notes and not any("install.py" in e for e in dep.errors)  # never executed
    assert [s.title for s in registry.selectable_scripts(False)] == ["Fine selectable", "Loop back", "Twice", "Grid tiles",
                                                                      "Custom code"]
    assert exts["a1111-simple"].errors == [] and exts["native-plugin"].errors == []
    listed = {item["name"]: item for item in list_extensions(SimpleNamespace(plugins=registry))}
    assert listed["broken-syntax"]["errors"] and listed["broken-syntax"]["enabled"] is True


def test_failing_hook_is_a_job_warning_and_the_plugin_is_skipped_for_that_job(tmp_path):
    registry = load_extensions(make_runtime(tmp_path, names=("native-plugin",)))
    params = hooks.adjust_params(GenerationParams(prompt="p"), None, registry)
    plan = fake_plan(params, registry=registry)
    hooks.job_started(plan)
    failed = [w for w in plan.warnings if "failing" in w]
    assert len(failed) == 1 and "adjust_params" in failed[0] and "RuntimeError: boom" in failed[0]
    image = Image.new("RGB", (2, 2))
    assert hooks.after_image(plan, 0, image) is image  # Failing.after_image would raise: it is skipped
    assert len(plan.warnings) == 1
    # a new job runs the plugin again (and it fails again, reported again)
    plan2 = fake_plan(hooks.adjust_params(GenerationParams(prompt="q"), None, registry), registry=registry)
    hooks.job_started(plan2)
    assert len([w for w in plan2.warnings if "failing" in w]) == 1
    assert registry.plugins  # nothing was unloaded


# -- (c) disabled extensions ------------------------------------------------------------------------------
@pytest.mark.parametrize("config, flags, enabled", [
    ({"disabled_extensions": ["disabled-one"]}, {}, {"a1111-simple": True, "disabled-one": False}),
    ({"disable_all_extensions": "all"}, {}, {"a1111-simple": False, "disabled-one": False}),
    ({"disable_all_extensions": "extra"}, {}, {"a1111-simple": False, "disabled-one": False}),
    ({"disabled_extensions": ["disabled-one"]}, {"disable_all_extensions": True}, {"a1111-simple": False}),
    ({"disabled_extensions": ["disabled-one"]}, {"disable_extra_extensions": True}, {"a1111-simple": False}),
])
def test_disabled_extensions_are_listed_but_not_loaded(tmp_path, config, flags, enabled):
    runtime = make_runtime(tmp_path, config, names=("a1111-simple", "disabled-one"))
    runtime.args.__dict__.update(flags)
    registry = load_extensions(runtime)
    exts = by_name(registry)
    for name, want in enabled.items():
        assert exts[name].enabled is want
        assert (exts[name].scripts != []) is want
        if not want:
            assert exts[name].notes and exts[name].notes[0].startswith("not loaded")
    assert exts["disabled-one"].errors == []  # its script raises on import: never imported
    assert bool(registry.plugins) is enabled["a1111-simple"]
    runtime.plugins = registry
    items = {i["name"]: i for i in list_extensions(runtime)}
    assert items["disabled-one"]["enabled"] is False


def test_two_runtimes_do_not_see_each_others_native_plugins(tmp_path):
    """Each Runtime owns its registry (runtime.plugins, handed to its manager): the hooks of one runtime's jobs
    never reach the plugins another runtime loaded, whichever loaded last."""
    from app.cli import parse_args
    from app.runtime import Runtime

    shutil.copytree(FIXTURES / "native-plugin", tmp_path / "one" / "extensions" / "native-plugin")
    one, two = (Runtime(parse_args(["--data-dir", str(tmp_path / name)], environ={})) for name in ("one", "two"))
    one.start()
    two.start()  # loads (nothing) after one: the A1111 layer's current registry is now two's
    assert "stepcap" in [p.id for _, p in one.plugins.plugins] and two.plugins.plugins == []
    assert one.manager.plugins is one.plugins and two.manager.plugins is two.plugins
    capped = GenerationParams(steps=30, extras={"max_steps": 12})
    assert hooks.adjust_params(capped, None, hooks.registry_of(one.manager)).steps == 12
    assert hooks.adjust_params(GenerationParams(steps=30, extras={"max_steps": 12}), None,
                               hooks.registry_of(two.manager)).steps == 30
    plan = fake_plan(GenerationParams(extras={"stop_at": 1}), registry=two.manager.plugins)
    assert hooks.on_step(plan, 1, 5) is False and plan.warnings == []
    assert "Step cap" in [s["title"] for s in api_scripts(one)] and api_scripts(two) == []
    assert [i["name"] for i in list_extensions(one)] == ["native-plugin"] and list_extensions(two) == []


def test_list_extensions_without_a_load_reads_the_folders(tmp_path):
    runtime = make_runtime(tmp_path, {"disabled_extensions": ["selectable"]}, names=("selectable", "a1111-simple"))
    items = list_extensions(runtime)
    assert [(i["name"], i["enabled"]) for i in items] == [("a1111-simple", True), ("selectable", False)]
    assert set(items[0]) >= {"name", "remote", "branch", "commit_hash", "commit_date", "version", "enabled"}


def test_hidden_folders_and_files_are_skipped(tmp_path):
    runtime = make_runtime(tmp_path, names=())
    (runtime.paths.extensions_dir / ".hidden" / "scripts").mkdir(parents=True)
    (runtime.paths.extensions_dir / ".hidden" / "scripts" / "x.py").write_text("raise RuntimeError('no')\n")
    (runtime.paths.extensions_dir / "README.txt").write_text("not an extension")
    assert load_extensions(runtime).extensions == []


# -- (d) native plugin: adjust_params, ExtraField, on_step, register_upscaler -------------------------------
def test_native_plugin_extra_field_and_adjust_params(tmp_path):
    registry = load_extensions(make_runtime(tmp_path, names=("native-plugin",)))
    plugin = dict((p.id, p) for _, p in registry.plugins)["stepcap"]
    assert [f.name for f in plugin.extra_fields] == ["max_steps", "stop_at"]
    # a top-level extras value
    params = hooks.adjust_params(GenerationParams(steps=30, extras={"max_steps": 12}), None, registry)
    assert params.steps == 12 and params.extras["stepcap_applied"] == 12
    # alwayson_scripts by title (case-insensitive), positional and by name
    params = hooks.adjust_params(GenerationParams(steps=30, extras={"alwayson_scripts": {"step cap": {"args": [8]}}}), None, registry)
    assert params.steps == 8
    params = hooks.adjust_params(GenerationParams(steps=30, extras={"alwayson_scripts": {"Step cap": {"max_steps": 9}}}), None, registry)
    assert params.steps == 9
    # no value: the default (0 = no cap)
    assert hooks.adjust_params(GenerationParams(steps=30), None, registry).steps == 30
    # a bad value is a warning naming the field, the job goes on
    params = hooks.adjust_params(GenerationParams(steps=30, extras={"max_steps": 500}), None, registry)
    plan = fake_plan(params, registry=registry)
    hooks.job_started(plan)
    assert params.steps == 30 and any("'max_steps'" in w and "maximum" in w for w in plan.warnings)
    info = {item["title"]: item for item in api_scripts(SimpleNamespace(plugins=registry))}["Step cap"]
    assert info["alwayson"] and info["args"][0]["label"] == "Maximum steps" and info["args"][0]["maximum"] == 150
    upscalers = [spec for _owner, spec in registry.upscalers.values()]
    assert [u.name for u in upscalers] == ["Plugin double"]
    assert upscalers[0].upscale(Image.new("RGB", (3, 2)), 2.0).size == (6, 4)


def test_on_step_interrupt_request_stops_the_job(tmp_path):
    registry = load_extensions(make_runtime(tmp_path, names=("native-plugin",)))
    interrupted: list[str] = []
    ctx = SimpleNamespace(job=SimpleNamespace(id="job-1"), service=SimpleNamespace(interrupt=interrupted.append))
    plan = fake_plan(GenerationParams(extras={"stop_at": 3}), ctx=ctx, registry=registry)
    assert [hooks.on_step(plan, step, 5) for step in (1, 2)] == [False, False]
    assert hooks.on_step(plan, 3, 5) is True and interrupted == ["job-1"]
    assert any("interrupted" in w for w in plan.warnings)


@pytest.mark.parametrize("field, value, expected", [
    (ExtraField("a", "A", "checkbox", False), "true", True),
    (ExtraField("a", "A", "checkbox", False), 0, False),
    (ExtraField("a", "A", "slider", 1, minimum=0, maximum=4), "3", 3),
    (ExtraField("a", "A", "slider", 1.0, minimum=0, maximum=4), 2.5, 2.5),
    (ExtraField("a", "A", "dropdown", "x", choices=("x", "y")), "y", "y"),
    (ExtraField("a", "A", "textbox", ""), 12, "12"),
])
def test_extra_field_coerce(field, value, expected):
    assert field.coerce(value) == expected and type(field.coerce(value)) is type(expected)


@pytest.mark.parametrize("field, value, message", [
    (ExtraField("steps_cap", "A", "slider", 1, minimum=0, maximum=4), 5, "above the maximum"),
    (ExtraField("steps_cap", "A", "number", 1, minimum=0), -1, "below the minimum"),
    (ExtraField("steps_cap", "A", "number", 1), "many", "not a valid number"),
    (ExtraField("steps_cap", "A", "checkbox", False), "maybe", "not a valid checkbox"),
    (ExtraField("steps_cap", "A", "radio", "x", choices=("x", "y")), "z", "not one of x, y"),
])
def test_extra_field_rejects_bad_values_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match="steps_cap") as err:
        field.coerce(value)
    assert message in str(err.value)


def test_extra_field_declaration_is_checked():
    with pytest.raises(ValueError, match="kind"):
        ExtraField("x", "X", "colour")
    with pytest.raises(ValueError, match="identifier"):
        ExtraField("bad name", "X")


# -- (e) script_callbacks --------------------------------------------------------------------------------
def test_on_app_started_callbacks_and_a_failing_callback(tmp_path):
    registry = load_extensions(make_runtime(tmp_path, names=("callbacks-ext",)))
    assert [c.extension for c in registry.callbacks["app_started"]] == ["callbacks-ext"]

    def broken(demo, app):
        raise RuntimeError("route clash")

    registry.add_callback("app_started", broken, extension="callbacks-ext")
    app = SimpleNamespace()
    errors = registry.run_app_started(app)
    assert app.routes_added == ["/callbacks-ext/hello"]
    assert errors == ["extension callbacks-ext: on_app_started callback failed: RuntimeError: route clash"]
    assert by_name(registry)["callbacks-ext"].errors == [errors[0].split(": ", 1)[1]]
    module = registry.callbacks["app_started"][0].fn.__globals__
    assert module["CALLS"][0][2] is app and module["CALLS"][0][1] is None
    hooks.model_loaded("MODEL", registry)
    assert module["CALLS"][-1] == ("model_loaded", "MODEL")


def test_load_with_a_runtime_registers_the_app_started_hook(tmp_path):
    runtime = make_runtime(tmp_path, names=("callbacks-ext",))
    started: list[Any] = []
    runtime.on_app_started = started.append
    registry = load_extensions(runtime)
    assert started == [registry.run_app_started]
    app = SimpleNamespace()
    started[0](app)  # what Runtime.build_app does with each callback
    assert app.routes_added == ["/callbacks-ext/hello"]


# -- (f) shared.opts ---------------------------------------------------------------------------------------
def test_shared_opts_reads_and_extends_the_settings(tmp_path):
    runtime = make_runtime(tmp_path, {"samples_format": "jpg"}, names=("callbacks-ext",))
    registry = load_extensions(runtime)
    from modules import shared  # the compat package, installed by the loader

    read_setting = registry.callbacks["app_started"][0].fn.__globals__["read_setting"]
    assert read_setting() == ("jpg", True)  # on_ui_settings ran at load: the extension's option exists
    info = runtime.settings.info("callbacks_ext_flag")
    assert info.component == "checkbox" and info.section.id == "callbacks_ext" and "test" in info.comment
    shared.opts.samples_format = "webp"
    assert runtime.settings.get("samples_format") == "webp" and shared.opts.samples_format == "webp"
    assert shared.opts.get("nonexistent_key", 5) == 5 and "samples_format" in shared.opts
    with pytest.raises(AttributeError):
        _ = shared.opts.nonexistent_key
    assert shared.cmd_opts.disable_all_extensions is False
    assert shared.sd_model.sd_checkpoint_info.title == str(runtime.settings.get("sd_model_checkpoint") or "")


def test_preload_flags_reach_cmd_opts(tmp_path):
    runtime = make_runtime(tmp_path, names=("a1111-simple",))
    (runtime.paths.extensions_dir / "a1111-simple" / "preload.py").write_text(
        "def preload(parser):\n    parser.add_argument('--stamp-dir', type=str, default='stamps')\n")
    load_extensions(runtime)
    from modules import shared

    assert shared.cmd_opts.stamp_dir == "stamps"
    with pytest.raises(AttributeError, match="no_such_flag"):
        _ = shared.cmd_opts.no_such_flag


# -- (g) selectable scripts --------------------------------------------------------------------------------
def test_selectable_script_listed_and_run(tmp_path):
    registry = load_extensions(make_runtime(tmp_path, names=("selectable",)))
    ext = by_name(registry)["selectable"]
    assert ext.display_name == "Selectable test"
    assert [s.title for s in registry.selectable_scripts(True)] == ["Loop back"]
    from modules.processing import Processed, StableDiffusionProcessingTxt2Img

    p = StableDiffusionProcessingTxt2Img(prompt="dog", seed=42, steps=3)
    processed = registry.run_script("LOOP BACK", p, [3])
    assert isinstance(processed, Processed)
    assert processed.images == ["image-0-dog", "image-1-dog", "image-2-dog"] and processed.seed == 42
    assert p.extra_generation_params == {"Loop": 3}
    with pytest.raises(KeyError, match="available: Loop back"):
        registry.run_script("nope", p, [])
    scripts = {s["title"]: s for s in api_scripts(SimpleNamespace(plugins=registry))}
    assert scripts["Loop back"] == {"title": "Loop back", "is_txt2img": True, "is_img2img": True, "alwayson": False,
                                    "args": ()}
    from app.api.scripts import ApiScript

    assert ApiScript(**scripts["Loop back"]).name == "loop back"


def test_run_script_job_runs_a_plugin_script_in_the_job(tmp_path):
    load_extensions(make_runtime(tmp_path, names=("selectable",)))
    params = GenerationParams(prompt="owl", script=ScriptParams("loop back", [2, "note"]))
    result = run_script_job(SimpleNamespace(params=params, interrupted=False))
    assert result.images == ["image-0-owl", "image-1-owl"] and result.infotexts == ["note", "note"]
    params.script = ScriptParams("SD upscale", [])
    assert run_script_job(SimpleNamespace(params=params)) is None  # not a plugin script


def test_process_images_inside_a_script_job_runs_on_the_same_worker(tmp_path):
    load_extensions(make_runtime(tmp_path, names=("selectable",)))
    from modules.processing import StableDiffusionProcessingTxt2Img, process_images

    from app.jobs.job import JobResult

    seen: list[Any] = []

    def runner(ctx):
        seen.append(ctx.params)
        return JobResult(images=["img"], infotexts=["txt"], seeds=[ctx.params.seed.seed], subseeds=[1],
                         all_prompts=[ctx.params.prompt], all_negative_prompts=[""], info={"index_of_first_image": 0})

    class Script:
        def run(self, p, *args):
            p.prompt = "changed"
            return process_images(p)

    registry = compat_current.current()  # no manager in this job context: run_script_job uses the A1111 layer's
    registry.scripts[0].script = Script()
    service = SimpleNamespace(runner_for=lambda kind: runner)
    params = GenerationParams(prompt="orig", script=ScriptParams("Loop back", []))
    result = run_script_job(SimpleNamespace(params=params, service=service, begin=lambda *a, **k: None))
    assert seen[0].prompt == "changed" and seen[0].script is None and params.prompt == "orig"
    assert result.images == ["img"] and result.all_prompts == ["changed"]
    with pytest.raises(RuntimeError, match="no job service"):
        process_images(StableDiffusionProcessingTxt2Img(prompt="x"))  # outside a job, without a runtime


# -- compat p view and git metadata -----------------------------------------------------------------------
def test_processing_object_is_a_live_view_over_params():
    from app.plugins.compat.processing import StableDiffusionProcessing

    params = GenerationParams(prompt="a", n_iter=2)
    p = StableDiffusionProcessing.from_params(params)
    p.seed, p.steps, p.hr_scale, p.denoising_strength, p.do_not_save_samples = 9, 11, 1.5, 0.3, True
    assert (params.seed.seed, params.steps, params.hires.scale, params.hires.denoising_strength) == (9, 11, 1.5, 0.3)
    assert params.save_images is False and p.is_img2img is False
    assert p.all_seeds == [9, 10] and p.all_prompts == ["a", "a"]
    p.my_state = 1  # scripts stash their own attributes
    assert p.my_state == 1 and not hasattr(params, "my_state")
    with pytest.raises(AttributeError, match="img2img"):
        p.init_images = []
    i2i = StableDiffusionProcessing.from_params(GenerationParams(img2img=Img2ImgParams()))
    i2i.mask_blur, i2i.denoising_strength, i2i.inpaint_full_res = 8, 0.4, True
    img = i2i.to_params().img2img
    assert (img.mask_blur_x, img.mask_blur_y, img.denoising_strength, img.inpaint_full_res) == (8, 8, 0.4, True)
    assert type(i2i).__name__ == "StableDiffusionProcessingImg2Img"


def test_processing_takes_sd_model_and_ignores_it_as_a1111():
    """ADetailer builds its inpainting pass as ``StableDiffusionProcessingImg2Img(..., sd_model=p.sd_model)``."""
    from app.plugins.compat import shared
    from app.plugins.compat.processing import StableDiffusionProcessingImg2Img

    passed = object()
    i2i = StableDiffusionProcessingImg2Img(sd_model=passed, denoising_strength=0.4, mask_blur=4, steps=3)
    assert i2i.sd_model is not passed and type(i2i.sd_model) is type(shared.sd_model)  # the selected model's view
    assert (i2i.steps, i2i.to_params().img2img.denoising_strength) == (3, 0.4)


def test_git_metadata_is_read_from_files(tmp_path):
    runtime = make_runtime(tmp_path, names=("selectable",))
    git = runtime.paths.extensions_dir / "selectable" / ".git"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text(commit + "\n")
    (git / "config").write_text('[core]\n\tbare = false\n[remote "origin"]\n\turl = https://example.com/x.git\n')
    body = b"tree 1\nauthor A <a@x> 1600000000 +0000\ncommitter C <c@x> 1700000000 +0100\n\nmsg\n"
    (git / "objects" / commit[:2]).mkdir(parents=True)
    (git / "objects" / commit[:2] / commit[2:]).write_bytes(zlib.compress(b"commit %d\0" % len(body) + body))
    item = load_extensions(runtime).extensions[0].api_item()
    assert item == {"name": "selectable", "remote": "https://example.com/x.git", "branch": "main",
                    "commit_hash": commit, "commit_date": 1700000000, "version": "01234567", "enabled": True}


def test_hooks_are_no_ops_without_extensions():
    params = GenerationParams()
    plan = fake_plan(params)
    image = Image.new("RGB", (1, 1))
    assert hooks.adjust_params(params, None, None) is params
    hooks.job_started(plan)
    assert hooks.on_step(plan, 1, 2) is False and hooks.after_image(plan, 0, image) is image
    assert plan.warnings == [] and api_scripts() == []
    assert run_script_job(SimpleNamespace(params=params)) is None


def test_step_info_is_typed():
    info = StepInfo(GenerationParams(), "txt2img", 1, 4)
    info.request_interrupt()
    assert info.interrupt_requested


# -- a wildcards-style community extension (spec §12.5 API surface) ---------------------------------------
@pytest.mark.parametrize("seeds", [[1, 2, 3, 4], [50, 51, 52, 53]])
def test_wildcards_style_extension_rewrites_prompts_per_seed(tmp_path, seeds):
    import random

    runtime = make_runtime(tmp_path, names=("wildcards-like",))
    registry = load_extensions(runtime)
    assert by_name(registry)["wildcards-like"].errors == []
    assert runtime.settings.get("wildcards_like_write_infotext") is True  # on_ui_settings ran at load
    params = hooks.adjust_params(GenerationParams(prompt="a __color__ cat, __no such__", batch_size=2, n_iter=2), None, registry)
    plan = fake_plan(params, registry=registry)
    plan.seeds = list(seeds)
    hooks.job_started(plan)
    colors = ["red", "green", "blue"]
    assert plan.all_prompts == [f"a {random.Random(s).choice(colors)} cat, __no such__" for s in seeds]
    assert plan.extra["Wildcard prompt"] == "a __color__ cat, __no such__"
    # the flag from preload.py points the extension elsewhere
    other = tmp_path / "other"
    other.mkdir()
    (other / "color.txt").write_text("violet\n")
    runtime.args.wildcards_dir = str(other)
    plan = fake_plan(GenerationParams(prompt="__color__"), registry=registry)
    hooks.job_started(plan)
    assert plan.all_prompts == ["violet"]
    # switched off through its own setting: prompts still rewritten, no infotext entry
    runtime.settings.set("wildcards_like_write_infotext", False, save=False)
    plan = fake_plan(GenerationParams(prompt="__color__"), registry=registry)
    hooks.job_started(plan)
    assert plan.all_prompts == ["violet"] and "Wildcard prompt" not in plan.extra


def test_shared_sd_upscalers_lists_engine_and_plugin_upscalers(tmp_path):
    load_extensions(make_runtime(tmp_path, names=("native-plugin",)))
    from modules import shared

    ups = {u.name: u for u in shared.sd_upscalers}
    assert list(ups)[:3] == ["None", "Lanczos", "Nearest"] and "Plugin double" in ups
    image = Image.new("RGB", (4, 3), (10, 20, 30))
    assert ups["Lanczos"].scaler.upscale(image, 2, ups["Lanczos"].data_path).size == (8, 6)
    assert ups["Plugin double"].scaler.upscale(image, 3, None).size == (12, 9)


def test_a_plugin_returning_bad_prompts_is_ignored_with_a_warning(tmp_path):
    from app.plugins.api import Plugin

    class Bad(Plugin):
        id = "bad"

        def on_job_start(self, info):
            info.all_prompts = ["only one"]

    registry = load_extensions(make_runtime(tmp_path, names=()))
    registry.add_plugin(Bad(), "test")
    plan = fake_plan(GenerationParams(prompt="x", batch_size=2), registry=registry)
    hooks.job_started(plan)
    assert plan.all_prompts == ["x", "x"] and "all_prompts" in plan.warnings[0]


def test_native_plugin_declaration_errors_and_routes(tmp_path):
    runtime = make_runtime(tmp_path, names=())
    ext = runtime.paths.extensions_dir
    (ext / "future").mkdir()
    (ext / "future" / "atelier_plugin.py").write_text(
        "from app.plugins.api import Plugin\nclass Future(Plugin):\n    api_version = 99\n")
    (ext / "empty").mkdir()
    (ext / "empty" / "atelier_plugin.py").write_text("X = 1\n")
    (ext / "routes").mkdir()
    (ext / "routes" / "atelier_plugin.py").write_text(
        "from app.plugins.api import ExtraField, Plugin\n"
        "class Routes(Plugin):\n"
        "    title = 'Routes'\n    kinds = ('img2img',)\n"
        "    extra_fields = (ExtraField('flag', 'Flag', 'checkbox', False),)\n"
        "    def register_routes(self, app):\n        app.paths.append('/routes/ping')\n")
    registry = load_extensions(runtime)
    exts = by_name(registry)
    assert exts["future"].errors == ["atelier_plugin.py: Future: needs plugin API version 99, this Atelier has 1"]
    assert exts["empty"].errors == ["atelier_plugin.py: defines no Plugin subclass"]
    assert [p.id for _, p in registry.plugins] == ["routes/Routes"]
    app = SimpleNamespace(paths=[])
    assert registry.run_app_started(app) == [] and app.paths == ["/routes/ping"]
    assert [(t, f.name) for t, f in registry.extra_fields("img2img")] == [("Routes", "flag")]
    assert registry.extra_fields("txt2img") == [] and registry.plugin_titles("img2img") == ["Routes"]


def test_image_save_callbacks(tmp_path):
    registry = load_extensions(make_runtime(tmp_path, names=()))
    assert compat.install() == []  # no extension here: the test makes `modules` importable itself
    from modules import script_callbacks

    seen: list[Any] = []

    def before(params):
        seen.append(("before", params.p.prompt, params.filename))
        params.pnginfo["parameters"] += ", Saved by: test"
        params.image = params.image.convert("L")

    script_callbacks.on_before_image_saved(before)
    script_callbacks.on_image_saved(lambda params: seen.append(("after", params.filename, params.pnginfo)))
    plan = fake_plan(GenerationParams(prompt="fox"), registry=registry)
    image, text = hooks.image_saving(plan, Image.new("RGB", (2, 2)), "fox\nSteps: 2")
    assert image.mode == "L" and text == "fox\nSteps: 2, Saved by: test"
    hooks.image_saved(plan, image, tmp_path / "00000-1.png", text)
    assert seen == [("before", "fox", ""), ("after", str(tmp_path / "00000-1.png"), {"parameters": text})]


def test_native_save_and_model_hooks_run_before_a1111_callbacks(tmp_path):
    """The native contract's on_image_saving / on_image_saved / on_model_loaded, then the A1111 callbacks that
    the compat layer adapts onto the same hooks; a failing plugin is reported, never raised."""
    registry = load_extensions(make_runtime(tmp_path, names=()))
    from app.plugins.compat import script_callbacks

    seen: list[Any] = []

    class Saver(Plugin):
        id = "saver"

        def on_image_saving(self, info: SaveInfo) -> None:
            seen.append(("native saving", info.kind, info.path))
            info.infotext += ", Native: 1"

        def on_image_saved(self, info: SaveInfo) -> None:
            seen.append(("native saved", info.path.name, info.infotext))

        def on_model_loaded(self, model: Any) -> None:
            seen.append(("native model", model))

    class Broken(Plugin):
        id = "broken"

        def on_model_loaded(self, model: Any) -> None:
            raise RuntimeError("no")

    registry.add_plugin(Saver(), "ext")
    registry.add_plugin(Broken(), "ext")
    script_callbacks.on_before_image_saved(lambda p: seen.append(("a1111 saving", p.pnginfo["parameters"])))
    script_callbacks.on_model_loaded(lambda m: seen.append(("a1111 model", m)))
    plan = fake_plan(GenerationParams(prompt="fox"), kind="img2img", registry=registry)
    image, text = hooks.image_saving(plan, Image.new("RGB", (2, 2)), "fox")
    hooks.image_saved(plan, image, tmp_path / "00001-2.png", text)
    hooks.model_loaded("HANDLE", registry)
    assert text == "fox, Native: 1" and plan.warnings == []
    assert seen == [("native saving", "img2img", None), ("a1111 saving", "fox, Native: 1"),
                    ("native saved", "00001-2.png", "fox, Native: 1"), ("native model", "HANDLE"),
                    ("a1111 model", "HANDLE")]


def test_compat_images_samplers_paths_devices(tmp_path):
    runtime = make_runtime(tmp_path, names=())
    load_extensions(runtime)
    assert compat.install() == []  # no extension here: the test makes `modules` importable itself
    from modules import devices, images, paths, sd_samplers

    full, txt = images.save_image(Image.new("RGB", (8, 8), (1, 2, 3)), str(tmp_path / "out"), "", 42, "a fox",
                                  "png", info="a fox\nSteps: 2, Seed: 42")
    assert txt is None and Path(full).is_file() and Path(full).parent == tmp_path / "out"
    assert Image.open(full).info["parameters"] == "a fox\nSteps: 2, Seed: 42"
    rgba = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    assert images.flatten(rgba, "#ff0000").getpixel((0, 0)) == (255, 0, 0)
    wide = Image.new("RGB", (40, 20), (9, 9, 9))
    for mode in (0, 1, 2):
        assert images.resize_image(mode, wide, 16, 16).size == (16, 16)
    assert images.resize_image(2, wide, 16, 16).getpixel((8, 0)) == (9, 9, 9)  # filled bands, not black
    names = [s.name for s in sd_samplers.all_samplers]
    assert "Euler a" in names and "DPM++ 2M" in names
    assert paths.extensions_dir == str(runtime.paths.extensions_dir) and paths.script_path == str(tmp_path)
    devices.torch_gc()


def test_compat_hashes_infotext_and_an_unprovided_module(tmp_path):
    runtime = make_runtime(tmp_path, names=())
    runtime.paths.cache_file = tmp_path / "cache.json"
    (runtime.paths.extensions_dir / "needs-hijack" / "scripts").mkdir(parents=True)
    (runtime.paths.extensions_dir / "needs-hijack" / "scripts" / "x.py").write_text(
        "from modules import xlmr\n")
    (runtime.paths.extensions_dir / "needs-hijack" / "scripts" / "y.py").write_text("import modules.sd_vae_approx\n")
    (runtime.paths.extensions_dir / "needs-hijack" / "scripts" / "z.py").write_text(
        "import ldm.modules.attention as atten\n")
    registry = load_extensions(runtime)
    error, error2, error3 = by_name(registry)["needs-hijack"].errors
    assert "xlmr" in error and "compatibility layer does not provide" in error
    assert "'modules'" in error and "app.plugins.compat" not in error  # the names users know
    assert "No module named 'modules.sd_vae_approx'" in error2 and "compatibility layer does not provide" in error2
    assert error3.startswith("scripts/z.py: unsupported: A1111's bundled CompVis ldm model code")
    assert "dependency is missing" not in error3
    from modules import generation_parameters_copypaste, hashes, infotext_utils

    file = tmp_path / "lora.bin"
    file.write_bytes(b"\0" * (2 * 1024 * 1024))
    assert hashes.sha256_from_cache(str(file), "lora/x") is None
    assert hashes.sha256(str(file), "lora/x").startswith("5647f05ec1")  # spec §13.19: 2 MiB of zeros
    assert hashes.sha256_from_cache(str(file), "lora/x").startswith("5647f05ec1")
    assert "lora/x" in json.loads((tmp_path / "cache.json").read_text())["hashes"]
    parsed = infotext_utils.parse_generation_parameters("a cat\nSteps: 20, Sampler: Euler, Size: 64x32")
    assert (parsed["Prompt"], parsed["Steps"], parsed["Size-1"], parsed["Size-2"]) == ("a cat", "20", "64", "32")
    assert generation_parameters_copypaste is infotext_utils
