"""``modules.ui``: what extensions take from A1111's UI module: the tool-button icons, ``create_refresh_button``,
``gr_show``, ``plaintext_to_html`` (shared with ``modules.ui_common``), and the fixed names some read."""

from __future__ import annotations

from app.plugins.compat.ui_common import (
    apply_style_symbol,
    clear_prompt_symbol,
    create_refresh_button,
    detect_image_size_symbol,
    extra_networks_symbol,
    folder_symbol,
    gr_show,
    paste_symbol,
    plaintext_to_html,
    random_symbol,
    refresh_symbol,
    restore_progress_symbol,
    reuse_symbol,
    save_style_symbol,
    switch_values_symbol,
)

__all__ = ["apply_style_symbol", "clear_prompt_symbol", "create_refresh_button", "detect_image_size_symbol",
           "extra_networks_symbol", "folder_symbol", "gr_show", "paste_symbol", "plaintext_to_html", "random_symbol",
           "refresh_symbol", "restore_progress_symbol", "reuse_symbol", "save_style_symbol", "switch_values_symbol",
           "gr_show_value_none", "gr_show_and_load"]


def gr_show_value_none(visible: bool = True) -> dict[str, object]:
    """Show or hide a component and clear its value."""
    return {"value": None, "visible": visible, "__type__": "update"}


def gr_show_and_load(value: object = None, visible: bool = True) -> dict[str, object]:
    """Show a component with a new value."""
    return {"value": value, "visible": visible, "__type__": "update"}
