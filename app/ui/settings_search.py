"""The Settings tab's search box (`#settings_search`, as in A1111 1.10): typing filters the settings of every section
by their label (and key and help text). Settings that do not match are hidden in every section, the first section
with a match is selected, the tab buttons of sections without a match are hidden, and a line lists the sections
with matches (each a link that selects that section). An empty box shows everything again.

Done on the server, not in the page's JavaScript: gradio 6 mounts a tab's components only once the tab is selected
(`render_children` does not change that), so a DOM filter would never see the settings of the other sections, and
it cannot show the sections' contents on one page as A1111 does. gradio 6 also ignores visibility updates of a
`gr.Tab`, so the summary carries a style rule hiding the buttons of the sections without a match. Hiding a
component keeps its value, so Apply after a search still writes only what the user changed.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from app.settings.schema import OptionInfo
from app.ui.context import UiContext


def search_words(query: str | None) -> list[str]:
    """The lower-case words of a query (every word must appear)."""
    return (query or "").lower().split()


def setting_matches(info: OptionInfo, words: list[str]) -> bool:
    """Whether every word occurs in the setting's label, key or help text (case-insensitive)."""
    text = f"{info.label}\n{info.key}\n{info.comment}".lower()
    return all(word in text for word in words)


class SettingsSearch:
    """Collects the Settings tab's sections and setting components while it is built, then wires the search box."""

    def __init__(self, ctx: UiContext) -> None:
        self.ctx = ctx
        self.sections: list[tuple[str, Any]] = []  # (section id, gr.Tab)
        self.settings: list[tuple[OptionInfo, Any]] = []  # (option, component)

    def add_section(self, section_id: str, tab: Any) -> None:
        """A section's tab (elem_id `settings_<id>`; gradio names its button `settings_<id>-button`)."""
        self.sections.append((section_id, tab))

    def add_setting(self, info: OptionInfo, component: Any) -> None:
        self.settings.append((info, component))

    def matching_keys(self, query: str | None) -> list[str] | None:
        """The keys that match `query` in page order, or None for an empty query (no filter)."""
        words = search_words(query)
        if not words:
            return None
        return [info.key for info, _ in self.settings if info.component != "html" and setting_matches(info, words)]

    def summary(self, query: str, keys: list[str]) -> str:
        """The line under the box, plus the style rule that hides the tab buttons of sections without a match."""
        found = {info.section.id for info, _ in self.settings if info.key in set(keys)}
        hidden = [sid for sid, _ in self.sections if sid not in found]
        selectors = [f"#settings_{sid}-button" for sid in hidden]
        selectors += ["#settings_tab_defaults-button", "#settings_tab_sysinfo-button"]
        style = f"<style>{', '.join(selectors)} {{ display: none !important; }}</style>"
        if not keys:
            return f"<p class='atelier-search-none'>No setting matches {html.escape(query.strip())}.</p>{style}"
        labels = {info.section.id: info.section.label for info, _ in self.settings}
        links = ", ".join(f"<a href='#' class='atelier-settings-section' data-section='settings_{html.escape(sid)}'>"
                          f"{html.escape(labels[sid])}</a>" for sid, _ in self.sections if sid in found)
        noun = "setting matches" if len(keys) == 1 else "settings match"
        return f"<p>{len(keys)} {noun} in: {links}.</p>{style}"

    def filter(self, query: str | None) -> list[Any]:
        """Updates for: each setting component, the Tabs' selection, the summary."""
        keys = self.matching_keys(query)
        if keys is None:
            return [*(gr.update(visible=True) for _ in self.settings), gr.skip(), ""]
        shown = set(keys)
        found_sections = {info.section.id for info, _ in self.settings if info.key in shown}
        first = next((sid for sid, _ in self.sections if sid in found_sections), None)
        return [*(gr.update(visible=info.key in shown) for info, _ in self.settings),
                gr.update(selected=f"settings_{first}") if first is not None else gr.skip(),
                self.summary(query or "", keys)]

    def wire(self, query: Any, found: Any, tabs: Any) -> None:
        outputs = [*(c for _, c in self.settings), tabs, found]
        # `change`, not `input`: gradio 6 sends no input event for deletions (clearing the box must show all again).
        # Queued (one at a time per page, the last query wins): unqueued calls can answer out of order while the user
        # types, leaving the filter of an older query on the page.
        query.change(self.filter, query, outputs, show_progress="hidden", trigger_mode="always_last")
