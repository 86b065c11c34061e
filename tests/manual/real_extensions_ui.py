"""By-hand check of real extensions from the page (not collected by pytest: it needs the real extensions, which the
suite never downloads). Prepare a data dir with a model and, under ``extensions/``, unmodified copies of:
sd-dynamic-prompts (with its ``dynamicprompts`` library importable), ultimate-upscale-for-automatic1111, and a
folder whose ``scripts/`` holds A1111's ``prompt_matrix.py``, ``prompts_from_file.py`` and ``loopback.py``. Then:

    python tests/manual/real_extensions_ui.py --data /tmp/data [--root .] [--pythonpath /tmp/pydeps]

It starts the app from ``--root``, drives headless Chromium and prints one line per check (OK / FAIL: why).
Results go to docs/EXTENSIONS.md by hand.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Callable
from pathlib import Path

from PIL import Image

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


def start(root: Path, data: Path, pythonpath: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONPATH": pythonpath}
    log = (data / "server.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "app", "--data-dir", str(data), "--port", str(port)], cwd=root,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("the server did not start; see server.log")


def number(page, selector: str, value: str) -> None:
    box = page.locator(f"{selector} input[type=number]").first
    box.fill(value)
    box.press("Enter")


def choose(page, selector: str, option: str) -> None:
    page.locator(f"{selector} input").first.click()
    page.get_by_role("option", name=option, exact=True).click()


def small(page, tab: str, prompt: str) -> None:
    page.fill(f"#{tab}_prompt textarea", prompt)
    for name, value in (("steps", "2"), ("width", "64"), ("height", "64")):
        number(page, f"#{tab}_{name}", value)


def generate(page, tab: str) -> str:
    """Click Generate and wait for a new infotext (or an error) in the info box."""
    read = f"""() => {{ const e = document.querySelector('#html_info_{tab} .atelier-infotext, #html_info_{tab} .atelier-error');
                        return e ? e.innerText : ''; }}"""
    before = page.evaluate(read)
    page.click(f"#{tab}_generate")
    page.wait_for_function(f"() => {{ const t = ({read})(); return t !== '' && t !== {before!r}; }}", timeout=240_000)
    return page.evaluate(read)


def gallery_sizes(page, tab: str, count: int | None = None) -> list[tuple[int, int]]:
    """The gallery's image sizes once ``count`` images have loaded (the images load after the info text shows)."""
    script = f"""() => [...document.querySelectorAll('#{tab}_gallery img')].map(i => [i.naturalWidth, i.naturalHeight])"""
    if count is not None:
        try:
            page.wait_for_function(f"() => ({script})().filter(s => s[0] > 0).length === {count}", timeout=60_000)
        except Exception:  # noqa: BLE001 - report what is there
            pass
    time.sleep(1)
    return page.evaluate(script)


def dynamic_prompts_off(page) -> None:
    """Prompt matrix and Dynamic Prompts both rewrite the prompts (in A1111 too): switch Dynamic Prompts off."""
    box = page.locator("#tab_txt2img #sddp-dynamic-prompts-enabled input")
    if box.count() == 0:
        return
    if not box.is_visible():
        page.locator("#tab_txt2img #sddp-dynamic-prompting").get_by_text("Dynamic Prompts", exact=True).first.click()
    if box.is_checked():
        box.uncheck()


def dynamic_prompts(page) -> str:
    page.locator("#tab_txt2img #sddp-dynamic-prompting").first.wait_for(state="attached", timeout=30_000)
    choose(page, "#txt2img_script", "None")  # last-used values may have restored another script
    small(page, "txt2img", "a {red|blue} car")
    number(page, "#txt2img_batch_count", "2")
    info = generate(page, "txt2img")
    assert "a red car" in info or "a blue car" in info, info[:300]
    assert "{red|blue}" not in info.split("\n")[0], info[:300]
    return info.split("\n")[0]


def prompt_matrix(page) -> str:
    dynamic_prompts_off(page)
    choose(page, "#txt2img_script", "Prompt Matrix")
    page.locator("#script_txt2img_prompt_matrix_put_at_start").wait_for(state="visible", timeout=20_000)
    small(page, "txt2img", "a car|red|fast")
    number(page, "#txt2img_batch_count", "1")
    generate(page, "txt2img")
    sizes = gallery_sizes(page, "txt2img", 5)
    assert len(sizes) == 5 and sizes[0][0] > 128, f"expected a labelled grid and 4 images, got {sizes}"
    choose(page, "#txt2img_script", "None")
    return f"{len(sizes)} gallery images, grid {sizes[0]}"


def prompts_from_file(page) -> str:
    choose(page, "#txt2img_script", "Prompts from file or textbox")
    box = page.locator("#script_txt2img_prompts_from_file_or_textbox_prompt_txt textarea")
    box.wait_for(state="visible", timeout=20_000)
    box.fill("a cat\n--prompt \"a dog\" --steps 3")
    small(page, "txt2img", "ignored")
    generate(page, "txt2img")
    sizes = gallery_sizes(page, "txt2img", 2)
    assert len(sizes) == 2, f"expected 2 images, got {sizes}"
    choose(page, "#txt2img_script", "None")
    return "2 images"


def _init_image(page, data: Path) -> None:
    path = data / "init.png"
    Image.new("RGB", (64, 64), (120, 30, 200)).save(path)
    page.locator("#tabs").get_by_role("tab", name="img2img", exact=True).click()
    page.locator("#img2img_image input[type=file]").set_input_files(str(path))
    page.wait_for_selector("#img2img_image img", timeout=20_000)


def ultimate_upscale(page, data: Path) -> str:
    _init_image(page, data)
    choose(page, "#img2img_script", "Ultimate SD upscale")
    page.locator("#img2img_script_container, #tab_img2img").first.wait_for(timeout=5_000)
    small(page, "img2img", "a car")
    choose(page, "#tab_img2img [id$='_target_size_type']", "Scale from image size")
    number(page, "#tab_img2img [id$='_custom_scale']", "2")
    number(page, "#tab_img2img [id$='_tile_width']", "32")
    info = generate(page, "img2img")
    sizes = gallery_sizes(page, "img2img", 1)
    assert sizes and sizes[-1] == [128, 128], f"expected a 128x128 result, got {sizes}; {info[:300]}"
    choose(page, "#img2img_script", "None")
    return f"result {sizes[-1]}"


def loopback(page, data: Path) -> str:
    choose(page, "#img2img_script", "Loopback")
    number(page, "#script_loopback_loops", "2")
    small(page, "img2img", "a car")
    info = generate(page, "img2img")
    assert "Denoising curve: Linear" in info, info[:300]
    sizes = gallery_sizes(page, "img2img", 3)
    choose(page, "#img2img_script", "None")
    return f"{len(sizes)} gallery images"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--pythonpath", default="")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    (args.data / "last_used.json").unlink(missing_ok=True)  # start from the defaults, not the last run's script
    proc, url = start(args.root, args.data, args.pythonpath)
    checks: list[tuple[str, Callable[..., str]]] = [
        ("sd-dynamic-prompts {red|blue} from the UI", dynamic_prompts),
        ("A1111 prompt_matrix.py", prompt_matrix),
        ("A1111 prompts_from_file.py", prompts_from_file),
        ("ultimate-upscale from the UI", lambda page: ultimate_upscale(page, args.data)),
        ("A1111 loopback.py", lambda page: loopback(page, args.data)),
    ]
    failed = 0
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(url)
            page.wait_for_selector("#txt2img_prompt textarea", timeout=120_000)
            for name, check in checks:
                try:
                    print(f"OK   {name}: {check(page)}", flush=True)
                except Exception as exc:  # noqa: BLE001 - report every check
                    failed += 1
                    print(f"FAIL {name}: {type(exc).__name__}: {str(exc)[:400]}", flush=True)
                    traceback.print_exc(file=io.StringIO())
                    page.screenshot(path=str(args.data / f"fail-{failed}.png"), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
