"""The Checkpoint Merger tab in headless Chromium: two tiny SD1 checkpoints merged by weighted sum into a custom-named
safetensors file, which then appears in the model lists; a missing secondary model is a clear error."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.support import AppServer
from tests.browser.test_ui_browser import select_tab

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    from safetensors.torch import save_file

    from app.devtools.tiny_models import tiny_checkpoint_state_dict

    data = tmp_path_factory.mktemp("merger")
    shutil.copytree(tiny_data_dir / "models", data / "models", ignore=shutil.ignore_patterns("tiny-sd2v*", "tiny-sdxl*"))
    save_file({k: v.contiguous() for k, v in tiny_checkpoint_state_dict("sd1", seed=5).items()},
              str(data / "models" / "Stable-diffusion" / "tiny-sd1-b.safetensors"), metadata={"format": "pt"})
    srv = AppServer(data)
    srv.start()
    yield srv
    srv.stop()


def pick(page, elem_id: str, text: str) -> None:
    box = page.locator(f"#{elem_id} input")
    box.click()
    page.get_by_role("option", name=text).first.click()


def test_merge_two_checkpoints(page, server: AppServer) -> None:
    select_tab(page, "Checkpoint Merger")
    page.locator("#modelmerger_merge").wait_for(timeout=20_000)
    pick(page, "modelmerger_primary_model_name", "tiny-sd1.safetensors")
    page.click("#modelmerger_merge")
    page.wait_for_selector("#modelmerger_result .atelier-error", timeout=20_000)
    assert "needs a secondary model" in page.inner_text("#modelmerger_result")

    pick(page, "modelmerger_secondary_model_name", "tiny-sd1-b.safetensors")
    page.fill("#modelmerger_custom_name textarea, #modelmerger_custom_name input", "browser-merge")
    page.click("#modelmerger_merge")
    page.wait_for_function("document.querySelector('#modelmerger_result').innerText.includes('Checkpoint saved')",
                           timeout=120_000)
    assert (server.data / "models" / "Stable-diffusion" / "browser-merge.safetensors").is_file()
    page.locator("#modelmerger_primary_model_name input").click()
    page.get_by_role("option", name="browser-merge.safetensors").first.wait_for(timeout=20_000)
    # The merge hashed both inputs: the lists now show `name [hash]` titles. The picks made from the unhashed list
    # before are the same models (a first run's files are hashed while the page is open): 🔄 and a second merge
    # without picking again work, no "not in the list of choices".
    page.keyboard.press("Escape")
    page.click("#refresh_checkpoint_Z")
    page.wait_for_function(
        "document.querySelector('#modelmerger_primary_model_name input').value.startsWith('tiny-sd1.safetensors [')",
        timeout=20_000)
    page.fill("#modelmerger_custom_name textarea, #modelmerger_custom_name input", "browser-merge-2")
    page.click("#modelmerger_merge")
    page.wait_for_function("document.querySelector('#modelmerger_result').innerText.includes('browser-merge-2')",
                           timeout=120_000)
    assert (server.data / "models" / "Stable-diffusion" / "browser-merge-2.safetensors").is_file()
