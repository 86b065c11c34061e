"""By-hand check of DominikDoom/a1111-sd-webui-tagcomplete in the real page (not collected by pytest: it needs the
real extension, which the suite never downloads). Get an unmodified copy first, e.g.

    git --git-dir=<mirror of DominikDoom/a1111-sd-webui-tagcomplete> archive HEAD | tar -x -C /tmp/ext/tagcomplete
    python tests/manual/tagcomplete_page.py --ext /tmp/ext/tagcomplete [--data /tmp/tac-data]

It copies the extension into ``<data>/extensions/``, starts the app from this checkout, and in headless Chromium,
for the txt2img prompt, the txt2img negative prompt and the img2img prompt: types a prefix of a tag of the
extension's own tag file (``tags/danbooru.csv``), waits for its suggestion list, picks the first entry with Tab (its default key)
and checks the box then holds that tag (and gradio has the value: the token counter changes). One line per check
(OK / FAIL: why). Results go to docs/EXTENSIONS.md by hand.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.browser.support import CHROMIUM_ARGS, AppServer  # noqa: E402

BOXES = [("txt2img", "#txt2img_prompt", ".txt2img.p"), ("txt2img", "#txt2img_neg_prompt", ".txt2img.n"),
         ("img2img", "#img2img_prompt", ".img2img.p")]


def check(page, tab: str, box: str, ident: str, prefix: str) -> str:
    """Type `prefix` into `box`, pick the first suggestion; returns the box's value."""
    page.click(f"#tab_{tab}-button")
    area = page.locator(f"{box} > label > textarea")
    area.click()
    area.fill("")
    area.press_sequentially(prefix, delay=60)
    results = page.locator(f".autocompleteResults{ident} li")
    results.first.wait_for(state="visible", timeout=10_000)
    count = results.count()
    first = results.first.inner_text().split("\n")[0]
    area.press("Tab")  # its default keymap: Tab chooses the first (or the selected) entry
    page.wait_for_function(f"() => document.querySelector('{box} textarea').value !== '{prefix}'", timeout=5_000)
    value = area.input_value()
    print(f"  {box}: {count} suggestions for {prefix!r} (first {first!r}); the box now holds {value!r}")
    return value


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ext", type=Path, required=True, help="an unmodified copy of a1111-sd-webui-tagcomplete")
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args()
    data = args.data or Path(tempfile.mkdtemp(prefix="tac-data-"))
    target = data / "extensions" / "a1111-sd-webui-tagcomplete"
    if not target.exists():
        shutil.copytree(args.ext, target, ignore=shutil.ignore_patterns(".git"))
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
            page.wait_for_function("() => typeof TAC_CFG !== 'undefined' && TAC_CFG && allTags.length > 0",
                                   timeout=90_000)
            print(f"tags loaded: {page.evaluate('allTags.length')}")
            for tab, box, ident in BOXES:
                try:
                    value = check(page, tab, box, ident, "blue_ey")
                    ok = "blue eyes" in value or "blue_eyes" in value
                    print(("OK" if ok else "FAIL: no blue eyes in the box") + f" {box}")
                    failures += not ok
                except Exception as exc:  # noqa: BLE001 - one line per failed check, then the next
                    failures += 1
                    print(f"FAIL {box}: {exc}")
            counter = page.inner_text("#txt2img_token_counter")
            print(f"txt2img token counter: {counter!r}")
            print(f"page errors: {errors or 'none'}")
            browser.close()
    finally:
        server.stop()
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
