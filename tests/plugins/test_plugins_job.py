"""Extensions in real jobs: a tiny txt2img through ``JobService`` with an A1111-style extension, a native
plugin and a selectable script that calls ``process_images``. Each test needs the engine to call the
plugin hooks (``app/plugins/__init__.py`` "Wiring"); a missing call site fails the test and names it."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import pytest

from app.params import GenerationParams, ScriptParams, SeedParams
from app.plugins import load_extensions
from app.plugins.compat import current as compat_current

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "extensions"


def wired(*calls: tuple[str, str]):
    """Check the documented call sites before the test runs: a hook that lost its call site is a failure."""
    def check(test):
        def run(*args, **kwargs):
            root = Path(__file__).resolve().parents[2]
            missing = [f"{m} does not call {c}" for m, c in calls
                       if c not in (root / (m.replace(".", "/") + ".py")).read_text("utf-8")]
            assert not missing, "; ".join(missing) + " (Wiring list in app/plugins/__init__.py)"
            return test(*args, **kwargs)

        return functools.wraps(test)(run)

    return check


@pytest.fixture()
def service(tiny_data_dir, tmp_path):
    from app.engine.modes.runners import RUNNERS
    from app.jobs.service import JobService
    from app.models.catalog.index import Catalog
    from app.models.embeddings import EmbeddingDatabase
    from app.models.manager import ModelManager
    from app.paths import Paths
    from app.settings import Settings

    paths = Paths.from_data_dir(tiny_data_dir)
    settings = Settings(None)
    settings.set("outdir_txt2img_samples", str(tmp_path / "samples"), save=False)
    manager = ModelManager(Catalog(paths), settings, None, embeddings=EmbeddingDatabase(paths.embeddings_dirs),
                           paths=paths)
    for name in ("a1111-simple", "native-plugin", "selectable", "prompt-writer"):
        shutil.copytree(FIXTURES / name, tmp_path / "extensions" / name)
    previous = compat_current.current()  # the A1111 layer's view (script_callbacks below register into it)
    manager.plugins = load_extensions(None, extensions_dir=tmp_path / "extensions", settings=settings)
    svc = JobService(manager, settings, paths, runners=RUNNERS)
    svc.start()
    yield svc
    svc.shutdown(wait=True, timeout=30)
    compat_current.set_current(previous)


def _params(**kw) -> GenerationParams:
    base = dict(prompt="a cat", steps=3, width=64, height=64, sampler_name="Euler", checkpoint="tiny-sd1",
                save_images=False, save_grid=False, seed=SeedParams(seed=77))
    base.update(kw)
    return GenerationParams(**base)


@wired(("app.engine.prepare", "hooks.adjust_params(params, kind, hooks.registry_of(manager))"), ("app.engine.prepare", "hooks.job_started"),
       ("app.engine.outputs", "hooks.after_image"))
def test_txt2img_job_runs_extension_hooks(service):
    from app.infotext.parse import parse_generation_parameters

    result = service.submit(_params(extras={"max_steps": 2}), kind="txt2img").wait(timeout=300)
    text = result.infotexts[0]
    fields = parse_generation_parameters(text)
    assert fields["Prompt"] == "a cat, stamped"  # process(p) rewrote all_prompts
    assert fields["Stamp"] == "1 prompts, seed 77" and fields["Steps"] == "2"  # native adjust_params capped steps
    assert result.images[0].getpixel((0, 0)) == (255, 0, 0)  # postprocess_image
    assert any("failing" in w and "boom" in w for w in result.warnings)  # a failing plugin did not fail the job


@wired(("app.engine.sampling.setup", "hooks.on_step"))
def test_plugin_on_step_can_interrupt(service):
    job = service.submit(_params(steps=4, n_iter=2, extras={"stop_at": 1}), kind="txt2img")
    result = job.wait(timeout=300)
    assert result.interrupted and len(result.images) <= 1


@wired(("app.engine.modes.runners", "run_script_job(ctx)"))
def test_selectable_script_job_with_process_images(service):
    result = service.submit(_params(script=ScriptParams("Twice", [5])), kind="txt2img").wait(timeout=300)
    assert len(result.images) == 2 and result.seeds == [77, 82]
    assert result.images[0].tobytes() != result.images[1].tobytes()


@wired(("app.engine.outputs", "hooks.job_finished"))
def test_postprocess_runs_at_the_end_of_a_job(service):
    import sys

    result = service.submit(_params(batch_size=2), kind="txt2img").wait(timeout=300)
    stamp = next(p.script for _, p in service.manager.plugins.plugins if hasattr(p, "script"))
    assert sys.modules[type(stamp).__module__].POSTPROCESSED[-1] == (2, 77)
    assert len(result.images) == 2


@wired(("app.engine.outputs", "hooks.before_write"), ("app.engine.outputs", "hooks.image_saved"))
def test_saving_an_image_runs_the_save_hooks(service, tmp_path):
    from PIL import Image

    from app.infotext.storage import read_info_from_image
    from app.plugins.compat import script_callbacks

    seen = []

    def before(save):
        save.pnginfo["parameters"] += ", Saved by: test"

    script_callbacks.on_before_image_saved(before)
    script_callbacks.on_image_saved(lambda save: seen.append((save.filename, save.pnginfo["parameters"])))
    result = service.submit(_params(save_images=True), kind="txt2img").wait(timeout=300)
    assert len(seen) == 1
    path, text = seen[0]
    assert tmp_path / "samples" in Path(path).parents and text.endswith(", Saved by: test")
    with Image.open(path) as saved:
        assert read_info_from_image(saved)[0] == text  # the file holds what the callback wrote
    assert result.images


@wired(("app.engine.outputs", "hooks.before_write"))
def test_before_image_saved_knows_the_file_name_before_it_is_written(service, tmp_path):
    """The prompt-writer fixture (sd-dynamic-prompts' .csv option): `ImageSaveParams.filename` is the final file,
    announced before the file exists; its .csv lands next to each image."""
    import sys

    result = service.submit(_params(save_images=True, batch_size=2, prompt="a fox", negative_prompt="blur"),
                            kind="txt2img").wait(timeout=300)
    seen = sys.modules[next(m for m in sys.modules if m.endswith("prompt_writer"))].SEEN[-2:]
    files = sorted((tmp_path / "samples").rglob("*.png"))
    assert len(result.images) == 2 and [name for name, _ in seen] == [str(f) for f in files]
    assert [existed for _, existed in seen] == [False, False]  # told before the image was written
    for f in files:
        assert f.with_suffix(".csv").read_text().splitlines() == ["positive_prompt,negative_prompt", "a fox,blur"]


@wired(("app.models.manager", "hooks.model_loaded(handle, self.plugins)"))
def test_loading_a_checkpoint_runs_on_model_loaded(service):
    seen = []
    service.manager.plugins.add_callback("model_loaded", seen.append, extension="test")
    service.submit(_params(), kind="txt2img").wait(timeout=300)  # the fixture's manager has loaded nothing yet
    assert len(seen) == 1 and "tiny-sd1" in seen[0].title
