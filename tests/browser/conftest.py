"""The headless Chromium every browser test drives (Debian's `chromium` through Playwright)."""

from __future__ import annotations

import shutil

import pytest

from tests.browser.support import CHROMIUM_ARGS


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    """A fresh tab on the module's `server`, once the txt2img prompt is on the page."""
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    pg.goto(server.url)
    pg.wait_for_selector("#txt2img_prompt textarea", timeout=60_000)
    yield pg
    pg.close()
