"""A first run without a model explains itself: the page box, the console text and the Generate error all name the
real checkpoint folder, the supported families and the download command as it must be typed; expected errors are
logged without a traceback, bugs still with one."""

from __future__ import annotations

import logging
import shlex
import typing
from pathlib import Path

import pytest

from app.cli import parse_args
from app.firstrun import SUPPORTED_FAMILIES, download_commands, family_labels, first_run_guide, no_checkpoint_message
from app.paths import Paths

INSTALL = Path("/opt/atelier")


# -- the guide's text -------------------------------------------------------------------------------------------------
def test_download_command_as_typed_from_the_install_folder() -> None:
    lines = download_commands(INSTALL, INSTALL / "models", python="/opt/atelier/venv/bin/python", install_dir=INSTALL)
    assert lines == ["cd /opt/atelier", "venv/bin/python -m app.devtools.download sd15"]


def test_download_command_names_other_folders_and_quotes_them() -> None:
    data = Path("/srv/my data")
    lines = download_commands(data, Path("/mnt/models"), python="/usr/bin/python3", install_dir=INSTALL)
    assert lines[0] == "cd /opt/atelier"
    assert shlex.split(lines[1]) == ["/usr/bin/python3", "-m", "app.devtools.download", "sd15",
                                     "--data-dir", "/srv/my data", "--models-dir", "/mnt/models"]
    # a data dir of its own with its default models folder: only --data-dir
    assert shlex.split(download_commands(data, data / "models", python="/usr/bin/python3", install_dir=INSTALL)[1])[
        -2:] == ["--data-dir", "/srv/my data"]


def test_download_command_parses_with_the_real_tool() -> None:
    """The printed command's arguments are ones the download tool accepts (names from its own parser)."""
    from app.devtools.download import DOWNLOADS, build_parser

    argv = shlex.split(download_commands(Path("/d"), Path("/m"), python="/x/python", install_dir=INSTALL)[1])[3:]
    args = build_parser().parse_args(argv)
    assert args.model in DOWNLOADS and args.data_dir == "/d" and args.models_dir == "/m"


def test_guide_text_and_no_download_flag(tmp_path: Path) -> None:
    paths = Paths.from_data_dir(tmp_path)
    guide = first_run_guide(paths, python=str(tmp_path / "venv" / "bin" / "python"), install_dir=tmp_path)
    text = guide.text()
    folder = str(tmp_path / "models" / "Stable-diffusion")
    assert guide.folder == Path(folder) and folder in text
    assert "SD 1.x, SD 2.x, SDXL" in text and family_labels() == "SD 1.x, SD 2.x, SDXL"
    assert "venv/bin/python -m app.devtools.download sd15" in text
    quiet = first_run_guide(paths, no_download=True)
    assert quiet.download is None and "download" not in quiet.text()


def test_families_cover_every_family_the_loader_detects() -> None:
    """One list for users: every family the loader can return belongs to a line of SUPPORTED_FAMILIES (a new family
    in the loader must add its line there)."""
    from app.models.load.config_infer import ModelFamily

    keys = [f.key for f in SUPPORTED_FAMILIES]
    for family in typing.get_args(ModelFamily):
        assert any(family.startswith(k) for k in keys), f"{family} is not in app.firstrun.SUPPORTED_FAMILIES"


def test_no_checkpoint_message_is_absolute_and_plain(tmp_path: Path) -> None:
    msg = no_checkpoint_message(tmp_path / "models" / "Stable-diffusion")
    assert str(tmp_path / "models" / "Stable-diffusion") in msg and "Error" not in msg
    assert "SDXL" in msg


# -- the page ---------------------------------------------------------------------------------------------------------
def _runtime(data: Path, *extra: str):
    from app.runtime import Runtime

    runtime = Runtime(parse_args(["--data-dir", str(data), *extra], environ={}))
    runtime.start()
    return runtime


def test_page_box_shows_the_guide_until_a_checkpoint_exists(tmp_path: Path) -> None:
    from app.ui import build_blocks
    from app.ui.firstrun import current_box

    runtime = _runtime(tmp_path / "data")
    try:
        demo, _ui = build_blocks(runtime)
        components = demo.get_config_file()["components"]
        box = [c for c in components if c.get("props", {}).get("elem_id") == "atelier_first_run"]
        assert len(box) == 1 and box[0]["props"]["visible"] is True
        shown_anywhere = [c for c in components if "No model yet" in str(c.get("props", {}).get("value", ""))]
        assert shown_anywhere == box  # one box, not a second copy
        shown = box[0]["props"]["value"]
        assert str(runtime.paths.ckpt_dirs[0]) in shown and "SDXL" in shown
        assert "-m app.devtools.download sd15" in shown
        (runtime.paths.ckpt_dirs[0] / "model.safetensors").write_bytes(b"x")
        update = current_box(runtime)  # the next page load
        assert update["visible"] is False
    finally:
        runtime.shutdown()


def test_page_box_without_download_offer(tmp_path: Path) -> None:
    from app.ui.firstrun import current_box

    runtime = _runtime(tmp_path / "data", "--no-download-sd-model")
    try:
        update = current_box(runtime)
        assert update["visible"] is True and "app.devtools.download" not in update["value"]
    finally:
        runtime.shutdown()


def test_generate_without_a_model_says_where_to_put_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The job fails with the plain message (absolute folder, no class name) and one log line, no traceback."""
    from app.params import GenerationParams
    from app.ui.common import stream_job

    runtime = _runtime(tmp_path / "data", "--test-server")
    try:
        with caplog.at_level(logging.INFO, logger="app.jobs.service"):
            updates = list(stream_job(runtime.service, GenerationParams(prompt="a cat", steps=2, width=64,
                                                                        height=64), "txt2img", poll=0.05))
        last = updates[-1]
        assert last.done and last.error
        assert str(runtime.paths.ckpt_dirs[0]) in last.error and "ModelNotFoundError" not in last.error
        assert "ModelNotFoundError" not in last.info and "no checkpoint found" in last.info
        records = [r for r in caplog.records if r.name == "app.jobs.service" and "failed" in r.getMessage()]
        assert len(records) == 1 and records[0].exc_info is None
    finally:
        runtime.shutdown()


def test_a_genuine_bug_still_logs_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    from app.jobs.service import JobService

    def broken(ctx):
        raise KeyError("internal")

    service = JobService(runners={"broken": broken})
    try:
        with caplog.at_level(logging.INFO, logger="app.jobs.service"):
            job = service.submit(None, kind="broken")
            assert job.join(30)
        assert job.error == "KeyError: 'internal'"
        records = [r for r in caplog.records if r.name == "app.jobs.service" and "failed" in r.getMessage()]
        assert len(records) == 1 and records[0].exc_info is not None
    finally:
        service.shutdown()
