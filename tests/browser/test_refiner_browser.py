"""The Refiner accordion in headless Chromium (tiny SD1 base, tiny SD2-v refiner): its checkbox sits in the accordion
header, the checkpoint and "Switch at" controls reach the job (the image's infotext names the refiner), and pasting that
infotext back ticks the box and picks the checkpoint again."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.test_settings_browser import ApiServer
from tests.browser.test_ui_browser import set_number, small_generation

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHECKBOX = "#txt2img_enable .input-accordion-header #txt2img_enable-checkbox input[type=checkbox]"
IS_OPEN = "document.querySelector('#txt2img_enable .label-wrap').classList.contains('open')"


@pytest.fixture(scope="module")
def server(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    data = tmp_path_factory.mktemp("browser-refiner-data")
    shutil.copytree(tiny_data_dir / "models", data / "models", ignore=shutil.ignore_patterns("tiny-sdxl*"))
    srv = ApiServer(data, "--api")
    srv.start()
    yield srv
    srv.stop()


def test_refiner_accordion_runs_the_refiner_and_pastes_back(page, server: ApiServer) -> None:
    checkbox = page.locator(CHECKBOX)
    checkbox.wait_for(state="visible", timeout=20_000)
    assert not checkbox.is_checked() and not page.evaluate(IS_OPEN)
    checkbox.click()  # ticking opens the accordion
    page.wait_for_function(IS_OPEN, timeout=10_000)
    page.locator("#txt2img_checkpoint input").click()
    page.get_by_role("option", name="tiny-sd2v", exact=False).first.click()
    set_number(page, "txt2img_switch_at", "0.5")
    small_generation(page, prompt="a lighthouse")
    page.click("#txt2img_generate")
    page.wait_for_selector("#html_info_txt2img .atelier-infotext", timeout=240_000)
    info = page.inner_text("#html_info_txt2img")
    assert "Refiner: tiny-sd2v [" in info and "Refiner switch at: 0.5" in info and "Model: tiny-sd1" in info

    # untick, then paste the image's infotext: the box is ticked and the refiner chosen again
    text = _last_infotext(server)
    checkbox.click()
    page.wait_for_function(f"!document.querySelector('{CHECKBOX}').checked", timeout=10_000)
    page.fill("#txt2img_prompt textarea", text)
    page.click("#paste")
    page.wait_for_function(f"document.querySelector('{CHECKBOX}').checked", timeout=20_000)
    assert page.input_value("#txt2img_checkpoint input").startswith("tiny-sd2v")
    assert page.input_value("#txt2img_switch_at input[type=number]") == "0.5"


def _last_infotext(server: ApiServer) -> str:
    from PIL import Image

    saved = sorted((server.data / "outputs" / "txt2img-images").rglob("*.png"))
    with Image.open(saved[-1]) as im:
        return str(im.info["parameters"])
