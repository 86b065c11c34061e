"""By-hand check of sd-dynamic-prompts' Wildcards manager tab and its "write prompts to a .csv" option (not
collected by pytest: it needs the real extension, which the suite never downloads). Prepare a data dir with a model
(``python -m app.devtools.tiny_models <data> --family sd1``), an unmodified copy of adieyal/sd-dynamic-prompts in
``<data>/extensions/sd-dynamic-prompts`` with ``wildcards/color.txt`` (``red``, ``blue``), and the
``dynamicprompts`` library importable (e.g. ``pip install --target /tmp/pydeps "dynamicprompts~=0.31.0"
"send2trash~=1.8"``). Then:

    python tests/manual/dynamic_prompts_extras.py --data /tmp/data --pythonpath /tmp/pydeps

It starts the app from this checkout with ``dp_write_prompts_to_file`` on, and in headless Chromium: opens the
Wildcards Manager tab (built with gradio 3's ``_js=``), waits for its tree, opens ``color``, edits it and saves it
(the Save button's ``_js="SDDP.onSaveFileClick"``), then generates ``a {red|blue} car`` on txt2img and looks for
the ``.csv`` the extension writes next to the image. One line per check (OK / FAIL: why).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.browser.support import CHROMIUM_ARGS, AppServer  # noqa: E402

EXT = "sd-dynamic-prompts"


def wildcards_tab(page, data: Path) -> str:
    page.get_by_role("tab", name="Wildcards Manager").first.click()
    page.locator("#sddp-wildcard-tree").get_by_text("color", exact=True).first.wait_for(timeout=30_000)
    page.locator("#sddp-wildcard-tree").get_by_text("color", exact=True).first.click()
    editor = page.locator("#sddp-wildcard-file-editor textarea")
    page.wait_for_function("() => document.querySelector('#sddp-wildcard-file-editor textarea').value.includes('blue')",
                           timeout=20_000)
    editor.fill("red\nblue\ngreen")
    page.click("#sddp-wildcard-save-button")
    target = data / "extensions" / EXT / "wildcards" / "color.txt"
    page.wait_for_function("() => true", timeout=1000)
    for _ in range(50):
        if "green" in target.read_text():
            return f"tree shown, color.txt opened and saved: {target.read_text().split()}"
        page.wait_for_timeout(200)
    raise AssertionError(f"color.txt not saved: {target.read_text()!r}")


def csv_next_to_image(page, data: Path) -> str:
    page.get_by_role("tab", name="txt2img").first.click()
    page.fill("#txt2img_prompt textarea", "a {red|blue} car")
    for name, value in (("steps", "2"), ("width", "64"), ("height", "64")):
        box = page.locator(f"#txt2img_{name} input[type=number]").first
        box.fill(value)
        box.press("Enter")
    before = set((data / "outputs").rglob("*.png")) if (data / "outputs").exists() else set()
    page.click("#txt2img_generate")
    page.wait_for_function("() => !!document.querySelector('#html_info_txt2img .atelier-infotext')", timeout=240_000)
    for _ in range(50):
        new = set((data / "outputs").rglob("*.png")) - before
        if new:
            break
        page.wait_for_timeout(200)
    images = sorted(new)
    csvs = [p.with_suffix(".csv") for p in images if p.with_suffix(".csv").exists()]
    assert csvs, f"no .csv next to {images}"
    return f"{csvs[0].name} next to {images[0].name}: {csvs[0].read_text().splitlines()}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--pythonpath", default="")
    args = ap.parse_args()
    data = args.data
    config = data / "config.json"
    settings = json.loads(config.read_text()) if config.exists() else {}
    settings["dp_write_prompts_to_file"] = True
    config.write_text(json.dumps(settings))
    if args.pythonpath:
        os.environ["PYTHONPATH"] = args.pythonpath
    server = AppServer(data)
    server.start()
    failures = 0
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url)
            page.wait_for_selector("#txt2img_prompt textarea", timeout=90_000)
            for name, check in (("wildcards manager tab", wildcards_tab), ("prompts .csv", csv_next_to_image)):
                try:
                    print(f"OK {name}: {check(page, data)}")
                except Exception as exc:  # noqa: BLE001 - one line per failed check, then the next
                    failures += 1
                    print(f"FAIL {name}: {type(exc).__name__}: {str(exc)[:400]}")
            print(f"page errors: {errors or 'none'}")
            browser.close()
    finally:
        server.stop()
        log = (data / "server.log").read_text(errors="replace")
        print("server log lines about the extension:",
              [line for line in log.splitlines() if EXT in line or "dynamic" in line.lower()][-8:])
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
