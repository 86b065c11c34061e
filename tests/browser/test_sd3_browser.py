"""SD3.5 in the web UI, as a user meets it: Stability-style files only (the split medium files, an all-in-one file and
a large checkpoint) in a fresh data dir, the real app in a subprocess, headless Chromium. Picking SD3.5 medium in the
top row shows Shift and the skip-layer guidance row and hides Distilled CFG Scale, CFG Scale follows the family's 4.5,
and Generate with a negative prompt and SLG on makes an image whose infotext names the model, its CFG, its constant
shift 3 and the SLG settings."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.devtools.tiny_sd3 import write_tiny_sd3
from tests.browser.support import AppServer as Server
from tests.browser.test_family_fields_browser import _pick, _shown, _synced, _value
from tests.browser.test_ui_browser import set_number

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = Path(tmp_path_factory.mktemp("sd3-browser"))
    write_tiny_sd3(data)
    srv = Server(data, "--api")
    srv.start()
    yield srv
    srv.stop()


def test_sd35_from_the_page(page, server: Server) -> None:
    _synced(page)
    _pick(page, server, "sd3.5_medium")
    _shown(page, "txt2img", distilled=False, shift=True, slg=True)
    _value(page, "txt2img_cfg_scale", "4.5")
    page.fill("#txt2img_slg_layers textarea", "1")  # the tiny model has 3 joint blocks
    set_number(page, "txt2img_slg_scale", "2.8")
    page.fill("#txt2img_prompt textarea", "a lighthouse at dusk")
    page.fill("#txt2img_neg_prompt textarea", "blurry")
    for name, value in (("steps", "2"), ("width", "64"), ("height", "64")):
        set_number(page, f"txt2img_{name}", value)
        page.wait_for_function(
            f"document.querySelector('#txt2img_{name} input[type=number]').value === '{value}'", timeout=20_000)
    page.locator("#txt2img_prompt textarea").click()  # leave the last number box, so its change is sent
    page.click("#txt2img_generate")
    page.wait_for_selector("#html_info_txt2img .atelier-infotext", timeout=180_000)
    info = page.inner_text("#html_info_txt2img")
    assert "Model: sd3.5_medium" in info and "Shift: 3.0" in info and "CFG scale: 4.5" in info, info
    assert "Negative prompt: blurry" in info and "Size: 64x64" in info
    assert re.search(r"Steps: 2\b", info)
    assert "SLG scale: 2.8, SLG layers: 1, SLG start: 0.01, SLG stop: 0.2" in info, info
    assert page.locator("#txt2img_gallery img").count() >= 1
