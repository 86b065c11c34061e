"""Per-family generation fields in the web UI, as a user meets them: a data dir with an SD 1.5 checkpoint and FLUX.1
dev, schnell and Fill files, the real app in a subprocess, headless Chromium. Picking a model in the top row shows
"Distilled CFG Scale" only for FLUX dev / Fill and "Shift" only for flow models, in the txt2img and img2img tabs;
CFG Scale and Distilled CFG Scale follow the picked family's defaults; the fields stay right after a page reload;
the API still takes `distilled_cfg_scale` for any model."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.devtools.tiny_flux import write_tiny_flux
from app.devtools.tiny_models import write_tiny_models
from tests.browser.support import AppServer as Server
from tests.browser.test_ui_browser import select_tab
from tests.helpers import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = Path(tmp_path_factory.mktemp("family-fields-browser"))
    write_tiny_models(data, families=["sd1"])
    for variant in ("dev", "schnell", "fill"):
        write_tiny_flux(data, variant)
    srv = Server(data, "--api")
    srv.start()
    yield srv
    srv.stop()


def _pick(page, server: Server, name: str) -> None:
    """Pick a checkpoint in the top row and wait until the server has stored it (the model is loaded), so that a later
    settings refresh (page load, tab switch) shows it rather than the previous one."""
    page.locator("#setting_sd_model_checkpoint input").click()
    page.get_by_role("option", name=re.compile(re.escape(name) + r"\.safetensors")).first.click()
    page.wait_for_function(
        f"(document.querySelector('#setting_sd_model_checkpoint input')?.value || '').startsWith('{name}.')",
        timeout=20_000)
    wait_until(lambda: str(server.api("/sdapi/v1/options").get("sd_model_checkpoint", "")).startswith(name + "."),
               timeout=120, interval=0.3)


def _synced(page, action=None) -> None:
    """Run *action* (a tab switch; None: a fresh page or a reload) and wait until the page's settings refresh it
    causes has arrived (``window.atelierOptionsSyncs`` counts them; a reload starts again at 0)."""
    if action is None:
        page.wait_for_selector("#txt2img_prompt textarea", timeout=60_000)
        page.wait_for_function("(window.atelierOptionsSyncs || 0) > 0", timeout=30_000)
        return
    before = page.evaluate("window.atelierOptionsSyncs || 0")
    action()
    page.wait_for_function(f"(window.atelierOptionsSyncs || 0) > {before}", timeout=30_000)


def _reload(page) -> None:
    page.reload()
    _synced(page)


def _shown(page, tab: str, distilled: bool, shift: bool, slg: bool = False) -> None:
    """Distilled CFG Scale, Shift and the skip-layer guidance row (SD3.5 only) shown or hidden."""
    for name, visible in (("distilled_cfg_scale", distilled), ("shift", shift), ("slg_row", slg)):
        page.wait_for_selector(f"#{tab}_{name}", state="visible" if visible else "hidden", timeout=20_000)


def _value(page, elem_id: str, value: str) -> None:
    page.wait_for_function(f"document.querySelector('#{elem_id} input[type=number]')?.value === '{value}'",
                           timeout=20_000)


def test_fields_follow_the_picked_model(page, server: Server) -> None:
    _synced(page)  # the page's first settings refresh is in
    _pick(page, server, "tiny-sd1")
    _shown(page, "txt2img", distilled=False, shift=False)
    _value(page, "txt2img_cfg_scale", "7")
    _pick(page, server, "flux1-dev")
    _shown(page, "txt2img", distilled=True, shift=True)
    _value(page, "txt2img_cfg_scale", "1")  # FLUX's real CFG default, since the field held SD's
    page.wait_for_function(  # ... and at CFG 1 the negative prompt is marked inactive
        "(document.querySelector('#txt2img_neg_prompt_note')?.innerText || '').includes('inactive')", timeout=20_000)
    _value(page, "txt2img_distilled_cfg_scale", "3.5")
    _pick(page, server, "flux1-fill-dev")
    _value(page, "txt2img_distilled_cfg_scale", "30")  # FluxFillPipeline's default guidance
    assert "default 30" in page.inner_text("#txt2img_distilled_cfg_scale")
    _pick(page, server, "tiny-sd1")
    _shown(page, "txt2img", distilled=False, shift=False)
    _value(page, "txt2img_cfg_scale", "7")
    _pick(page, server, "flux1-schnell")
    _shown(page, "txt2img", distilled=False, shift=True)  # schnell has no guidance input
    _synced(page, lambda: select_tab(page, "img2img"))
    _shown(page, "img2img", distilled=False, shift=True)


def test_fields_after_a_reload(page, server: Server) -> None:
    _synced(page)
    _pick(page, server, "tiny-sd1")
    _reload(page)
    _shown(page, "txt2img", distilled=False, shift=False)
    _pick(page, server, "flux1-fill-dev")
    _shown(page, "txt2img", distilled=True, shift=True)
    _reload(page)
    page.wait_for_function(
        "(document.querySelector('#setting_sd_model_checkpoint input')?.value || '').startsWith('flux1-fill-dev.')",
        timeout=20_000)
    _shown(page, "txt2img", distilled=True, shift=True)
    _value(page, "txt2img_distilled_cfg_scale", "30")
    _synced(page, lambda: select_tab(page, "img2img"))
    _shown(page, "img2img", distilled=True, shift=True)


def test_api_takes_distilled_cfg_for_any_model(server: Server) -> None:
    models = server.api("/sdapi/v1/sd-models")
    sd1 = next(m["title"] for m in models if m["model_name"] == "tiny-sd1")
    out = server.api("/sdapi/v1/txt2img", {"prompt": "a cat", "steps": 2, "width": 64, "height": 64,
                                           "distilled_cfg_scale": 5, "shift": 2.0,
                                           "override_settings": {"sd_model_checkpoint": sd1}})
    assert len(out["images"]) == 1
