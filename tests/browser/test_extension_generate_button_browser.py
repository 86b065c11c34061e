"""An extension that ``.click()``s the Generate button it kept from ``on_after_component`` (ADetailer's way;
tests/fixtures/extensions/generate-grabber), in headless Chromium against the real app: its panel is on the page,
and one click on Generate runs both its handler and the generation, with its values in the image's infotext."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.support import AppServer
from tests.browser.test_ui_browser import small_generation

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "extensions" / "generate-grabber"


@pytest.fixture(scope="module")
def server(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    data = tmp_path_factory.mktemp("browser-grabber-data")
    shutil.copytree(tiny_data_dir / "models", data / "models", ignore=shutil.ignore_patterns("tiny-sd2v*", "tiny-sdxl*"))
    shutil.copytree(FIXTURE, data / "extensions" / "generate-grabber")
    srv = AppServer(data)
    srv.start()
    yield srv
    srv.stop()


def test_generate_runs_with_the_extensions_click_on_it(browser, server: AppServer) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(server.url)
        page.wait_for_selector("#txt2img_prompt textarea", timeout=60_000)
        page.locator("#script_txt2img_grabber_accordion > button").first.click()
        page.locator("#script_txt2img_grabber_enable input[type=checkbox]").check()
        page.fill("#script_txt2img_grabber_text textarea", "eyes")
        small_generation(page, prompt="a cat")
        page.click("#txt2img_generate")
        page.wait_for_selector("#html_info_txt2img .atelier-infotext", timeout=120_000)
        assert "Grabber: eyes|eyes" in page.inner_text("#html_info_txt2img")
        assert page.locator("#txt2img_gallery img").count() >= 1
    finally:
        page.close()
