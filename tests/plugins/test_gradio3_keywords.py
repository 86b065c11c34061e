"""compat.gradio3: gradio 3's `_js=` on event listeners while extension UI code runs, nothing changed outside."""

from __future__ import annotations

import gradio as gr
import pytest

from app.plugins.compat.gradio3 import gradio3_keywords, page_function, render_like_gradio3


def _dependency_js(demo: gr.Blocks) -> list:
    return [dep.get("js") for dep in demo.get_config_file()["dependencies"]]


def test_js_keyword_of_gradio3_works_inside() -> None:
    original = gr.Button.__dict__["click"]
    with gr.Blocks() as demo:
        text = gr.Textbox()
        with gradio3_keywords():
            assert gr.Button.__dict__["click"] is not original
            gr.Button("a").click(lambda s: s, _js="SDDP.onSaveFileClick", inputs=[text], outputs=[text])
            text.change(lambda s: s, inputs=text, outputs=text, _js="(s) => s")
            with gradio3_keywords():  # nested (a ui() called from a hook): still wrapped after the inner exit
                pass
            gr.Button("b").click(lambda s: s, text, text, _js="x => x")
        demo.load(lambda: "", None, text)
    assert _dependency_js(demo)[:3] == ["(...args) => SDDP.onSaveFileClick(...args)", "(s) => s", "x => x"]
    assert gr.Button.__dict__["click"] is original  # put back on leaving


def test_outside_gradio_is_unchanged_and_js_wins_over_js_old() -> None:
    with gr.Blocks() as demo:
        text = gr.Textbox()
        with pytest.raises(TypeError):
            gr.Button("a").click(lambda s: s, _js="x", inputs=[text], outputs=[text])
        with gradio3_keywords():
            gr.Button("b").click(lambda s: s, inputs=[text], outputs=[text], js="new", _js="old")
    assert _dependency_js(demo)[-1] == "new"


def test_blocks_load_and_layout_events_take_it() -> None:
    with gr.Blocks() as demo:
        text = gr.Textbox()
        with gradio3_keywords():
            demo.load(lambda: "", None, text, _js="() => 'loaded'")
            with gr.Tabs():
                with gr.Tab("t") as tab:
                    pass
            tab.select(lambda: "", None, text, _js="() => 'selected'")
    assert {"() => 'loaded'", "() => 'selected'"} <= set(_dependency_js(demo))


def test_an_exception_inside_still_restores() -> None:
    original = gr.Textbox.__dict__["change"]
    with pytest.raises(RuntimeError), gradio3_keywords():
        raise RuntimeError("extension ui() failed")
    assert gr.Textbox.__dict__["change"] is original


def test_page_function_keeps_this_for_dotted_methods() -> None:
    assert page_function("SDDP.onSaveFileClick") == "(...args) => SDDP.onSaveFileClick(...args)"
    assert page_function(" a.b.c ") == "(...args) => a.b.c(...args)"
    for kept in ("submit", "(x) => x", "function(a) { return a.b; }", "() => window.x.y()", None):
        assert page_function(kept) == kept


def test_render_like_gradio3_keeps_invisible_blocks_and_marks_closed_accordions() -> None:
    with gr.Blocks():
        with gr.Group(visible=False) as group:  # Atelier's own container: left as it is
            box = gr.Textbox(visible=False)
            shown = gr.Textbox()
            with gr.Accordion("closed", open=False) as closed:
                inner = gr.Button(visible=False)
            with gr.Accordion("open") as opened:
                pass
    assert render_like_gradio3(group) == 3
    assert group.visible is False and box.visible == "hidden" and inner.visible == "hidden"
    assert shown.visible is True
    assert "atelier-render-closed" in closed.elem_classes and "atelier-render-closed" not in (opened.elem_classes or [])
    assert render_like_gradio3(group) == 0  # once is enough
