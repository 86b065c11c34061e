"""By-hand check of DominikDoom/a1111-sd-webui-tagcomplete in the real page (not collected by pytest: it needs the
real extension, which the suite never downloads). Get an unmodified copy first, e.g.

    git --git-dir=<mirror of DominikDoom/a1111-sd-webui-tagcomplete> archive HEAD | tar -x -C /tmp/ext/tagcomplete
    python tests/manual/tagcomplete_page.py --ext /tmp/ext/tagcomplete [--data /tmp/tac-data]

It copies the extension into ``<data>/extensions/``, starts the app from this checkout, and in headless Chromium,
for the txt2img prompt, the txt2img negative prompt and the img2img prompt: types a prefix of a tag of the
extension's own tag file (``tags/danbooru.csv``), waits for its suggestion list, picks the first entry with Tab (its default key)
and checks the box then holds that tag (and gradio has the value: the token counter changes). One line per check
(OK / FAIL: why). Results go to docs/EXTENSIONS.md by hand.

With ``--state <copy of ilian6806/stable-diffusion-webui-state>`` and ``--aspect <copy of
thomasasfk/sd-webui-aspect-ratio-helper>`` both are installed alongside, and it also checks that they keep
working with the prompt-box bridge: the prompt survives a reload (State), and picking 16:9 sets 512x288
(Aspect Ratio Helper).
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


def state_check(page) -> bool:
    """State keeps the prompt across a reload (localStorage), with the prompt box moved into its label."""
    page.click("#tab_txt2img-button")
    area = page.locator("#txt2img_prompt > label > textarea")
    area.fill("kept by state")
    area.press("End")
    page.wait_for_timeout(1500)
    page.reload()
    page.wait_for_selector("#txt2img_prompt > label > textarea", timeout=90_000)
    try:
        page.wait_for_function("() => document.querySelector('#txt2img_prompt textarea').value === 'kept by state'",
                               timeout=30_000)
    except Exception:  # noqa: BLE001 - reported below
        pass
    value = page.input_value("#txt2img_prompt textarea")
    print(("OK" if value == "kept by state" else "FAIL") + f" State: prompt after a reload {value!r}")
    return value == "kept by state"


def aspect_check(page) -> bool:
    """Aspect Ratio Helper's ratio list sets width/height."""
    page.click("#tab_txt2img-button")
    picker = page.locator("#txt2img_select_aspect_ratio")
    picker.wait_for(state="attached", timeout=30_000)
    picker.select_option("16:9")
    page.wait_for_timeout(1500)
    w = page.input_value("#txt2img_width input[type=number]")
    h = page.input_value("#txt2img_height input[type=number]")
    ok = (w, h) == ("512", "288")
    print(("OK" if ok else "FAIL") + f" Aspect Ratio Helper: 16:9 gives {w}x{h}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ext", type=Path, required=True, help="an unmodified copy of a1111-sd-webui-tagcomplete")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--state", type=Path, default=None, help="also install stable-diffusion-webui-state")
    ap.add_argument("--aspect", type=Path, default=None, help="also install sd-webui-aspect-ratio-helper")
    args = ap.parse_args()
    data = args.data or Path(tempfile.mkdtemp(prefix="tac-data-"))
    extra = {"stable-diffusion-webui-state": args.state, "sd-webui-aspect-ratio-helper": args.aspect}
    for name, src in [("a1111-sd-webui-tagcomplete", args.ext), *extra.items()]:
        if src is not None and not (data / "extensions" / name).exists():
            shutil.copytree(src, data / "extensions" / name, ignore=shutil.ignore_patterns(".git"))
    if args.state is not None:  # State keeps nothing until told which fields (its settings, in config.json)
        import json

        config = data / "config.json"
        settings = json.loads(config.read_text()) if config.exists() else {}
        settings["state_txt2img"] = ["prompt", "sampling_steps", "width", "height"]
        config.write_text(json.dumps(settings))
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
            try:
                page.wait_for_function("() => typeof TAC_CFG !== 'undefined' && TAC_CFG && allTags.length > 0",
                                       timeout=90_000)
            except Exception:
                print(f"FAIL: Tag Autocomplete did not load its tags; page errors: {errors}")
                raise
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
            if args.state is not None:
                failures += not state_check(page)
            if args.aspect is not None:
                failures += not aspect_check(page)
            counter = page.inner_text("#txt2img_token_counter")
            print(f"txt2img token counter: {counter!r}")
            print(f"page errors: {errors or 'none'}")
            browser.close()
    finally:
        server.stop()
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
