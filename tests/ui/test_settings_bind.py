"""Settings-bound controls (app.ui.settings_bind) and the settings search (app.ui.settings_search): Apply writes only
what the user changed, nothing is written as a side effect, a refresh takes the store's values but keeps a user's
unapplied edit, and the search filters by label across sections (issue 15)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest

from app.settings import Settings
from app.ui.context import UiContext
from app.ui.settings_bind import SettingsBinding, coerce_input, shown_value, user_edits
from app.ui.settings_search import SettingsSearch, search_words, setting_matches
from app.ui.settings_tab import apply_edits


@pytest.fixture
def ctx(tmp_path: Path) -> UiContext:
    settings = Settings.load(tmp_path / "config.json")
    runtime = SimpleNamespace(settings=settings, ui_config=None, paths=SimpleNamespace(data_dir=tmp_path), args=None)
    return UiContext(runtime)


def saved(ctx: UiContext) -> dict:
    path = ctx.settings.path
    return json.loads(path.read_text()) if path.exists() else {}


def test_user_edits_are_the_fields_that_differ_from_what_the_page_was_shown(ctx: UiContext) -> None:
    keys = ["jpeg_quality", "save_txt", "samples_format", "img2img_background_color"]
    shown = {k: shown_value(ctx, k) for k in keys}
    # gradio hands numbers back as floats: 80.0 is the 80 the page was shown, not an edit.
    assert user_edits(ctx, keys, [80.0, False, "png", "#ffffff"], shown) == {}
    assert user_edits(ctx, keys, [80.0, True, "png", "#ffffff"], shown) == {"save_txt": True}
    assert user_edits(ctx, keys, [91.0, False, "jpg", "#ffffff"], shown) == {"jpeg_quality": 91, "samples_format": "jpg"}
    # A key this page never showed is never counted as an edit.
    assert user_edits(ctx, keys, [91.0, False, "png", "#ffffff"], {}) == {}
    # Without a page's record, the store is the reference.
    assert user_edits(ctx, ["jpeg_quality"], [80], None) == {}


def test_apply_writes_only_the_edit_not_the_stale_fields(ctx: UiContext) -> None:
    keys = ["jpeg_quality", "save_txt", "CLIP_stop_at_last_layers"]
    shown = {k: shown_value(ctx, k) for k in keys}  # the page is shown 80, False, 1
    ctx.settings.set_many({"jpeg_quality": 91, "CLIP_stop_at_last_layers": 2})  # then the API changes two of them
    summary, ok = apply_edits(ctx, keys, [80, True, 1], shown)  # the user ticks save_txt on the stale page
    assert ok and summary == "<p>1 settings changed: save_txt.</p>"
    config = saved(ctx)
    assert config["jpeg_quality"] == 91 and config["CLIP_stop_at_last_layers"] == 2 and config["save_txt"] is True


def test_apply_without_edits_writes_nothing(ctx: UiContext) -> None:
    keys = ["jpeg_quality", "save_txt"]
    shown = {k: shown_value(ctx, k) for k in keys}
    summary, ok = apply_edits(ctx, keys, [80.0, False], shown)
    assert ok and "Nothing changed" in summary
    assert not ctx.settings.path.exists()  # no write at all


def test_program_recorded_values_survive_an_apply(ctx: UiContext) -> None:
    keys = ["sd_checkpoint_hash", "jpeg_quality"]
    shown = {k: shown_value(ctx, k) for k in keys}  # a page built before the model loaded: hash ''
    ctx.settings.set_quietly("sd_checkpoint_hash", "ab" * 32)  # the model load records its hash
    summary, ok = apply_edits(ctx, keys, ["", 91], shown)
    assert ok and "1 settings changed: jpeg_quality" in summary
    assert saved(ctx)["sd_checkpoint_hash"] == "ab" * 32


def test_live_keys_are_never_written_by_apply(ctx: UiContext) -> None:
    shown = {"CLIP_stop_at_last_layers": 1}
    summary, ok = apply_edits(ctx, ["CLIP_stop_at_last_layers"], [3], shown, live={"CLIP_stop_at_last_layers"})
    assert ok and "Nothing changed" in summary
    assert ctx.settings.get("CLIP_stop_at_last_layers") == 1


def test_a_bad_value_applies_nothing(ctx: UiContext) -> None:
    keys = ["jpeg_quality", "samples_format"]
    shown = {k: shown_value(ctx, k) for k in keys}
    summary, ok = apply_edits(ctx, keys, [91, "bmp"], shown)
    assert not ok and "atelier-error" in summary and "samples_format" in summary
    assert ctx.settings.get("jpeg_quality") == 80 and not ctx.settings.path.exists()


def _binding(ctx: UiContext) -> SettingsBinding:
    binding = SettingsBinding(ctx)
    binding.add("jpeg_quality", object())
    binding.add("samples_format", object())
    binding.add("CLIP_stop_at_last_layers", object(), live=True)
    return binding


def test_sync_takes_the_store_values_and_keeps_unapplied_edits(ctx: UiContext) -> None:
    binding = _binding(ctx)
    shown = binding.initial_shown()
    assert shown == {"jpeg_quality": 80, "samples_format": "png", "CLIP_stop_at_last_layers": 1}
    ctx.settings.set_many({"jpeg_quality": 91, "samples_format": "webp", "CLIP_stop_at_last_layers": 2})
    # The page still shows 80 for jpeg (not edited) and the user changed samples_format to jpg (not applied).
    updates, new_shown = binding.sync([80, "jpg", 1], shown)
    assert updates[0]["value"] == 91  # not edited: refreshed
    assert updates[1] == gr.skip()  # edited: kept as typed
    assert updates[2]["value"] == 2  # live: always refreshed
    assert new_shown == {"jpeg_quality": 91, "samples_format": "png", "CLIP_stop_at_last_layers": 2}
    # The edit is still an edit against the new record, so a later Apply writes it.
    assert user_edits(ctx, binding.keys, [91, "jpg", 2], new_shown) == {"samples_format": "jpg"}


def test_dropdown_refresh_keeps_the_value_among_the_choices(ctx: UiContext) -> None:
    binding = _binding(ctx)
    update, value = binding.update_for("samples_format")
    assert value == "png" and "png" in [c if isinstance(c, str) else c[0] for c in update["choices"]]


def test_apply_handler_refreshes_everything_after_success_and_keeps_edits_after_failure(ctx: UiContext) -> None:
    binding = _binding(ctx)
    shown = binding.initial_shown()
    handler = binding.apply_handler(lambda values, record: apply_edits(ctx, binding.keys, values, record,
                                                                      binding.live))
    summary, *rest = handler(91, "bmp", 1, shown)  # bmp is not a format: nothing applied
    updates, new_shown = rest[:3], rest[3]
    assert "atelier-error" in summary and updates[0] == gr.skip() and updates[1] == gr.skip()
    assert new_shown["jpeg_quality"] == 80 and ctx.settings.get("jpeg_quality") == 80
    summary, *rest = handler(91, "jpg", 1, new_shown)
    updates, new_shown, opts = rest[:3], rest[3], rest[4]
    assert "2 settings changed" in summary
    assert updates[0]["value"] == 91 and updates[1]["value"] == "jpg"
    assert new_shown == {"jpeg_quality": 91, "samples_format": "jpg", "CLIP_stop_at_last_layers": 1}
    assert json.loads(opts)["jpeg_quality"] == 91  # window.opts follows the store


def test_a_key_is_bound_once(ctx: UiContext) -> None:
    binding = _binding(ctx)
    with pytest.raises(ValueError, match="bound twice"):
        binding.add("jpeg_quality", object())


def test_search_matches_label_key_and_help_text(ctx: UiContext) -> None:
    info = ctx.settings.info("jpeg_quality")
    assert setting_matches(info, search_words("JPEG"))
    assert setting_matches(info, search_words("quality saved"))  # every word, any order
    assert setting_matches(info, search_words("jpeg_quality"))
    assert not setting_matches(info, search_words("jpeg clip"))
    assert search_words("   ") == []


def test_search_filter_hides_non_matching_settings_and_sections(ctx: UiContext) -> None:
    search = SettingsSearch(ctx)
    sections = []
    for info in ctx.settings.options():
        if info.section.id not in sections:
            sections.append(info.section.id)
            search.add_section(info.section.id, object())
        search.add_setting(info, object())
    n = len(search.settings)
    out = search.filter("token merging")
    visible = [info.key for (info, _), u in zip(search.settings, out[:n], strict=True) if u["visible"]]
    assert visible and all("token_merging" in k for k in visible)
    assert out[n]["selected"] == "settings_optimizations"
    assert "Optimizations" in out[n + 1] and "#settings_saving-images-button" in out[n + 1]
    assert "#settings_optimizations-button" not in out[n + 1]
    out = search.filter("no such thing")
    assert "No setting matches" in out[n + 1] and out[n] == gr.skip()
    out = search.filter("")
    assert all(u["visible"] for u in out[:n]) and out[n + 1] == ""


def test_every_setting_on_the_page_is_bound(tiny_data_dir: Path, tmp_path: Path) -> None:
    from app.ui import build_blocks
    from tests.ui.test_ui_build import _runtime

    shutil.copytree(tiny_data_dir / "models" / "Stable-diffusion", tmp_path / "models" / "Stable-diffusion",
                    ignore=shutil.ignore_patterns("tiny-sd2v*", "tiny-sdxl*"))
    runtime = _runtime(tmp_path)
    try:
        demo, ui = build_blocks(runtime)
        binding = ui.settings
        expected = [o.key for o in runtime.settings.options() if not o.hidden and o.component != "html"]
        assert sorted(binding.keys) == sorted(expected)
        assert binding.live == set(ui.quicksettings)
        assert "sd_checkpoint_hash" not in binding.keys
        # A fresh page's record of what it shows is the built values (Apply before the load event still compares).
        assert binding.shown.value == binding.initial_shown() and set(binding.shown.value) == set(binding.keys)
        # A load event outputs every bound component (the page takes the store's values on each load).
        ids = {c._id for c in binding.components}
        loads = [d for d in demo.config["dependencies"] if any(t[1] == "load" for t in d["targets"])]
        assert any(ids <= set(d["outputs"]) for d in loads)
    finally:
        runtime.shutdown()


class _Catalog:
    """A catalog with one hashed checkpoint, found by title, name or short hash (A1111's lookup)."""

    title = "m.safetensors [0123456789]"

    def find_checkpoint(self, search: str) -> SimpleNamespace | None:
        return SimpleNamespace(title=self.title) if search and search in self.title else None


def test_a_checkpoint_with_or_without_its_hash_is_the_same_setting(ctx: UiContext) -> None:
    from app.ui.quicksettings import set_setting

    ctx.runtime.catalog = _Catalog()
    assert coerce_input(ctx, "sd_model_checkpoint", "m.safetensors") == _Catalog.title
    assert coerce_input(ctx, "sd_model_checkpoint", "0123456789") == _Catalog.title
    assert coerce_input(ctx, "sd_model_checkpoint", "other.ckpt") == "other.ckpt"  # unknown: as given (load says why)
    ctx.settings.set_quietly("sd_model_checkpoint", _Catalog.title)
    # The page still shows the title from before hashing: not an edit, and no reload from the quicksettings row.
    assert user_edits(ctx, ["sd_model_checkpoint"], ["m.safetensors"], {"sd_model_checkpoint": _Catalog.title}) == {}
    assert isinstance(set_setting(ctx, "sd_model_checkpoint", "m.safetensors"), type(gr.skip()))
    assert not ctx.settings.path.exists()
