"""Z-Image in the web UI, as a user meets it: only the three split files in a fresh data dir, the real app in a
subprocess, headless Chromium. The model is in the checkpoint quicksetting, the "VAE / Text Encoder" quicksetting
lists the files, the size picker snaps to Z-Image's 16 px grid, the negative prompt says it is inactive at CFG 1,
and Generate makes an image whose infotext carries the shift typed in the Shift field."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.devtools.tiny_zimage import write_tiny_zimage
from tests.browser.support import AppServer as Server
from tests.browser.test_ui_browser import set_number

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("zimage-browser")
    write_tiny_zimage(data)
    srv = Server(Path(data))
    srv.start()
    yield srv
    srv.stop()




def test_zimage_from_the_page(page, server: Server) -> None:
    page.wait_for_function(
        "(document.querySelector('#setting_sd_model_checkpoint input')?.value || '').includes('z_image_turbo_bf16')",
        timeout=30_000)
    assert "VAE / Text Encoder" in page.inner_text("#quicksettings")
    # the size picker snaps to the selected model's step (16 for Z-Image): 16:9 at 0.5 MP → 960 x 544
    for elem_id, value in (("txt2img_size_ratio", "16:9"), ("txt2img_size_mp", "0.5")):
        page.locator(f"#{elem_id} input").click()
        page.get_by_role("option", name=value, exact=True).click()
    page.click("#txt2img_size_pick_btn")
    page.wait_for_function("document.querySelector('#txt2img_width input[type=number]').value === '960'",
                           timeout=20_000)
    assert page.input_value("#txt2img_height input[type=number]") == "544"
    # CFG 1: the negative prompt is marked inactive
    set_number(page, "txt2img_cfg_scale", "1")
    page.wait_for_function("(document.querySelector('#txt2img_neg_prompt_note')?.innerText || '').includes('inactive')",
                           timeout=20_000)
    # a small generation with a chosen shift
    page.fill("#txt2img_prompt textarea", "a red fox in the snow")
    for name, value in (("steps", "2"), ("width", "64"), ("height", "64"), ("shift", "2.5")):
        set_number(page, f"txt2img_{name}", value)
        # gradio passes a slider's number box on a moment after Enter: wait until the field holds the value
        page.wait_for_function(
            f"document.querySelector('#txt2img_{name} input[type=number]').value === '{value}'", timeout=20_000)
    page.locator("#txt2img_prompt textarea").click()  # leave the last number box, so its change is sent
    page.click("#txt2img_generate")
    page.wait_for_selector("#html_info_txt2img .atelier-infotext", timeout=120_000)
    info = page.inner_text("#html_info_txt2img")
    assert "Model: z_image_turbo_bf16" in info and "Shift: 2.5" in info and "Size: 64x64" in info
    assert re.search(r"Steps: 2\b", info)
    assert page.locator("#txt2img_gallery img").count() >= 1
    assert len(list((server.data / "outputs").rglob("*.png"))) >= 1
