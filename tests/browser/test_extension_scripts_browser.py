"""Extension scripts in headless Chromium against the real app (with --api) on the tiny SD1 model, with the
tests/fixtures/extensions/ui-scripts extension installed: its always-on panel is on the page and its values reach
the image, choosing its selectable script shows that script's controls and runs it, its on_ui_tabs tab works,
the Extensions tab reports it, and the API runs both scripts with their ui() defaults when a request sends none."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.test_settings_browser import ApiServer
from tests.browser.test_ui_browser import select_tab, small_generation

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "extensions" / "ui-scripts"


@pytest.fixture(scope="module")
def server(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    data = tmp_path_factory.mktemp("browser-ext-data")
    shutil.copytree(tiny_data_dir / "models", data / "models", ignore=shutil.ignore_patterns("tiny-sd2v*", "tiny-sdxl*"))
    shutil.copytree(FIXTURE, data / "extensions" / "ui-scripts")
    srv = ApiServer(data, "--api")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def page(browser, server: ApiServer):
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    pg.goto(server.url)
    pg.wait_for_selector("#txt2img_prompt textarea", timeout=60_000)
    yield pg
    pg.close()


def _infotext(page) -> str:
    page.wait_for_selector("#html_info_txt2img .atelier-infotext", timeout=120_000)
    return page.inner_text("#html_info_txt2img")


def test_alwayson_panel_values_reach_the_image(page) -> None:
    panel = page.locator("#prompt_suffix_text_txt2img textarea")
    panel.wait_for(state="visible", timeout=20_000)
    assert panel.input_value() == "best quality"
    # the panel sits above the Script dropdown, as in A1111
    above = page.evaluate("""() => {
        const a = document.querySelector('#prompt_suffix_enabled_txt2img').getBoundingClientRect();
        const b = document.querySelector('#txt2img_script').getBoundingClientRect();
        return a.top < b.top; }""")
    assert above
    small_generation(page, prompt="a cat")
    panel.fill("hdr")
    box = page.locator("#prompt_suffix_repeat_txt2img input[type=number]")
    box.fill("2")
    box.press("Enter")
    page.click("#txt2img_generate")
    info = _infotext(page)
    assert "a cat, hdr, hdr" in info and "Suffix: hdr x2" in info


def test_selectable_script_controls_show_when_chosen_and_run(page) -> None:
    mode = page.locator("#script_txt2img_grid_tiles_mode")
    assert not mode.is_visible()
    page.locator("#txt2img_script input").click()
    page.get_by_role("option", name="Grid tiles", exact=True).click()
    mode.wait_for(state="visible", timeout=20_000)
    page.locator("#script_txt2img_grid_tiles_mode input").click()
    page.get_by_role("option", name="Linear", exact=True).click()
    small_generation(page, prompt="a dog")
    page.click("#txt2img_generate")
    info = _infotext(page)
    assert "Tiles: Linear 512 save=False more=0" in info and "Tiles index: 1" in info
    assert "a dog, best quality" in info  # the always-on script ran in the selectable script's job too


def test_component_hook_and_extension_tab(page) -> None:
    # the script's button (wired to the width slider it caught in after_component) copies the width
    page.click("#prompt_suffix_copy_txt2img")
    page.wait_for_function("document.querySelector('#prompt_suffix_text_txt2img textarea').value.startsWith('width ')",
                           timeout=20_000)
    assert page.locator("#prompt_suffix_marker_txt2img_cfg_scale").count() == 1
    select_tab(page, "Suffix tab")
    page.fill("#suffix_tab_text textarea", "hello")
    page.click("#suffix_tab_button")
    page.wait_for_function("document.querySelector('#suffix_tab_out textarea').value === 'HELLO'", timeout=20_000)
    # a button wired with gradio 3's `_js=` (the extension's own page function first, then its Python function)
    page.click("#suffix_tab_js_button")
    page.wait_for_function("document.querySelector('#suffix_tab_out textarea').value === 'HELLO!'", timeout=20_000)
    # invisible components and a closed accordion's button were in the page at onUiLoaded, as in gradio 3; the page
    # script talks to Python through the hidden box and button (sd-dynamic-prompts' Wildcards manager does so)
    assert page.evaluate("window.suffixTab.atLoad") == {"hiddenBox": True, "hiddenButton": True,
                                                        "innerButton": True}
    assert not page.is_visible("#suffix_tab_hidden") and not page.is_visible("#suffix_tab_inner_button")
    page.evaluate("window.suffixTab.send('a message')")
    page.wait_for_function("document.querySelector('#suffix_tab_out textarea').value === 'got a message'",
                           timeout=20_000)
    page.get_by_text("Closed tools").first.click()
    page.locator("#suffix_tab_inner_button").wait_for(state="visible", timeout=10_000)
    select_tab(page, "Extensions")
    report = page.locator("#extensions_report")
    report.wait_for(state="visible", timeout=20_000)
    text = report.inner_text()
    assert "Prompt suffix (always-on: txt2img, img2img)" in text and "Grid tiles (selectable" in text


def test_api_uses_ui_defaults_and_script_args(server: ApiServer) -> None:
    body = {"prompt": "a bird", "steps": 2, "width": 64, "height": 64, "seed": 1}
    info = server.api("/sdapi/v1/txt2img", body)["info"]
    assert "a bird, best quality" in info and "Suffix: best quality x1" in info  # defaults, no alwayson_scripts
    off = server.api("/sdapi/v1/txt2img", {**body, "alwayson_scripts": {"Prompt suffix": {"args": [False]}}})
    assert "Suffix:" not in off["info"]
    tiles = server.api("/sdapi/v1/txt2img", {**body, "script_name": "grid tiles", "script_args": ["", 2]})
    assert "Tiles: None 512 save=False more=0" in tiles["info"]  # the args it left out: ui() defaults
    scripts = server.api("/sdapi/v1/script-info")
    grid = next(s for s in scripts if s["name"] == "grid tiles" and not s["is_img2img"])
    assert [a["label"] for a in grid["args"]] == ["", "Tile mode", "Tile width", "Save tiles"]
