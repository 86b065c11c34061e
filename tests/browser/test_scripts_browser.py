"""The built-in scripts in headless Chromium with their own controls (tiny SD1 model): Prompt matrix makes the
labelled grid and one image per combination with per-picture seeds; Prompts from file takes its lines from the
textbox and from an uploaded file, and runs one job per line; X/Y/Z plot with its axis controls (a choice axis shows
its values dropdown) makes the labelled grid and its cells."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.test_settings_browser import ApiServer
from tests.browser.test_ui_browser import small_generation

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    data = tmp_path_factory.mktemp("browser-scripts-data")
    shutil.copytree(tiny_data_dir / "models", data / "models", ignore=shutil.ignore_patterns("tiny-sd2v*", "tiny-sdxl*"))
    srv = ApiServer(data, "--api")
    srv.start()
    yield srv
    srv.stop()


def _choose_script(page, tab: str, title: str) -> None:
    page.locator(f"#{tab}_script input").click()
    page.get_by_role("option", name=title, exact=True).click()


def _gallery_count(page, tab: str, count: int) -> None:
    page.wait_for_function(f"document.querySelectorAll('#{tab}_gallery .thumbnail-item img').length >= {count}"
                           f" || document.querySelectorAll('#{tab}_gallery img').length >= {count}", timeout=240_000)


def _info(page, tab: str = "txt2img") -> str:
    page.wait_for_selector(f"#html_info_{tab} .atelier-infotext", timeout=240_000)
    return page.inner_text(f"#html_info_{tab}")


def _saved(server: ApiServer, folder: str) -> list[Path]:
    return sorted((server.data / "outputs" / folder).rglob("*.png"))


def _texts(server: ApiServer) -> list[str]:
    """The infotexts of the saved txt2img samples."""
    from PIL import Image

    out = []
    for path in _saved(server, "txt2img-images"):
        with Image.open(path) as im:
            out.append(str(im.info.get("parameters", "")))
    return out


def test_prompt_matrix_with_its_controls(page, server: ApiServer) -> None:
    different = page.locator("#script_txt2img_prompt_matrix_1")
    assert not different.is_visible()
    _choose_script(page, "txt2img", "Prompt matrix")
    different.wait_for(state="visible", timeout=20_000)
    page.locator("#script_txt2img_prompt_matrix_1 input").check()
    page.locator("#script_txt2img_prompt_matrix_3").get_by_label("space").check()
    small_generation(page, prompt="a cat|red|hat")
    page.fill("#txt2img_seed input[type=number]", "40")
    page.click("#txt2img_generate")
    info = _info(page)
    assert info.startswith("a cat\n") and "Seed: 40" in info  # the grid shows the first picture's infotext
    _gallery_count(page, "txt2img", 5)  # the grid and 4 pictures
    grids = _saved(server, "txt2img-grids")
    assert len(grids) == 1
    from PIL import Image

    with Image.open(grids[0]) as grid:
        assert grid.width > 128 and grid.height > 128  # 2x2 cells of 64 px plus the labels
    texts = _texts(server)
    assert any(t.startswith("a cat red hat\n") and "Seed: 43" in t for t in texts)


def test_prompts_from_file_textbox_and_upload(page, server: ApiServer, tmp_path: Path) -> None:
    _choose_script(page, "txt2img", "Prompts from file or textbox")
    box = page.locator("#script_txt2img_prompts_from_file_3 textarea")
    box.wait_for(state="visible", timeout=20_000)
    listing = tmp_path / "prompts.txt"
    listing.write_text('a red apple\n--prompt "a green pear" --steps 3 --seed 77\n', encoding="utf8")
    page.locator("#script_txt2img_prompts_from_file_file input[type=file]").set_input_files(str(listing))
    page.wait_for_function("document.querySelector('#script_txt2img_prompts_from_file_3 textarea').value"
                           ".includes('a green pear')", timeout=30_000)
    small_generation(page, prompt="")
    page.click("#txt2img_generate")
    info = _info(page)
    assert info.startswith("a red apple\n")
    _gallery_count(page, "txt2img", 2)
    texts = _texts(server)
    second = next(t for t in texts if t.startswith("a green pear\n"))
    assert "Steps: 3" in second and "Seed: 77" in second


def _upload_init(page) -> None:
    import io

    from PIL import Image

    from tests.browser.test_ui_browser import select_tab

    select_tab(page, "img2img")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 80, 40)).save(buf, "PNG")
    page.locator("#img2img_image input[type=file]").set_input_files(
        {"name": "init.png", "mimeType": "image/png", "buffer": buf.getvalue()})
    page.wait_for_selector("#img2img_image img", timeout=20_000)


def test_loopback_and_outpainting_with_their_controls(page) -> None:
    _upload_init(page)
    _choose_script(page, "img2img", "Loopback")
    loops = page.locator("#script_img2img_loopback_0 input[type=number]")
    loops.wait_for(state="visible", timeout=20_000)
    loops.fill("2")
    loops.press("Enter")
    page.locator("#script_img2img_loopback_2 input").click()
    page.get_by_role("option", name="Lazy", exact=True).click()
    small_generation(page, tab="img2img", prompt="a loop")
    page.click("#img2img_generate")
    info = _info(page, "img2img")
    assert "Denoising curve: Lazy" in info and "Final denoising strength: 0.5" in info
    _gallery_count(page, "img2img", 3)  # the one-row grid and 2 passes
    _choose_script(page, "img2img", "Poor man's outpainting")
    pixels = page.locator("#script_img2img_poor_mans_outpainting_0 input[type=number]")
    pixels.wait_for(state="visible", timeout=20_000)
    pixels.fill("32")
    pixels.press("Enter")
    group = page.locator("#script_img2img_poor_mans_outpainting_3")
    group.get_by_label("up").uncheck()
    group.get_by_label("down").uncheck()
    page.fill("#img2img_prompt textarea", "wider")
    page.click("#img2img_generate")
    page.wait_for_function("document.querySelector('#html_info_img2img').innerText.startsWith('wider')",
                           timeout=240_000)
    assert "Size: 128x64" in page.inner_text("#html_info_img2img")


def test_xyz_plot_with_its_controls(page, server: ApiServer) -> None:
    x_values = page.locator("#script_txt2img_xyz_plot_x_values textarea, #script_txt2img_xyz_plot_x_values input")
    assert not x_values.first.is_visible()
    _choose_script(page, "txt2img", "X/Y/Z plot")
    x_values.first.wait_for(state="visible", timeout=90_000)
    x_values.first.fill("1, 2")  # X type is Seed by default
    page.locator("#script_txt2img_xyz_plot_y_type input").click()
    page.get_by_role("option", name="Steps", exact=True).click()
    page.locator("#script_txt2img_xyz_plot_y_values textarea, #script_txt2img_xyz_plot_y_values input").first \
        .fill("1, 2")
    # a choice axis shows the values dropdown instead of the textbox
    page.locator("#script_txt2img_xyz_plot_z_type input").click()
    page.get_by_role("option", name="Sampler", exact=True).click()
    page.locator("#script_txt2img_xyz_plot_z_values_dropdown").wait_for(state="visible", timeout=90_000)
    assert not page.locator("#script_txt2img_xyz_plot_z_values").is_visible()
    for sampler in ("Euler", "Euler a"):  # two values picked in the multi-select
        page.locator("#script_txt2img_xyz_plot_z_values_dropdown input").click()
        page.get_by_role("option", name=sampler, exact=True).click()
    page.locator("#script_txt2img_xyz_plot_include_lone_images input").check()
    small_generation(page, prompt="a xyz boat")
    page.click("#txt2img_generate")
    info = _info(page)
    assert "Script: X/Y/Z plot" in info and "X Type: Seed" in info and "Y Type: Steps" in info
    assert "Z Type: Sampler" in info
    _gallery_count(page, "txt2img", 9)  # the 2×2×2 plot's grid and its 8 cells
    from PIL import Image

    grids = sorted(_saved(server, "txt2img-grids"), key=lambda p: p.stat().st_mtime)  # the newest is the plot's
    with Image.open(grids[-1]) as grid:
        # two X/Y sub grids side by side (one per sampler), each two cells plus the row labels' band, with the
        # column labels and the Z labels above
        assert grid.width == 2 * (2 * 64 + 48) and grid.height > 2 * 64 + 20  # two label bands on top
        grid_text = str(grid.info.get("parameters", ""))
        assert "X Type: Seed" in grid_text and "Z Type: Sampler" in grid_text
    # Paste ↙️ of the grid's infotext selects the script again and fills the axes
    _choose_script(page, "txt2img", "None")
    x_values.first.wait_for(state="hidden", timeout=90_000)
    page.fill("#txt2img_prompt textarea", grid_text)
    page.click("#paste")
    x_values.first.wait_for(state="visible", timeout=90_000)
    page.wait_for_function("document.querySelector('#script_txt2img_xyz_plot_y_type input').value === 'Steps'",
                           timeout=90_000)
    assert x_values.first.input_value() == "1, 2"
