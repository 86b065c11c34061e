"""The Extra Networks panel (🎴) in headless Chromium on the tiny models: a Lora card toggles its tag in the prompt
(the page's prompt value reaches the server: the token counter follows), a textual-inversion card goes into the
focused negative prompt, the metadata editor writes `name.json` and the card then inserts the preferred weight and
activation text, "Replace preview" saves the selected result next to the LoRA, and the thumbnail route serves it
(and refuses a model file)."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.support import AppServer
from tests.browser.test_ui_browser import select_tab, small_generation

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    data = tmp_path_factory.mktemp("extra-networks")
    shutil.copytree(tiny_data_dir / "models", data / "models", ignore=shutil.ignore_patterns("tiny-sd2v*", "tiny-sdxl*"))
    shutil.copytree(tiny_data_dir / "embeddings", data / "embeddings")
    from safetensors.torch import save_file

    from app.devtools.tiny_models import tiny_checkpoint_state_dict

    save_file({k: v.contiguous() for k, v in tiny_checkpoint_state_dict("sd1", seed=5).items()},
              str(data / "models" / "Stable-diffusion" / "tiny-sd1-b.safetensors"), metadata={"format": "pt"})
    srv = AppServer(data)
    srv.start()
    yield srv
    srv.stop()


def prompt(page, which: str = "prompt") -> str:
    return page.input_value(f"#txt2img_{which} textarea")


def lora_card(page):
    return page.locator('#txt2img_lora_cards .card[data-name="tiny-lora"]')


def open_tab(page, title: str) -> None:
    page.locator("#txt2img_extra_tabs").get_by_role("tab", name=title, exact=True).click()


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_cards_toggle_tags_and_edit_metadata(page, server: AppServer) -> None:
    page.click("#txt2img_extra_networks")
    page.wait_for_selector("#txt2img_extra_tabs", timeout=20_000)
    open_tab(page, "Lora")
    lora_card(page).wait_for(timeout=20_000)
    page.fill("#txt2img_prompt textarea", "a cat")
    page.focus("#txt2img_prompt textarea")
    lora_card(page).click()
    assert prompt(page) == "a cat <lora:tiny-lora:1>"
    # the server got the new text: the token counter counts the tag's text too (gradio's input event fired)
    page.wait_for_function("document.querySelector('#txt2img_token_counter').innerText.trim() !== '2/75'",
                           timeout=90_000)  # a round trip to the server: slow on a loaded machine
    lora_card(page).click()
    assert prompt(page) == "a cat"

    open_tab(page, "Textual Inversion")
    page.focus("#txt2img_neg_prompt textarea")
    page.locator('#txt2img_textual_inversion_cards .card[data-name="tiny-emb"]').click()
    assert prompt(page, "neg_prompt") == "tiny-emb" and prompt(page) == "a cat"

    page.fill("#txt2img_extra_search input, #txt2img_extra_search textarea", "emb2")
    page.wait_for_function("document.querySelectorAll('#txt2img_textual_inversion_cards .card').length === 1",
                           timeout=20_000)
    page.fill("#txt2img_extra_search input, #txt2img_extra_search textarea", "")

    open_tab(page, "Lora")
    lora_card(page).locator("[data-action=edit]").click()
    page.wait_for_selector("#txt2img_extra_edit_activation textarea", timeout=20_000)
    page.fill("#txt2img_extra_edit_activation textarea", "shiny")
    weight = page.locator("#txt2img_extra_edit_weight input[type=number]")
    weight.fill("0.5")
    weight.press("Enter")
    page.fill("#txt2img_extra_edit_notes textarea", "from the browser test")
    page.click("#txt2img_extra_edit_save")
    page.wait_for_selector("#txt2img_extra_message .atelier-info", timeout=20_000)
    sidecar = server.data / "models" / "Lora" / "tiny-lora.json"
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    assert meta["activation text"] == "shiny" and meta["preferred weight"] == 0.5
    assert meta["notes"] == "from the browser test"
    page.wait_for_function(
        "document.querySelector('#txt2img_lora_cards .card[data-name=\"tiny-lora\"]').dataset.prompt"
        " === '<lora:tiny-lora:0.5> shiny'", timeout=20_000)
    page.focus("#txt2img_prompt textarea")
    lora_card(page).click()
    assert prompt(page) == "a cat <lora:tiny-lora:0.5> shiny"
    lora_card(page).click()
    assert prompt(page) == "a cat"


def test_replace_preview_from_the_result(page, server: AppServer) -> None:
    small_generation(page, prompt="preview source")
    page.click("#txt2img_generate")
    page.wait_for_selector("#html_info_txt2img .atelier-infotext", timeout=90_000)
    page.click("#txt2img_extra_networks")
    open_tab(page, "Lora")
    lora_card(page).locator("[data-action=edit]").click()
    page.click("#txt2img_extra_edit_preview")
    preview = server.data / "models" / "Lora" / "tiny-lora.preview.png"
    page.wait_for_selector('#txt2img_lora_cards .card[data-name="tiny-lora"] img.preview', timeout=20_000)
    assert preview.is_file()
    src = lora_card(page).locator("img.preview").get_attribute("src")
    assert status(server.url.rstrip("/") + src) == 200
    model = server.data / "models" / "Lora" / "tiny-lora.safetensors"
    assert status(f"{server.url}sd_extra_networks/thumb?filename={urllib.parse.quote(str(model))}") == 404


def test_checkpoint_card_selects_the_model_and_img2img_has_its_panel(page, server: AppServer) -> None:
    """Runs last in this module: the model it selects stays selected."""
    page.click("#txt2img_extra_networks")
    open_tab(page, "Checkpoints")
    current = page.input_value("#setting_sd_model_checkpoint input")  # the warm-up loaded the first one
    other = "tiny-sd1" if current.startswith("tiny-sd1-b") else "tiny-sd1-b"
    page.locator(f'#txt2img_checkpoints_cards .card[data-name="{other}"]').click()
    page.wait_for_function(
        f"(document.querySelector('#txt2img_extra_message') || {{}}).innerText?.includes('Checkpoint: {other}.')",
        timeout=60_000)
    assert str(server.config().get("sd_model_checkpoint", "")).startswith(f"{other}.safetensors")
    # the top row's checkpoint shows the card's model at once, without a tab switch
    page.wait_for_function(
        f"(document.querySelector('#setting_sd_model_checkpoint input') || {{}}).value?.startsWith('{other}.')",
        timeout=30_000)
    open_tab(page, "Hypernetworks")
    assert page.locator("#txt2img_hypernetworks_cards .card").count() == 0

    select_tab(page, "img2img")
    page.click("#img2img_extra_networks")
    page.locator("#img2img_extra_tabs").get_by_role("tab", name="Lora", exact=True).click()
    page.focus("#img2img_prompt textarea")
    page.locator('#img2img_lora_cards .card[data-name="tiny-lora"]').click()
    assert page.input_value("#img2img_prompt textarea").startswith("<lora:tiny-lora:")
