"""Settings-bound controls in headless Chromium against the real app (with --api) on the tiny SD1 model: the Settings
tab and the quicksettings row show the saved values after a reload and after a change through the API, Apply
writes only what the user changed, and the search box filters the settings across sections (issue 15)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.browser.support import AppServer
from tests.browser.test_ui_browser import select_tab, set_number
from tests.helpers import wait_until

ApiServer = AppServer  # the app with --api, so a test can change settings the way a client does

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    data = tmp_path_factory.mktemp("settings-browser-data")
    shutil.copytree(tiny_data_dir / "models", data / "models", ignore=shutil.ignore_patterns("tiny-sd2v*", "tiny-sdxl*"))
    srv = ApiServer(data, "--api")
    srv.start()
    # The warm-up loads the checkpoint and records its hash (sd_checkpoint_hash) after the page already answers.
    wait_until(lambda: bool(srv.api("/sdapi/v1/options").get("sd_checkpoint_hash")), timeout=120, interval=0.5,
               message="the checkpoint is loaded")
    yield srv
    srv.stop()


@pytest.fixture
def page(browser, server: ApiServer):
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    open_page(pg, server)
    yield pg
    pg.close()


def open_page(pg, server: ApiServer, reload: bool = False) -> None:
    """Load (or reload) the page and wait for its first settings refresh (the load event), as a user's first look
    would."""
    if reload:
        pg.reload()
    else:
        pg.goto(server.url)
    pg.wait_for_selector("#setting_CLIP_stop_at_last_layers input[type=number]", timeout=60_000)
    pg.wait_for_function("(window.atelierOptionsSyncs || 0) > 0", timeout=30_000)


def number_field(elem_id: str) -> str:
    return f"#{elem_id} input[type=number]"


def wait_value(pg, selector: str, expected: str, timeout: float = 20_000) -> None:
    """Wait until the input at `selector` shows `expected` (the page refreshes the fields after it is shown)."""
    pg.wait_for_function("([s, v]) => { const n = document.querySelector(s); return n && n.value === v; }",
                         arg=[selector, expected], timeout=timeout)


def open_settings(pg, section: str | None = None) -> None:
    """Select the Settings tab (and a section). Selecting a top-level tab refreshes the settings-bound fields; the
    test waits for that refresh, as its answer would replace what is typed before it arrives."""
    current = pg.locator("#tabs [role=tab][aria-selected=true]").first.inner_text().strip()
    if current != "Settings":
        syncs = pg.evaluate("window.atelierOptionsSyncs || 0")
        select_tab(pg, "Settings")
        pg.wait_for_function("(n) => (window.atelierOptionsSyncs || 0) > n", arg=syncs, timeout=30_000)
    if section is not None:
        pg.locator("#settings").get_by_role("tab", name=section, exact=True).click()


def apply(pg) -> str:
    """Click Apply settings; returns the summary it shows (which must differ from the one shown before)."""
    summary = "document.querySelector('#settings_result p, #settings_result .atelier-error')"
    before = pg.evaluate(f"(() => {{ const n = {summary}; return n ? n.innerText : ''; }})()")
    pg.click("#settings_submit")
    pg.wait_for_function(f"(b) => {{ const n = {summary}; return n && n.innerText.trim() !== '' && n.innerText !== b; }}",
                         arg=before, timeout=30_000)
    return pg.inner_text("#settings_result")


def edit_number(pg, elem_id: str, value: str) -> None:
    """Type into a slider's number box as a user does, and wait until the slider itself follows: gradio hands the
    value on a moment after Enter, and a user clicks Apply or another tab later than a script would."""
    set_number(pg, elem_id, value)
    pg.wait_for_function("([id, v]) => { const r = document.querySelector(`#${id} input[type=range]`); "
                         "return r && r.value === v; }", arg=[elem_id, value], timeout=20_000)
    pg.wait_for_timeout(300)


def search_for(pg, text: str) -> None:
    """Type into the search box as a user does (gradio's input event follows key presses, not a scripted fill)."""
    box = pg.locator("#settings_search input").first
    box.click()
    box.press("Control+A")
    box.press("Backspace")
    if text:
        box.press_sequentially(text)


def test_settings_field_shows_the_saved_value_and_apply_writes_only_the_edit(browser, server: ApiServer) -> None:
    checkpoint_hash = server.api("/sdapi/v1/options")["sd_checkpoint_hash"]
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    open_page(pg, server)
    open_settings(pg)
    jpeg = number_field("setting_jpeg_quality")
    wait_value(pg, jpeg, "80")
    edit_number(pg, "setting_jpeg_quality", "91")
    summary = apply(pg)
    assert "1 settings changed: jpeg_quality" in summary, summary
    assert server.config()["jpeg_quality"] == 91
    open_page(pg, server, reload=True)
    open_settings(pg)
    wait_value(pg, jpeg, "91")
    # Tick another option and Apply: jpeg_quality and the recorded checkpoint hash stay as saved.
    pg.locator("#setting_save_txt input[type=checkbox]").check()
    summary = apply(pg)
    assert "1 settings changed: save_txt" in summary, summary
    config = server.config()
    assert config["jpeg_quality"] == 91 and config["save_txt"] is True
    assert config["sd_checkpoint_hash"] == checkpoint_hash
    assert server.api("/sdapi/v1/options")["sd_checkpoint_hash"] == checkpoint_hash
    # The hash is recorded by the program, not a field on the Settings page.
    assert pg.locator("#setting_sd_checkpoint_hash").count() == 0
    pg.close()


def test_quicksetting_shows_the_saved_value_after_reload(page, server: ApiServer) -> None:
    clip = number_field("setting_CLIP_stop_at_last_layers")
    set_number(page, "setting_CLIP_stop_at_last_layers", "2")
    wait_until(lambda: server.config().get("CLIP_stop_at_last_layers") == 2, timeout=20, interval=0.2,
               message="config.json has clip skip 2")
    open_page(page, server, reload=True)
    wait_value(page, clip, "2")
    set_number(page, "setting_CLIP_stop_at_last_layers", "1")  # the box showed 2, so typing 1 is a change
    wait_until(lambda: server.config().get("CLIP_stop_at_last_layers") == 1, timeout=20, interval=0.2,
               message="config.json has clip skip 1 again")
    assert server.api("/sdapi/v1/options")["CLIP_stop_at_last_layers"] == 1


def test_change_through_the_api_shows_up(page, server: ApiServer) -> None:
    open_settings(page)
    jpeg = number_field("setting_jpeg_quality")
    page.wait_for_selector(jpeg, timeout=20_000)
    server.api("/sdapi/v1/options", {"jpeg_quality": 77, "CLIP_stop_at_last_layers": 3})
    # On the open page: switching tabs refreshes the settings-bound controls.
    select_tab(page, "txt2img")
    wait_value(page, number_field("setting_CLIP_stop_at_last_layers"), "3")
    open_settings(page)
    wait_value(page, jpeg, "77")
    # After a reload.
    server.api("/sdapi/v1/options", {"jpeg_quality": 78, "CLIP_stop_at_last_layers": 4})
    open_page(page, server, reload=True)
    wait_value(page, number_field("setting_CLIP_stop_at_last_layers"), "4")
    open_settings(page)
    wait_value(page, jpeg, "78")
    # An Apply on this page now keeps the API's values: only the user's edit is written.
    page.locator("#setting_save_txt input[type=checkbox]").set_checked(not server.config().get("save_txt", False))
    summary = apply(page)
    assert "1 settings changed: save_txt" in summary, summary
    config = server.config()
    assert config["jpeg_quality"] == 78 and config["CLIP_stop_at_last_layers"] == 4
    server.api("/sdapi/v1/options", {"CLIP_stop_at_last_layers": 1})


def test_unapplied_edit_survives_a_tab_switch(page, server: ApiServer) -> None:
    open_settings(page)
    jpeg = number_field("setting_jpeg_quality")
    page.wait_for_selector(jpeg, timeout=20_000)
    saved = server.config().get("jpeg_quality", 80)
    edit_number(page, "setting_jpeg_quality", "55")
    select_tab(page, "txt2img")
    open_settings(page)
    page.wait_for_selector(jpeg, timeout=20_000)
    assert page.input_value(jpeg) == "55"
    assert server.config().get("jpeg_quality", 80) == saved


def selected_section(pg) -> str:
    return pg.locator("#settings [role=tab][aria-selected=true]").inner_text().strip()


def test_search_filters_settings_across_sections(page, server: ApiServer) -> None:
    open_settings(page)
    search_for(page, "token merging")
    page.wait_for_function("document.querySelector('#settings_search_result').innerText.includes('Optimizations')",
                           timeout=60_000)
    page.locator("#setting_token_merging_ratio").wait_for(state="visible", timeout=60_000)
    assert selected_section(page) == "Optimizations"
    assert page.locator("#settings_saving-images-button").is_hidden()  # no match in that section
    assert page.locator("#settings_saving-paths-button").is_hidden()
    # A query matching several sections: each is listed, and a click on its name selects it.
    search_for(page, "filename")
    page.wait_for_function("document.querySelector('#settings_search_result').innerText.includes('User interface')",
                           timeout=60_000)
    assert selected_section(page) == "Saving images/grids"
    assert page.locator("#setting_samples_save").count() == 0  # in the selected section, but no match: hidden
    # the result line is redrawn when a (queued) search answer lands: click again if the first click hit the old one
    for attempt in range(3):
        page.locator("#settings_search_result a", has_text="Saving to a directory").click()
        try:
            page.locator("#setting_directories_filename_pattern").wait_for(state="visible", timeout=60_000)
            break
        except PlaywrightTimeoutError:
            if attempt == 2:
                raise
    assert page.locator("#setting_save_to_dirs").count() == 0
    search_for(page, "jpeg")
    page.wait_for_function("document.querySelector('#settings_search_result').innerText.includes('Saving images')",
                           timeout=60_000)
    page.locator("#setting_jpeg_quality").wait_for(state="visible", timeout=60_000)
    # Apply while filtered writes the edit only; the hidden fields are not touched.
    before = server.api("/sdapi/v1/options")  # every setting's value (config.json may not exist yet)
    edit_number(page, "setting_jpeg_quality", "85")
    summary = apply(page)
    assert "1 settings changed: jpeg_quality" in summary, summary
    after = server.api("/sdapi/v1/options")
    assert after["jpeg_quality"] == 85 and server.config()["jpeg_quality"] == 85
    assert {k: v for k, v in after.items() if k != "jpeg_quality"} == \
        {k: v for k, v in before.items() if k != "jpeg_quality"}
    search_for(page, "no such setting at all")
    page.wait_for_function("document.querySelector('#settings_search_result').innerText.includes('No setting')",
                           timeout=20_000)
    search_for(page, "")
    page.wait_for_function("document.querySelector('#settings_search_result').innerText.trim() === ''",
                           timeout=20_000)
    assert page.locator("#settings_saving-images-button").is_visible()  # every section is back
    assert page.locator("#settings_saving-paths-button").is_visible()
    open_settings(page, "Saving images/grids")
    page.locator("#setting_samples_save").wait_for(state="visible", timeout=20_000)


def test_page_options_follow_the_store(page, server: ApiServer) -> None:
    server.api("/sdapi/v1/options", {"jpeg_quality": 66})
    select_tab(page, "img2img")
    page.wait_for_function("window.opts && window.opts.jpeg_quality === 66", timeout=20_000)
