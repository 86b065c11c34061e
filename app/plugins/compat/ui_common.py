"""``modules.ui_common`` (and the same helpers in ``modules.ui``): refresh buttons, the icons A1111's tool
buttons use, and small HTML helpers, built with the installed gradio."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import gradio as gr

from app.plugins.compat.ui_components import ToolButton

refresh_symbol = "\U0001f504"  # 🔄
random_symbol = "\U0001f3b2\ufe0f"  # 🎲️
reuse_symbol = "\u267b\ufe0f"  # ♻️
paste_symbol = "\u2199\ufe0f"  # ↙
folder_symbol = "\U0001f4c2"  # 📂
save_style_symbol = "\U0001f4be"  # 💾
apply_style_symbol = "\U0001f4cb"  # 📋
clear_prompt_symbol = "\U0001f5d1\ufe0f"  # 🗑️
extra_networks_symbol = "\U0001f3b4"  # 🎴
switch_values_symbol = "\u21c5"  # ⇅
restore_progress_symbol = "\U0001f300"  # 🌀
detect_image_size_symbol = "\U0001f4d0"  # 📐
up_down_symbol = "\u2195\ufe0f"  # ↕️


def create_refresh_button(refresh_component: Any, refresh_method: Callable[[], Any],
                          refreshed_args: dict[str, Any] | Callable[[], dict[str, Any]], elem_id: str | None) -> ToolButton:
    """A 🔄 button that calls ``refresh_method()`` and then updates ``refresh_component`` (one or a list)
    with ``refreshed_args`` (a dict, or a function returning one, e.g. ``{"choices": [...]}``)."""
    components = refresh_component if isinstance(refresh_component, list) else [refresh_component]
    label = elem_id or "refresh"

    def refresh() -> Any:
        refresh_method()
        args = refreshed_args() if callable(refreshed_args) else refreshed_args
        updates = [gr.update(**(args or {})) for _ in components]
        return updates if len(updates) > 1 else updates[0]

    button = ToolButton(value=refresh_symbol, elem_id=elem_id, elem_classes=[f"refresh-{label}"])
    button.click(fn=refresh, inputs=[], outputs=components)
    return button


def plaintext_to_html(text: str, classname: str | None = None) -> str:
    """``<p>`` lines of escaped text (A1111 ``plaintext_to_html``)."""
    body = "<br>\n".join(html.escape(x) for x in (text or "").split("\n"))
    return f"<p class='{classname}'>{body}</p>" if classname else f"<p>{body}</p>"


def gr_show(visible: bool = True) -> dict[str, Any]:
    """A gradio update that shows or hides a component (A1111 ``ui.gr_show``)."""
    return {"visible": visible, "__type__": "update"}


def setup_dialog(button_show: Any, dialog: Any, *, button_close: Any = None) -> None:
    """A1111 opens a popup dialog with JavaScript; here the dialog is shown and hidden with updates."""
    button_show.click(fn=lambda: gr.update(visible=True), inputs=[], outputs=[dialog])
    if button_close is not None:
        button_close.click(fn=lambda: gr.update(visible=False), inputs=[], outputs=[dialog])
