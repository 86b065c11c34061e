"""The styles lists of the UI (app.ui.context.UiContext styles, app.ui.styles_editor.current_lists): every
`--styles-file` is read, 🔄 re-reads them, and a tab's selection keeps only styles that still exist."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from app.settings import Settings
from app.ui.context import UiContext
from app.ui.styles_editor import current_lists


def make_ctx(tmp_path: Path, *files: Path) -> UiContext:
    paths = SimpleNamespace(data_dir=tmp_path, styles_file=files[0], styles_files=files)
    runtime = SimpleNamespace(settings=Settings.load(tmp_path / "config.json"), ui_config=None, paths=paths, args=None)
    return UiContext(runtime)


def test_all_styles_files_are_listed_and_refresh_rereads_them(tmp_path: Path) -> None:
    first, second = tmp_path / "styles.csv", tmp_path / "more.csv"
    first.write_text("name,prompt,negative_prompt\r\na,x,\r\n", encoding="utf-8")
    second.write_text("name,prompt,negative_prompt\r\nb,y,\r\n", encoding="utf-8")
    ctx = make_ctx(tmp_path, first, second)
    assert ctx.style_names() == ["a", "b"]
    with second.open("a", encoding="utf-8") as f:
        f.write("c,z,\r\n")
    assert ctx.style_names() == ["a", "b"]  # read once ...
    assert ctx.reload_styles() == 3  # ... until 🔄
    assert ctx.style_names() == ["a", "b", "c"]


def test_current_lists_update_every_tab_and_drop_deleted_selections(tmp_path: Path) -> None:
    csv = tmp_path / "styles.csv"
    csv.write_text("name,prompt,negative_prompt\r\na,x,\r\nb,y,\r\n", encoding="utf-8")
    ctx = make_ctx(tmp_path, csv)
    ctx.style_db.delete_style("b")
    txt, img, txt_editor, img_editor = current_lists(ctx, [["a", "b"], None])
    assert txt.choices == img.choices == txt_editor.choices == img_editor.choices == [("a", "a")]
    assert txt.value == ["a"] and img.value == []
