"""The styles editor (✏️ next to the styles dropdown) in headless Chromium: create a style, apply it into the prompt
(`{prompt}` placeholder), edit and delete it; styles.csv keeps its comment row and extra column throughout."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.support import AppServer
from tests.helpers import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SEED = "name,prompt,negative_prompt,author\r\n# keep me,,,\r\nold,old text,,someone\r\n"


@pytest.fixture(scope="module")
def server(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    data = tmp_path_factory.mktemp("styles-editor")
    shutil.copytree(tiny_data_dir / "models", data / "models", ignore=shutil.ignore_patterns("tiny-sd2v*", "tiny-sdxl*"))
    (data / "styles.csv").write_bytes(SEED.encode())
    srv = AppServer(data)
    srv.start()
    yield srv
    srv.stop()


def rows(server: AppServer) -> list[list[str]]:
    return list(csv.reader((server.data / "styles.csv").read_text(encoding="utf-8-sig").splitlines()))


def wait_message(page, text: str) -> None:
    page.wait_for_function(
        f"(document.querySelector('#txt2img_edit_style_message') || {{}}).innerText?.includes({text!r})",
        timeout=20_000)


def test_create_apply_edit_delete(page, server: AppServer) -> None:
    page.click("#txt2img_styles_edit_button")
    name = page.locator("#txt2img_edit_style_name input")
    name.wait_for(timeout=20_000)
    name.fill("noir")
    name.press("Enter")
    page.fill("#txt2img_edit_style_prompt textarea", "film noir, {prompt}")
    page.fill("#txt2img_edit_style_neg_prompt textarea", "color")
    page.click("#txt2img_edit_style_save")
    wait_message(page, "Saved style 'noir'")
    assert rows(server) == [["name", "prompt", "negative_prompt", "author"], ["# keep me", "", "", ""],
                            ["old", "old text", "", "someone"], ["noir", "film noir, {prompt}", "color", ""]]

    page.fill("#txt2img_prompt textarea", "a cat")
    page.fill("#txt2img_neg_prompt textarea", "blurry")
    page.click("#txt2img_edit_style_apply")
    page.wait_for_function("document.querySelector('#txt2img_prompt textarea').value === 'film noir, a cat'",
                           timeout=20_000)
    assert page.input_value("#txt2img_neg_prompt textarea") == "blurry, color"

    page.fill("#txt2img_edit_style_prompt textarea", "noir, {prompt}")
    page.click("#txt2img_edit_style_save")
    wait_until(lambda: rows(server)[3] == ["noir", "noir, {prompt}", "color", ""], timeout=20,
               message=lambda: str(rows(server)))

    # picking an existing style loads its texts
    name.fill("old")
    name.press("Enter")
    page.wait_for_function("document.querySelector('#txt2img_edit_style_prompt textarea').value === 'old text'",
                           timeout=20_000)
    page.click("#txt2img_edit_style_delete")
    wait_message(page, "Deleted style 'old'")
    assert rows(server) == [["name", "prompt", "negative_prompt", "author"], ["# keep me", "", "", ""],
                            ["noir", "noir, {prompt}", "color", ""]]


def styles_options(page, tab: str) -> list[str]:
    """The choices of `tab`'s styles dropdown, read by opening it (gradio renders the list only while open)."""
    page.click(f"#{tab}_styles input")
    page.get_by_role("option").first.wait_for(timeout=20_000)
    names = [o.strip() for o in page.get_by_role("option").all_inner_texts()]
    page.keyboard.press("Escape")
    return names


def test_both_tabs_lists_follow_the_editor_and_the_file(page, server: AppServer) -> None:
    page.click("#txt2img_styles_edit_button")
    name = page.locator("#txt2img_edit_style_name input")
    name.fill("both-tabs")
    name.press("Enter")
    page.fill("#txt2img_edit_style_prompt textarea", "shared, {prompt}")
    page.click("#txt2img_edit_style_save")
    wait_message(page, "Saved style 'both-tabs'")
    page.click("#tab_img2img-button")
    page.locator("#img2img_styles input").wait_for(timeout=20_000)
    wait_until(lambda: "both-tabs" in styles_options(page, "img2img"), timeout=30, message="img2img list is stale")

    # A style written to styles.csv outside the page shows on both tabs after 🔄 in either editor.
    with (server.data / "styles.csv").open("a", encoding="utf-8", newline="") as f:
        f.write("from-disk,disk text,,\r\n")
    page.click("#img2img_styles_edit_button")
    page.click("#refresh_img2img_styles")
    page.wait_for_function(
        "(document.querySelector('#img2img_edit_style_message') || {}).innerText?.includes('styles from')",
        timeout=20_000)
    page.click("#tab_txt2img-button")
    wait_until(lambda: "from-disk" in styles_options(page, "txt2img"), timeout=30, message="txt2img list is stale")
