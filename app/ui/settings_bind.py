"""Settings-bound components: every gradio control that shows a setting (the Settings tab, the quicksettings row)
takes its value from the settings store when the page loads, when a top-level tab is selected and after Apply,
never only once at server start.

Why: gradio bakes a component's `value` into the page config when the Blocks are built. A control built that way
shows the value of server start forever; Apply then wrote those stale values back over what the API, another browser
tab or a job's `override_settings` had saved, and program-recorded values (`sd_checkpoint_hash`) were overwritten
with what they were at start.

The mechanism (`SettingsBinding`): the UI registers each settings-bound component under its key. Each page session
keeps, in a `gr.State`, the values the server last put into those components (`shown`). `sync` refreshes every
component whose field still shows that value (the user has not edited it) from the current settings; a field the
user edited keeps the edit. Apply (`user_edits`) writes only the fields whose value differs from `shown`, so an
untouched field is never written and nothing is written as a side effect. Quicksettings (`live` keys) apply at
once and are always refreshed.

The hidden `#settings_json` textbox carries the current values to the page's JavaScript (`window.opts`, the
`onOptionsChanged` callbacks of A1111 extensions) after each sync.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from app.ui.context import UiContext

log = logging.getLogger(__name__)

#: An Apply action: (field values in binding order, shown state) → (HTML summary, success).
ApplyFn = Callable[[Sequence[Any], Mapping[str, Any] | None], tuple[str, bool]]

#: JavaScript run after each sync: hand the settings JSON to atelier.js (window.opts, onOptionsChanged callbacks).
OPTIONS_JS = "(text) => { if (window.atelierOptionsChanged) window.atelierOptionsChanged(text); }"


def setting_choices(ctx: UiContext, key: str) -> list[Any]:
    """The current choices of a dropdown/radio setting (a failing provider gives an empty list, logged)."""
    try:
        choices = list(ctx.settings.choices(key))
    except Exception:  # noqa: BLE001 - a broken provider must not break the page
        log.exception("could not list the choices of %s", key)
        choices = []
    if key == "sd_model_checkpoint" and not choices:
        choices = ctx.checkpoint_titles()
    return choices


def current_checkpoint(ctx: UiContext) -> str | None:
    """The checkpoint to show when the setting is empty: the loaded one, else the first (what a job would load)."""
    value = ctx.settings.get("sd_model_checkpoint")
    if value:
        return value
    state = getattr(ctx.runtime, "model_state", None)  # the loaded model, without creating the manager
    loaded = state.loaded() if state is not None else None
    if loaded is not None and loaded.title:
        return loaded.title
    titles = ctx.checkpoint_titles()
    return titles[0] if titles else None


def shown_value(ctx: UiContext, key: str) -> Any:
    """The current value of `key` as its component shows it (checkbox → bool, multiselect → list, textbox → str)."""
    info = ctx.settings.info(key)
    value = ctx.settings.get(key, info.default)
    if key == "sd_model_checkpoint" and not value:
        value = current_checkpoint(ctx)
    if info.component == "checkbox":
        return bool(value)
    if info.multiselect:
        return list(value or [])
    if info.component == "textbox":
        return "" if value is None else str(value)
    return value


def shown_choices(ctx: UiContext, key: str, value: Any) -> list[Any]:
    """The choices of a dropdown/radio, always including the value shown (so the page never drops it)."""
    info = ctx.settings.info(key)
    choices = setting_choices(ctx, key)
    if info.multiselect:
        return list(dict.fromkeys([*choices, *(value or [])]))
    if value is not None and value not in choices:
        return [*choices, value]
    return choices


def setting_component(ctx: UiContext, key: str, elem_prefix: str = "setting_", **extra: Any) -> Any:
    """The gradio component of one setting (from its OptionInfo), showing the current value."""
    info = ctx.settings.info(key)
    value = shown_value(ctx, key)
    locked = ctx.settings.locked_reason(key)  # a folder setting under --hide-ui-dir-config / open network access
    common = {"label": info.label, "elem_id": f"{elem_prefix}{key}",
              "interactive": not ctx.settings.frozen and locked is None, **extra}
    if info.comment or locked:
        common["info"] = f"locked: {locked}" if locked else info.comment
    comp = info.component
    if comp in ("dropdown", "radio"):
        choices = shown_choices(ctx, key, value)
        if comp == "radio" and not info.multiselect:
            return gr.Radio(choices=choices, value=value, **common)
        # A checkpoint title is accepted with or without its [hash] (see `coerce_input`), not refused by gradio
        return gr.Dropdown(choices=choices, value=value, multiselect=info.multiselect,
                           allow_custom_value=info.multiselect or key == "sd_model_checkpoint", **common)
    if comp == "slider":
        return gr.Slider(minimum=info.minimum, maximum=info.maximum, step=info.step or 1, value=value, **common)
    if comp == "checkbox":
        return gr.Checkbox(value=value, **common)
    if comp == "number":
        return gr.Number(value=value, precision=0 if isinstance(info.default, int) else None, **common)
    if comp == "html":
        return gr.HTML(str(info.label), elem_id=common["elem_id"])
    if comp == "color":
        return gr.ColorPicker(value=value, **common)
    return gr.Textbox(value=value, **common)


def coerce_input(ctx: UiContext, key: str, value: Any) -> Any:
    """A value from a gradio component as the setting's type (numbers come back as floats; a checkpoint given by
    name or hash as its current title, so the title shown before hashing is the same setting as the hashed one)."""
    if key == "sd_model_checkpoint":
        return ctx.canonical_checkpoint(value)
    info = ctx.settings.info(key)
    t = info.value_type()
    if t is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if t is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if info.component == "textbox" and value == "" and info.default is None:
        return None
    return value


def _same(ctx: UiContext, key: str, a: Any, b: Any) -> bool:
    """Whether two field values of `key` mean the same setting value (80 and 80.0 do; "" and None do for
    optional text)."""
    return bool(coerce_input(ctx, key, a) == coerce_input(ctx, key, b))


def user_edits(ctx: UiContext, keys: Sequence[str], values: Sequence[Any],
               shown: Mapping[str, Any] | None) -> dict[str, Any]:
    """key → value (as the setting's type) for the fields the user changed: those whose value differs from what the
    server last showed in them (`shown`). Without `shown` (a caller with no page), the current settings are the
    reference. A field whose key is missing from `shown` counts as unchanged: it was never shown by this page."""
    edits: dict[str, Any] = {}
    for key, value in zip(keys, values, strict=True):
        if shown is None:
            reference = shown_value(ctx, key)
        elif key in shown:
            reference = shown[key]
        else:
            continue
        if not _same(ctx, key, value, reference):
            edits[key] = coerce_input(ctx, key, value)
    return edits


def settings_json(ctx: UiContext) -> str:
    """Every current setting as JSON for the page's `window.opts` (unserialisable values as strings)."""
    return json.dumps(ctx.settings.data, default=str)


@dataclass
class SettingsBinding:
    """The settings-bound components of one built UI, in registration order. `live` keys (quicksettings) apply on
    change and are always refreshed; the others wait for Apply and keep a user's unapplied edit."""

    ctx: UiContext
    keys: list[str] = field(default_factory=list)
    components: list[Any] = field(default_factory=list)
    live: set[str] = field(default_factory=set)
    shown: Any = None  # gr.State: key → value last put into the component by the server (per page session)
    opts: Any = None  # gr.Textbox #settings_json
    applies: list[tuple[Any, Any, ApplyFn]] = field(default_factory=list)

    def add(self, key: str, component: Any, live: bool = False) -> None:
        if key in self.keys:
            raise ValueError(f"setting {key!r} is bound twice")
        self.keys.append(key)
        self.components.append(component)
        if live:
            self.live.add(key)

    def add_apply(self, button: Any, result: Any, fn: ApplyFn) -> None:
        """An Apply button: on click `fn(values, shown)` → (HTML for `result`, success); wired by `wire`, once every
        component is bound, with all of them as inputs."""
        self.applies.append((button, result, fn))

    def initial_shown(self) -> dict[str, Any]:
        """The values the components were built with (what a fresh page shows before its load event)."""
        out: dict[str, Any] = {}
        for key in self.keys:
            try:
                out[key] = shown_value(self.ctx, key)
            except Exception:  # noqa: BLE001 - an option removed since: its field is never counted as edited
                log.exception("could not read the setting %s", key)
        return out

    def build_state(self) -> None:
        """Create the per-session state and the `#settings_json` carrier (call inside the Blocks)."""
        self.shown = gr.State({})  # filled by `wire`, once every component is bound
        self.opts = gr.Textbox(settings_json(self.ctx), elem_id="settings_json", show_label=False, container=False,
                               interactive=False, elem_classes=["atelier-hidden"])

    # -- refresh ----------------------------------------------------------------------------------------------------
    def update_for(self, key: str) -> tuple[Any, Any]:
        """(component update, shown value) for the current value of `key`."""
        value = shown_value(self.ctx, key)
        if self.ctx.settings.info(key).component in ("dropdown", "radio"):
            return gr.update(choices=shown_choices(self.ctx, key, value), value=value), value
        return gr.update(value=value), value

    def sync(self, values: Sequence[Any], shown: Mapping[str, Any] | None,
             keep_edits: bool = True) -> tuple[list[Any], dict[str, Any]]:
        """Component updates (in `components` order) and the new `shown`: each field the user has not edited (and
        every live one) gets the current value; an edited field keeps its value (`keep_edits`)."""
        shown = dict(shown or {})
        edited = user_edits(self.ctx, self.keys, values, shown) if keep_edits else {}
        updates: list[Any] = []
        for key in self.keys:
            if key in edited and key not in self.live:
                updates.append(gr.skip())
                continue
            try:
                update, shown[key] = self.update_for(key)
            except Exception:  # noqa: BLE001 - one odd option must not stop the others from refreshing
                log.exception("could not refresh the setting %s", key)
                update = gr.skip()
            updates.append(update)
        return updates, shown

    def outputs(self) -> list[Any]:
        """Every output of a sync: the components, the shown state, the settings JSON."""
        return [*self.components, self.shown, self.opts]

    def sync_handler(self, *args: Any) -> list[Any]:
        """gradio handler: inputs are the component values then `shown`; outputs are `outputs()`."""
        *values, shown = args
        updates, new_shown = self.sync(values, shown)
        return [*updates, new_shown, settings_json(self.ctx)]

    def apply_handler(self, fn: ApplyFn) -> Any:
        """gradio handler for an Apply button: writes the edits, then refreshes every field from the store (after
        a failure, the edited fields keep what the user typed)."""

        def handler(*args: Any) -> list[Any]:
            *values, shown = args
            summary, ok = fn(values, shown)
            updates, new_shown = self.sync(values, shown, keep_edits=not ok)
            return [summary, *updates, new_shown, settings_json(self.ctx)]

        return handler

    def refresh_after(self, *events: Any) -> None:
        """Refresh the bound components after `events` too: an action that sets a setting outside these controls
        (a checkpoint card sets `sd_model_checkpoint`) shows in the quicksettings row at once, as A1111's does, not
        at the next tab switch. Unapplied Settings-tab edits are kept, as on a tab switch."""
        inputs = [*self.components, self.shown]
        for event in events:
            event.then(self.sync_handler, inputs, self.outputs(), queue=False, show_progress="hidden").then(
                None, [self.opts], None, js=OPTIONS_JS)

    def wire(self, demo: Any, tabs: Any = None) -> None:
        """Refresh on page load and whenever a top-level tab is selected (a change made through the API, another
        browser tab or a job's kept `override_settings` shows up there), then pass the values to the page's JS."""
        if self.shown is None:
            raise RuntimeError("SettingsBinding.build_state() must run before wire()")
        # What a fresh page shows before its load event: the values the components were just built with.
        self.shown.value = self.initial_shown()
        inputs = [*self.components, self.shown]
        triggers = [demo.load] + ([tabs.select] if tabs is not None else [])
        for trigger in triggers:
            trigger(self.sync_handler, inputs, self.outputs(), queue=False, show_progress="hidden").then(
                None, [self.opts], None, js=OPTIONS_JS)
        for button, result, fn in self.applies:
            button.click(self.apply_handler(fn), inputs, [result, *self.outputs()]).then(
                None, [self.opts], None, js=OPTIONS_JS)
