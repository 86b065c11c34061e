"""Issue 16 UI pieces of the A1111 modules layer in headless Chromium: the Extensions tab's "Available" list read
from a local A1111 index.json with install of an entry (a local git repository), "Check for updates" on it, and
A1111's ``ui_components`` (InputAccordion, FormRow, ToolButton, create_refresh_button) in a real gradio page."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.support import AppServer as Server
from tests.browser.test_ui_browser import select_tab

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def make_upstream(folder: Path) -> Path:
    """A local git repository holding a tiny extension (what the index points at)."""
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": "/usr/bin:/bin"}
    (folder / "scripts").mkdir(parents=True)
    (folder / "scripts" / "hello.py").write_text("from modules import scripts\n")
    for args in (("init", "-q", "-b", "main"), ("add", "."), ("commit", "-qm", "first")):
        subprocess.run(["git", "-C", str(folder), *args], check=True, env=env, capture_output=True)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("extensions-browser-data")
    upstream = make_upstream(tmp_path_factory.mktemp("upstream") / "hello-ext")
    index = data / "index.json"
    index.write_text(json.dumps({"extensions": [
        {"name": "Hello extension", "url": upstream.as_uri(), "description": "says hello", "tags": ["script"]},
        {"name": "Other extension", "url": "https://example.invalid/other.git", "description": "not installed"},
    ]}))
    (data / "config.json").write_text(json.dumps({"extensions_index_url": str(index)}))
    srv = Server(data)
    srv.start()
    yield srv
    srv.stop()


def test_available_index_installs_an_extension_and_checks_updates(browser, server: Server) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server.url)
    page.wait_for_selector("#tabs", timeout=60_000)
    select_tab(page, "Extensions")
    page.locator("#tabs_extensions").get_by_role("tab", name="Available", exact=True).click()
    assert page.locator("#extensions_index_url input, #extensions_index_url textarea").first.input_value().endswith(
        "index.json")
    page.locator("#extensions_index_load").click()
    page.wait_for_selector("#available_extensions_table", timeout=30_000)
    table = page.locator("#available_extensions_table")
    assert "Hello extension" in table.inner_text() and "says hello" in table.inner_text()
    search = page.locator("#extensions_index_search input, #extensions_index_search textarea").first
    search.fill("other")
    page.wait_for_function("() => !document.querySelector('#available_extensions_table').innerText.includes('Hello')")
    search.fill("")
    page.wait_for_function("() => document.querySelector('#available_extensions_table').innerText.includes('Hello')")
    page.locator("#extensions_index_choice input").click()
    page.get_by_role("option", name="Hello extension").click()
    page.locator("#extensions_index_install").click()
    page.wait_for_function("() => document.querySelector('#extensions_index_result').innerText.includes('Installed')",
                           timeout=60_000)
    assert (server.data / "extensions" / "hello-ext" / "scripts" / "hello.py").is_file()
    page.locator("#tabs_extensions").get_by_role("tab", name="Installed", exact=True).click()
    page.locator("#extensions_check_updates").click()
    page.wait_for_selector("#extensions_updates_table", timeout=60_000)
    assert "hello-ext" in page.locator("#extensions_updates_table").inner_text()
    assert "up to date" in page.locator("#extensions_updates_table").inner_text()
    page.close()


@pytest.fixture(scope="module")
def components_page_url() -> Iterator[str]:
    """A gradio page built only from A1111's ui_components, as an extension's ui() builds them."""
    import gradio as gr

    from app.plugins.compat.ui_common import create_refresh_button
    from app.plugins.compat.ui_components import FormRow, InputAccordion, ToolButton

    with gr.Blocks() as demo:
        with InputAccordion(False, label="My extension", elem_id="my_acc") as enabled:
            with FormRow():
                strength = gr.Slider(0, 1, value=0.25, label="Strength", elem_id="my_strength")
                swap = ToolButton(value="\u21c5", elem_id="my_swap")
            choice = gr.Dropdown(["a", "b"], value="a", label="Choice", elem_id="my_choice")
            create_refresh_button(choice, lambda: None, lambda: {"choices": ["a", "b", "c"]}, "my_refresh")
        out = gr.Textbox(elem_id="my_out")
        go = gr.Button("Go", elem_id="my_go")
        go.click(lambda e, s, c: f"enabled={e} strength={s} choice={c}", [enabled, strength, choice], out)
        swap.click(lambda s: 1 - s, strength, strength)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_ui_components_behave_like_a1111(browser, components_page_url: str) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(components_page_url)
    page.wait_for_selector("#my_acc", timeout=60_000)

    def result() -> str:
        page.locator("#my_go").click()
        page.wait_for_function("() => document.querySelector('#my_out textarea').value.startsWith('enabled=')")
        text = page.locator("#my_out textarea").input_value()
        page.evaluate("() => { document.querySelector('#my_out textarea').value = '' }")
        return text

    assert result() == "enabled=False strength=0.25 choice=a"
    assert not page.locator("#my_strength").is_visible()  # closed while disabled (A1111: open follows the value)
    page.locator("#my_acc").get_by_text("My extension").first.click()
    page.locator("#my_acc-checkbox input[type=checkbox]").check()
    page.locator("#my_swap").click()
    page.wait_for_function("() => document.querySelector('#my_strength input[type=number]').value === '0.75'")
    assert result() == "enabled=True strength=0.75 choice=a"
    page.locator("#my_refresh").click()
    page.locator("#my_choice input").click()
    page.get_by_role("option", name="c").click()
    assert result() == "enabled=True strength=0.75 choice=c"
    page.close()


