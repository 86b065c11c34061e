"""Extension JavaScript and CSS in the real page (headless Chromium): the fixture extensions page-js and page-js-b
(tests/fixtures/extensions/) use A1111's page helpers the way State, Aspect Ratio Helper and Tag Autocomplete do."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.support import AppServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "extensions"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    data = tmp_path_factory.mktemp("ext-js-data")
    for name in ("page-js", "page-js-b", "tag-popup"):
        shutil.copytree(FIXTURES / name, data / "extensions" / name)
    srv = AppServer(data)
    srv.start()
    yield srv
    srv.stop()


def _open(browser, server: AppServer):
    """A tab on the page once the fixture's onUiLoaded callback ran (conftest's `page` waits for less); its uncaught
    page errors collect in `.errors`."""
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(server.url)
    pg.wait_for_function("() => window.pageJs && window.pageJs.uiLoaded === 1", timeout=60_000)
    pg.errors = errors
    return pg


@pytest.fixture
def page(browser, server: AppServer):
    """A fresh tab, for the tests that click or type."""
    pg = _open(browser, server)
    yield pg
    pg.close()


@pytest.fixture(scope="module")
def loaded_page(browser, server: AppServer):
    """One tab for the tests that only read what the page did while it loaded (script order, onUiLoaded's view,
    the field a script set, extension CSS): they change nothing on it, so they share it instead of loading the
    page once each (a page load is seconds of gradio rendering)."""
    pg = _open(browser, server)
    yield pg
    pg.close()


def test_scripts_run_in_a1111_order_while_the_page_is_parsed(loaded_page) -> None:
    pj = loaded_page.evaluate("window.pageJs")
    assert pj["order"] == ["_early", "a_first", "b_second", "page-js-b/0_next"]
    assert pj["readyStateAtLoad"] == "loading" and pj["domContentLoaded"] is True
    assert "undefined" not in pj["helpersAtLoad"], pj["helpersAtLoad"]
    # shown again after the tabs rendered
    assert loaded_page.evaluate("document.documentElement.style.visibility") == ""
    assert not loaded_page.errors, loaded_page.errors


def test_on_ui_loaded_sees_every_tab_and_the_options(loaded_page) -> None:
    pj = loaded_page.evaluate("window.pageJs")
    assert pj["img2imgPromptAtLoad"] is True and pj["settingsAtLoad"] is True  # other tabs exist, as in gradio 3.41
    assert pj["currentTab"] == "txt2img" and pj["currentContent"] == "tab_txt2img"
    assert pj["samplesFormat"] == "png"
    loaded_page.wait_for_function("() => window.pageJs.afterUiUpdate > 0", timeout=10_000)


def test_script_changes_a_field_and_gradio_sees_it(loaded_page) -> None:
    assert loaded_page.input_value("#txt2img_prompt textarea") == "set by page-js"
    # the token counter is computed on the server from gradio's value of the prompt
    loaded_page.wait_for_function(
        "() => !document.querySelector('#txt2img_token_counter').innerText.startsWith('0/')", timeout=20_000)


def test_extension_style_css_applies(loaded_page) -> None:
    color = loaded_page.evaluate("getComputedStyle(document.getElementById('txt2img_prompt')).outlineColor")
    assert color == "rgb(1, 2, 3)"


def test_tab_helpers_follow_the_selected_tab(page) -> None:
    page.click("#tab_img2img-button")
    page.wait_for_function("() => window.pageJs.tabChanges.includes('img2img')", timeout=10_000)
    assert page.evaluate("get_uiCurrentTab().textContent.trim()") == "img2img"
    assert page.evaluate("get_uiCurrentTabContent().id") == "tab_img2img"
    # A1111-era selectors can pick gradio 6's hidden copy of a tab button; a synthetic click on it still works
    page.evaluate("""() => Array.from(document.querySelectorAll('#tabs > div:first-child button'))
                       .find(b => b.textContent === 'Extras').dispatchEvent(new Event('click'))""")
    page.wait_for_function("() => get_uiCurrentTab().textContent.trim() === 'Extras'", timeout=10_000)
    assert page.is_visible("#tab_extras")


def test_prompt_boxes_have_gradio3_dom_and_a_tag_popup_extension_works(page) -> None:
    """tag-popup does what Tag Autocomplete does: `#txt2img_prompt > label > textarea` selectors, the same selectors
    to tell the four prompt boxes apart, a suggestion list after the textarea, Tab / a click to pick."""
    page.wait_for_function("() => window.tagPopup.attached.length === 4", timeout=30_000)
    assert sorted(page.evaluate("window.tagPopup.attached")) == [".img2img.n", ".img2img.p", ".txt2img.n",
                                                                  ".txt2img.p"]
    # the lifted textarea still fills its label, as before (gradio's own styles apply)
    widths = page.evaluate("""() => { const a = document.querySelector('#txt2img_prompt > label > textarea');
        return [a.getBoundingClientRect().width, a.parentElement.getBoundingClientRect().width]; }""")
    assert widths[0] > 0.9 * widths[1], widths
    area = page.locator("#txt2img_prompt > label > textarea")
    area.fill("")
    area.press_sequentially("a blu", delay=30)
    items = page.locator(".tagPopupResults.txt2img.p li")
    items.first.wait_for(state="visible", timeout=10_000)
    assert items.all_inner_texts() == ["blue_eyes", "blue_sky"]
    items.nth(1).click()
    assert area.input_value() == "a blue_sky, "
    assert not page.is_visible(".tagPopupResults.txt2img.p")
    # the negative prompt is its own box (".txt2img.n"); Tab picks the first entry and gradio gets the value
    neg = page.locator("#txt2img_neg_prompt > label > textarea")
    neg.click()
    neg.press_sequentially("bl", delay=30)
    neg_items = page.locator(".tagPopupResults.txt2img.n li")
    neg_items.first.wait_for(state="visible", timeout=10_000)
    assert neg_items.all_inner_texts() == ["blue_eyes", "blue_sky", "blonde_hair"]
    neg.press("Tab")
    assert neg.input_value() == "blue_eyes, "
    page.wait_for_function(
        "() => !document.querySelector('#txt2img_negative_token_counter').innerText.trim().startsWith('0/')",
        timeout=20_000)
    assert not page.errors, page.errors
