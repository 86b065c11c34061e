"""The Queue tab in headless Chromium: a generation shows up with its state, and "Run again" queues it anew."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.support import AppServer
from tests.browser.test_ui_browser import select_tab, small_generation
from tests.helpers import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    data = tmp_path_factory.mktemp("queue-browser")
    shutil.copytree(tiny_data_dir / "models", data / "models", ignore=shutil.ignore_patterns("tiny-sd2v*", "tiny-sdxl*"))
    srv = AppServer(data)
    srv.start()
    yield srv
    srv.stop()


def test_queue_tab_lists_and_reruns(page, server: AppServer) -> None:
    small_generation(page, prompt="a queued cat")
    page.click("#txt2img_generate")
    page.wait_for_selector("#html_info_txt2img .atelier-infotext", timeout=60_000)
    select_tab(page, "Queue")
    page.wait_for_function("(() => { const t = document.querySelector('#queue_table').innerText;"
                           " return t.includes('a queued cat') && t.includes('done') && t.includes('ui'); })()",
                           timeout=30_000)
    page.locator("#queue_job input").click()
    page.get_by_role("option").filter(has_text="a queued cat").first.click()
    page.click("#queue_rerun")
    page.wait_for_function("document.querySelector('#queue_message').innerText.includes('queued again')",
                           timeout=20_000)
    page.wait_for_function(
        "(document.querySelector('#queue_table').innerText.match(/a queued cat/g) || []).length >= 2", timeout=60_000)


def _loop_states(data: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(data / "jobs.sqlite3", timeout=5) as con:
        return con.execute("SELECT origin, state, stopped_by FROM loops ORDER BY created").fetchall()


def test_queue_tab_lists_a_forever_loop_and_cancel_stops_it(page, server: AppServer) -> None:
    small_generation(page, prompt="a looping owl")
    page.click("#txt2img_generate", button="right")
    page.locator("#atelier-context-menu").get_by_text("Generate forever", exact=True).click()
    wait_until(lambda: ("ui", "running", "") in _loop_states(server.data), timeout=60, interval=0.3,
               message="the UI's loop is stored as running")
    select_tab(page, "Queue")
    page.wait_for_function("(() => { const t = document.querySelector('#queue_table').innerText;"
                           " return t.includes('forever txt2img') && t.includes('a looping owl'); })()",
                           timeout=30_000)
    page.locator("#queue_job input").click()
    page.get_by_role("option").filter(has_text="loop-").first.click()
    page.click("#queue_cancel")
    page.wait_for_function("document.querySelector('#queue_message').innerText.includes('loop stops')",
                           timeout=20_000)
    wait_until(lambda: _loop_states(server.data)[-1] == ("ui", "stopped", "cancel"), timeout=60, interval=0.3,
               message="the loop is stored as stopped")
    page.wait_for_function("!document.querySelector('#queue_table').innerText.includes('forever txt2img')",
                           timeout=30_000)
