"""Issue 12, findings 3 and 6: files are written only inside the output folders, and the state the server reports is
the state it is in. Each test plays the attacker (or the failing disk) through the public HTTP routes of an
in-process server on the tiny sd1 model, then checks nothing landed outside, nothing changed silently, and the
server keeps serving."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import app.settings.store as settings_module
from app.cli import parse_args
from app.runtime import Runtime

FAST = {"steps": 1, "width": 64, "height": 64, "sampler_name": "Euler", "save_images": True}

LOCKED_KEYS = [
    "outdir_samples", "outdir_txt2img_samples", "outdir_img2img_samples", "outdir_extras_samples", "outdir_grids",
    "outdir_txt2img_grids", "outdir_img2img_grids", "outdir_save", "outdir_init_images",
    "samples_filename_pattern", "directories_filename_pattern", "temp_dir",
]


def _runtime(data: Path, models: Path, *flags: str) -> Runtime:
    return Runtime(parse_args(["--data-dir", str(data), "--models-dir", str(models), "--nowebui", "--test-server",
                               *flags], environ={}))


@pytest.fixture()
def serve(tmp_path: Path, tiny_data_dir: Path):
    """`serve(*flags)` → (client, runtime, data dir): a fresh data dir, the shared tiny models, API only."""
    runtimes: list[Runtime] = []

    def start(*flags: str, data: Path | None = None) -> tuple[TestClient, Runtime, Path]:
        data = data or tmp_path / f"data{len(runtimes)}"
        rt = _runtime(data, tiny_data_dir / "models", *flags)
        runtimes.append(rt)
        return TestClient(rt.build_app()), rt, data

    yield start
    for rt in runtimes:
        rt.shutdown()


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


# -- finding 3: folder settings are locked -----------------------------------------------------------------------------
@pytest.mark.parametrize("key", LOCKED_KEYS)
def test_options_cannot_point_a_folder_setting_elsewhere_under_hide_ui_dir_config(serve, tmp_path, key):
    client, rt, data = serve("--hide-ui-dir-config")
    assert client.post("/sdapi/v1/options", json={"jpeg_quality": 81}).status_code == 200  # config.json exists now
    config_before = (data / "config.json").read_bytes()
    evil = tmp_path / "evil"
    r = client.post("/sdapi/v1/options", json={"jpeg_quality": 55, key: str(evil)})
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["error"] == "SettingLockedError"
    assert key in body["errors"] and "--hide-ui-dir-config" in body["errors"] and "nothing was changed" in body["errors"]
    # all or nothing: the valid jpeg_quality of the same request is not applied either
    assert (data / "config.json").read_bytes() == config_before
    current = client.get("/sdapi/v1/options").json()
    assert current["jpeg_quality"] == 81 and current[key] != str(evil)
    assert not evil.exists()
    # a client that posts the whole GET /options object back (locked values unchanged) still works, as in A1111
    current["jpeg_quality"] = 60
    assert client.post("/sdapi/v1/options", json=current).status_code == 200
    assert json.loads((data / "config.json").read_text())["jpeg_quality"] == 60


def test_listening_without_a_password_locks_folder_settings(serve, tmp_path):
    evil = str(tmp_path / "evil")
    client, _, _ = serve("--listen")
    r = client.post("/sdapi/v1/options", json={"outdir_txt2img_samples": evil})
    assert r.status_code == 403 and "outdir_txt2img_samples" in r.json()["errors"]
    assert "--api-auth" in r.json()["errors"]
    assert client.get("/sdapi/v1/options").json()["outdir_txt2img_samples"] == "outputs/txt2img-images"

    # with a password the authenticated owner may move the folder (and on loopback, as before)
    import base64

    auth = {"Authorization": "Basic " + base64.b64encode(b"owner:pw").decode()}
    client, _, _ = serve("--listen", "--api-auth", "owner:pw")
    assert client.post("/sdapi/v1/options", json={"outdir_txt2img_samples": evil}).status_code == 401
    assert client.post("/sdapi/v1/options", json={"outdir_txt2img_samples": evil}, headers=auth).status_code == 200
    client, _, _ = serve()
    assert client.post("/sdapi/v1/options", json={"outdir_txt2img_samples": evil}).status_code == 200


def test_override_settings_cannot_redirect_a_job_outside_outputs(serve, tmp_path):
    client, _, data = serve("--hide-ui-dir-config")
    evil = tmp_path / "evil"
    for overrides in ({"outdir_txt2img_samples": str(evil)}, {"samples_filename_pattern": "../../../evil-[seed]"}):
        r = client.post("/sdapi/v1/txt2img", json={**FAST, "prompt": "x", "override_settings": overrides,
                                                    "override_settings_restore_afterwards": False})
        assert r.status_code == 422, r.text
        assert next(iter(overrides)) in r.json()["errors"] and "locked" in r.json()["errors"]
    assert not evil.exists() and not list(tmp_path.rglob("evil-*"))
    assert client.get("/sdapi/v1/options").json()["samples_filename_pattern"] == ""


# -- finding 3: hostile file name patterns and prompts stay inside the output folder --------------------------------
@pytest.fixture(scope="module")
def open_server(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One loopback server (folder settings not locked: the owner may set any pattern) shared by the pattern tests;
    the model loads once. The data dir sits two levels deep so escapes have somewhere to land."""
    root = tmp_path_factory.mktemp("patterns")
    data = root / "a" / "b" / "data"
    styles = data / "styles.csv"
    styles.parent.mkdir(parents=True)
    styles.write_text("name,prompt,negative_prompt\n../../../../styled-escape,\"{prompt}, nice\",\n", encoding="utf-8")
    rt = _runtime(data, tiny_data_dir / "models")
    client = TestClient(rt.build_app())
    yield client, rt, root, data
    rt.shutdown()


def _generate(client: TestClient, options: dict, **body) -> dict:
    defaults = {"samples_filename_pattern": "", "directories_filename_pattern": "[date]", "save_to_dirs": True,
                "save_images_add_number": True}
    r = client.post("/sdapi/v1/options", json={**defaults, **options})
    assert r.status_code == 200, r.text
    r = client.post("/sdapi/v1/txt2img", json={**FAST, "seed": 7, **body})
    assert r.status_code == 200, r.text
    assert len(r.json()["images"]) == 1
    return json.loads(r.json()["info"])


def _assert_only_inside_outputs(root: Path, data: Path, before: set[str], needle: str) -> None:
    new = _files(root) - before
    outputs = str((data / "outputs").relative_to(root))
    assert new, "the image was not saved at all"
    queue = str((data / "jobs").relative_to(root))  # the durable job queue: jobs.sqlite3 (+ -wal/-shm) and jobs/
    outside = [f for f in new if not f.startswith(outputs + os.sep) and not f.endswith(("params.txt", ".json"))
               and not f.startswith(queue)]
    assert outside == [], f"files written outside outputs/: {outside}"
    assert any(needle in f for f in new), f"no saved file carries {needle!r}: {sorted(new)}"


@pytest.mark.parametrize("add_number", [True, False])
@pytest.mark.parametrize(("options", "needle"), [
    ({"samples_filename_pattern": "../../../../escaped-[seed]"}, "escaped-7"),
    ({"samples_filename_pattern": "/tmp/absolute-[seed]"}, "absolute-7"),
    ({"samples_filename_pattern": "C:\\Windows\\drive-[seed]"}, "drive-7"),
    ({"samples_filename_pattern": "..\\..\\..\\back-[seed]"}, "back-7"),
    ({"directories_filename_pattern": "../../../../dir-escape", "samples_filename_pattern": "d-[seed]"}, "dir-escape"),
    ({"directories_filename_pattern": "/tmp/abs-dir", "samples_filename_pattern": "a-[seed]"}, "abs-dir"),
])
def test_filename_patterns_never_leave_the_output_folder(open_server, options, needle, add_number):
    client, _, root, data = open_server
    before = _files(root)
    info = _generate(client, {**options, "save_images_add_number": add_number}, prompt="a cat")
    assert "save_errors" not in info
    _assert_only_inside_outputs(root, data, before, needle)
    assert not Path("/tmp/absolute-7.png").exists() and not Path("/tmp/abs-dir").exists()


@pytest.mark.parametrize(("options", "body", "needle"), [
    ({"samples_filename_pattern": "[prompt]", "save_images_add_number": False}, {"prompt": "../../../../../pwned"},
     "pwned"),
    ({"samples_filename_pattern": "[prompt_spaces]"}, {"prompt": "..\\..\\..\\..\\win"}, "win"),
    ({"directories_filename_pattern": "[prompt_spaces]", "samples_filename_pattern": "p-[seed]"},
     {"prompt": "../../../../../promptdir"}, "promptdir"),
    ({"directories_filename_pattern": "[styles]", "samples_filename_pattern": "s-[seed]"},
     {"prompt": "x", "styles": ["../../../../styled-escape"]}, "styled-escape"),
    ({"samples_filename_pattern": "[model_name]-[prompt_words]"}, {"prompt": "/etc/passwd"}, "etc passwd"),
])
def test_values_substituted_into_patterns_stay_inside(open_server, options, body, needle):
    client, _, root, data = open_server
    before = _files(root)
    _generate(client, options, **body)
    _assert_only_inside_outputs(root, data, before, needle)


# -- finding 6: a settings save that fails changes nothing -------------------------------------------------------------
@pytest.mark.parametrize(("code", "status"), [(errno.ENOSPC, 507), (errno.EACCES, 500)])
def test_settings_save_failure_leaves_settings_unchanged(serve, monkeypatch, code, status):
    client, rt, data = serve()
    assert client.post("/sdapi/v1/options", json={"jpeg_quality": 70}).status_code == 200
    config_before = (data / "config.json").read_bytes()
    real_write = settings_module.write_json_atomic

    def full_disk(path, obj):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(settings_module, "write_json_atomic", full_disk)
    r = client.post("/sdapi/v1/options", json={"jpeg_quality": 42, "samples_format": "jpg"})
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == "SettingsSaveError"
    assert os.strerror(code) in body["errors"] and "config.json" in body["errors"] and "no setting was changed" in body["errors"]
    # neither memory nor disk changed: the settings the server reports are the settings on disk
    options = client.get("/sdapi/v1/options").json()
    assert (options["jpeg_quality"], options["samples_format"]) == (70, "png")
    assert rt.settings.get("jpeg_quality") == 70
    assert (data / "config.json").read_bytes() == config_before

    monkeypatch.setattr(settings_module, "write_json_atomic", real_write)  # the disk has room again
    assert client.post("/sdapi/v1/options", json={"jpeg_quality": 42}).status_code == 200
    assert json.loads((data / "config.json").read_text())["jpeg_quality"] == 42


def test_settings_save_failure_changes_nothing_in_memory_or_listeners(tmp_path, monkeypatch):
    """The same guarantee for the UI's Apply settings and quicksettings, which call Settings.set_many directly."""
    from app.settings import Settings
    from app.settings.schema import SettingsSaveError

    s = Settings.load(tmp_path / "config.json")
    seen: list[object] = []
    s.on_change("sd_vae", lambda key, value: seen.append(value))
    monkeypatch.setattr(settings_module, "write_json_atomic",
                        lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(SettingsSaveError, match="No space left"):
        s.set_many({"sd_vae": "None", "jpeg_quality": 33})
    assert (s["sd_vae"], s["jpeg_quality"], seen) == ("Automatic", 80, [])
    assert not (tmp_path / "config.json").exists()


# -- finding 6: images that cannot be saved are returned, and the client is told -------------------------------------
def test_failed_image_save_is_reported_in_info_and_image_returned(open_server):
    client, _, root, data = open_server
    folder = data / "outputs" / "txt2img-images"
    moved = folder.with_name("txt2img-images.moved")
    if folder.exists():
        folder.rename(moved)
    folder.write_text("a file where the output folder should be: writing below it fails")  # works as root too
    try:
        info = _generate(client, {}, prompt="unsaved")
        assert info["save_errors"] and "could not save image" in info["save_errors"][0]
        assert "txt2img-images" in info["save_errors"][0]
        assert info["infotexts"] and info["all_seeds"] == [7]  # the A1111 keys are all still there
    finally:
        folder.unlink()
        if moved.exists():
            moved.rename(folder)
    info = _generate(client, {}, prompt="saved again")
    assert "save_errors" not in info


# -- finding 6: temp files of interrupted atomic writes are removed at start ----------------------------------------
def test_temp_files_of_interrupted_writes_are_cleaned_at_start(serve, tmp_path):
    data = tmp_path / "data"
    day = data / "outputs" / "txt2img-images" / "2024-01-01"
    custom = tmp_path / "my-pictures"  # an outdir_* the owner set in config.json
    day.mkdir(parents=True)
    custom.mkdir()
    (data / "config.json").write_text(json.dumps({"outdir_img2img_samples": str(custom)}))
    old = time.time() - 3600
    stale = [
        data / ".config.json.k2x9_q0a.tmp",  # write_text_atomic (mkstemp) of config.json
        data / ".styles.csv.abcd1234.tmp",
        data / ".ui-config.json.zz11yy22.tmp",
        day / f".{'a1' * 16}.tmp",  # save_image
        day / f".00001-7.txt.{'0f' * 16}.tmp",  # save_image_file / params next to an image
        day / ".00002-8.txt.q1w2e3r4.tmp",
        custom / f".{'bc' * 16}.tmp",
    ]
    keep = [
        data / ".notes.txt.abcd1234.tmp",  # not a file we write in the data dir
        data / "mine.tmp",
        data / ".hidden.tmp",
        day / "00000-1.png",
        day / ".not-ours.tmp",
        tmp_path / f".{'a1' * 16}.tmp",  # outside every folder we write
    ]
    young = day / f".{'cd' * 16}.tmp"  # may belong to a write in progress (another instance)
    for path in [*stale, *keep, young]:
        path.write_bytes(b"partial")
    for path in [*stale, *keep]:
        os.utime(path, (old, old))

    client, rt, _ = serve(data=data)
    assert [p for p in stale if p.exists()] == []
    assert [p for p in keep if not p.exists()] == [] and young.exists()
    assert client.get("/sdapi/v1/options").json()["outdir_img2img_samples"] == str(custom)  # config.json intact


# -- finding 6: eta_relative never goes negative ----------------------------------------------------------------------
def test_eta_relative_never_negative(serve):
    client, rt, _ = serve()
    gate = threading.Event()
    reached = threading.Event()

    def last_step_runner(ctx):
        from PIL import Image

        from app.jobs.job import JobResult

        ctx.begin(job_count=1, sampling_steps=4)
        ctx.set_job_no(0)
        ctx.step(4, 4)  # the last step: A1111's formula gives progress 1.01
        time.sleep(0.2)  # time passes after the last step, so the raw formula's ETA would be clearly negative
        reached.set()
        gate.wait(30)
        return JobResult(images=[Image.new("RGB", (8, 8))], infotexts=["x"], seeds=[1], subseeds=[1],
                         all_prompts=["x"], all_negative_prompts=[""])

    rt.service.register_runner("txt2img", last_step_runner)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(r=client.post("/sdapi/v1/txt2img", json={"prompt": "x"})))
    worker.start()
    try:
        assert reached.wait(30)
        prog = client.get("/sdapi/v1/progress").json()
        assert prog["progress"] == 1.0
        assert prog["eta_relative"] >= 0.0
    finally:
        gate.set()
        worker.join(30)
    assert result["r"].status_code == 200
    idle = client.get("/sdapi/v1/progress").json()
    assert idle["eta_relative"] == 0.0


def test_eta_relative_formula_edges():
    from app.jobs.info import eta_relative

    assert eta_relative(10.0, 0.5) == pytest.approx(10.0)
    assert eta_relative(10.0, 1.01) == 0.0 and eta_relative(10.0, 3.0) == 0.0
    assert eta_relative(-5.0, 0.5) == 0.0  # the clock went back
    assert eta_relative(10.0, 0.0) == pytest.approx(990.0)  # progress below 1 % counts as 1 %
    assert eta_relative(float("nan"), float("nan")) == 0.0


# -- finding 3 through the web UI: the Settings tab's Apply button ---------------------------------------------------
def test_settings_tab_cannot_change_a_locked_folder_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio-uploads"))
    data = tmp_path / "data"
    rt = Runtime(parse_args(["--data-dir", str(data), "--hide-ui-dir-config"], environ={}))
    client = TestClient(rt.build_app())
    evil = tmp_path / "evil"
    try:
        with client:
            cfg = client.get("/config").json()
            by_id = {c["id"]: c for c in cfg["components"]}
            button = next(c["id"] for c in cfg["components"] if c.get("props", {}).get("elem_id") == "settings_submit")
            dep = next(d for d in cfg["dependencies"] if [button, "click"] in [list(t) for t in d["targets"]])
            # The last input is the page's record of what it was shown (a gr.State, no elem_id).
            keys = [by_id[i]["props"].get("elem_id", "").removeprefix("setting_") for i in dep["inputs"]]
            assert "outdir_txt2img_samples" in keys
            target = by_id[dep["inputs"][keys.index("outdir_txt2img_samples")]]
            assert target["props"].get("interactive") is False  # shown read-only, with the reason
            assert "--hide-ui-dir-config" in target["props"].get("info", "")
            values = [by_id[i]["props"].get("value") for i in dep["inputs"]]
            values[keys.index("outdir_txt2img_samples")] = str(evil)
            values[keys.index("jpeg_quality")] = 33
            r = client.post(f"/gradio_api/run/{dep['api_name']}", json={"data": values})
            assert r.status_code == 200, r.text
            message = r.json()["data"][0]
            assert "outdir_txt2img_samples" in message and "locked" in message
            assert rt.settings.get("outdir_txt2img_samples") == "outputs/txt2img-images"
            assert rt.settings.get("jpeg_quality") == 80  # all or nothing
            assert not (data / "config.json").exists() and not evil.exists()
            assert client.get("/config").status_code == 200  # still serving
    finally:
        rt.shutdown()


# -- the request limits and the URL switches are locked like folder settings --------------------------------------------
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_request_body_mb", 0),  # 0 = no limit: a client must not lift the body limit
        ("api_max_prompt_length", 0),
        ("max_infotext_length", 0),
        ("api_max_image_megapixels", 0),
        ("api_max_request_megapixels", 0),
        ("api_image_decode_concurrency", 64),
        ("api_forbid_local_requests", False),  # would open the server to requests against its own network
        ("api_enable_requests", False),
    ],
)
def test_a_client_cannot_lift_the_server_limits_when_folders_are_locked(serve, key, value):
    client, rt, data = serve("--listen")
    before = client.get("/sdapi/v1/options").json()[key]
    r = client.post("/sdapi/v1/options", json={key: value})
    assert r.status_code == 403, r.text
    assert key in r.json()["errors"] and "server limit" in r.json()["errors"]
    assert client.get("/sdapi/v1/options").json()[key] == before
    assert not (data / "config.json").exists() or key not in json.loads((data / "config.json").read_text())
    assert client.get("/sdapi/v1/options").status_code == 200


def test_limits_stay_changeable_by_the_owner_on_loopback(serve):
    client, _, data = serve()
    assert client.post("/sdapi/v1/options", json={"api_max_prompt_length": 1000}).status_code == 200
    assert json.loads((data / "config.json").read_text())["api_max_prompt_length"] == 1000


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_float_setting_never_stores_nan_or_infinity(tmp_path, bad):
    """Even past the API's own check (an extension, the UI), a non-finite float never reaches config.json."""
    store = settings_module.Settings(tmp_path / "config.json")
    key = next(k for k, info in store._infos.items() if info.value_type() is float)
    with pytest.raises(ValueError, match="finite"):
        store.set(key, bad)
    assert not (tmp_path / "config.json").exists() or "NaN" not in (tmp_path / "config.json").read_text()


@pytest.mark.parametrize(("key", "value"), [("max_request_body_mb", -5), ("api_image_decode_concurrency", 0)])
def test_a_limit_below_its_minimum_is_refused(serve, key, value):
    """A negative body limit or zero decode slots would break every request; the owner gets a 422 naming it."""
    client, _, data = serve()
    before = client.get("/sdapi/v1/options").json()[key]
    r = client.post("/sdapi/v1/options", json={key: value})
    assert r.status_code == 422, r.text
    assert key in r.text and "minimum" in r.text
    assert client.get("/sdapi/v1/options").json()[key] == before
    assert not (data / "config.json").exists() or key not in json.loads((data / "config.json").read_text())
