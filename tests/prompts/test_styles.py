"""styles.csv: reading, applying, extracting, saving (spec §9.6)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from app.prompts.styles import (
    PromptStyle,
    StyleDatabase,
    apply_styles_to_prompt,
    extract_original_prompts,
    extract_style_text_from_prompt,
    merge_prompts,
)

SPEC_EXTRACT = [
    ("masterpiece", "1girl, art by greg, masterpiece", (True, "1girl, art by greg")),
    ("masterpiece, {prompt}", "masterpiece, 1girl, art by greg", (True, "1girl, art by greg")),
    ("masterpiece, {prompt}", "exquisite, 1girl, art by greg", (False, "exquisite, 1girl, art by greg")),
    # more
    ("best", "  a, best  ", (True, "a")),
    ("best", "a best", (True, "a ")),
    ("{prompt}, hd", "cat, hd", (True, "cat")),
    ("x", "y", (False, "y")),
    ("", "a", (True, "a")),
]


@pytest.mark.parametrize(("style", "prompt", "expected"), SPEC_EXTRACT)
def test_extract_style_text(style: str, prompt: str, expected: tuple) -> None:
    assert extract_style_text_from_prompt(style, prompt) == expected


MERGE = [
    ("masterpiece", "a cat", "a cat, masterpiece"),
    ("masterpiece, {prompt}, hd", "a cat", "masterpiece, a cat, hd"),
    ("{prompt} {prompt}", "x", "x x"),
    ("", "a cat ", "a cat"),  # empty parts are dropped (and the prompt is stripped)
    ("  hd ", "", "hd"),
    ("", "", ""),
]


@pytest.mark.parametrize(("style", "prompt", "expected"), MERGE)
def test_merge_prompts(style: str, prompt: str, expected: str) -> None:
    assert merge_prompts(style, prompt) == expected


def test_apply_styles_in_order() -> None:
    assert apply_styles_to_prompt("cat", ["{prompt}, hd", "photo of {prompt}", "sharp"]) == "photo of cat, hd, sharp"
    assert apply_styles_to_prompt("cat", []) == "cat"


def write(path: Path, text: str, bom: bool = False) -> Path:
    path.write_bytes((("\ufeff" if bom else "") + text).encode("utf-8"))
    return path


def test_load_with_bom_comments_quoted_newlines_and_old_format(tmp_path: Path) -> None:
    f = write(
        tmp_path / "styles.csv",
        "name,prompt,negative_prompt\n"
        '"Cinematic","cinematic {prompt}, film grain","blurry"\n'
        "# comment,ignored,ignored\n"
        '"Multi","line one\nline two",""\n'
        ",no name,x\n"
        "Short,only prompt\n",
        bom=True,
    )
    db = StyleDatabase(f)
    assert db.names() == ["Cinematic", "Multi", "Short"]
    assert db.get("Cinematic") == PromptStyle("Cinematic", "cinematic {prompt}, film grain", "blurry", str(f))
    assert db.get("Multi").prompt == "line one\nline two"
    assert db.get("Short").negative_prompt == ""
    assert db.errors == []

    old = write(tmp_path / "old.csv", "name,text\nA,alpha\n")
    assert StyleDatabase(old).get("A").prompt == "alpha"
    no_cols = write(tmp_path / "nocols.csv", "name\nB\n")
    assert StyleDatabase(no_cols).get("B") == PromptStyle("B", "", "", str(no_cols))


def test_missing_and_broken_files_are_tolerated(tmp_path: Path) -> None:
    assert StyleDatabase(tmp_path / "absent.csv").names() == []
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"name,prompt\n\xff\xfe\xfa,x\n")
    db = StyleDatabase(bad)
    assert db.names() == []
    assert db.errors and "bad.csv" in db.errors[0]
    with pytest.raises(ValueError):
        StyleDatabase([])


def test_apply_by_name(tmp_path: Path) -> None:
    f = write(tmp_path / "styles.csv", "name,prompt,negative_prompt\nS,{prompt} hd,lowres\nT,sharp,\n")
    db = StyleDatabase(f)
    assert db.apply_styles_to_prompt("cat", ["S", "T"]) == "cat hd, sharp"
    assert db.apply_negative_styles_to_prompt("ugly", ["S", "T"]) == "ugly, lowres"
    assert db.apply_styles_to_prompt("cat ", ["unknown"]) == "cat"  # unknown = empty style


def test_extract_styles_from_prompt(tmp_path: Path) -> None:
    f = write(tmp_path / "styles.csv", "name,prompt,negative_prompt\nS,{prompt} hd,lowres\nT,sharp,\nE,,\n")
    db = StyleDatabase(f)
    prompt = db.apply_styles_to_prompt("cat", ["S", "T"])
    negative = db.apply_negative_styles_to_prompt("ugly", ["S", "T"])
    assert db.extract_styles_from_prompt(prompt, negative) == (["S", "T"], "cat", "ugly")
    assert db.extract_styles_from_prompt("dog", "") == ([], "dog", "")
    # the negative part must match too
    assert extract_original_prompts(db.get("S"), "cat hd", "nothing") == (False, "cat hd", "nothing")
    assert extract_original_prompts(db.get("E"), "x", "y") == (False, "x", "y")


def test_add_delete_save_round_trip(tmp_path: Path) -> None:
    f = tmp_path / "sub" / "styles.csv"
    db = StyleDatabase(f)
    db.add_style('Comma, "quoted"', 'a, "b"\nsecond line', "neg")
    db.add_style("Plain", "p")
    assert f.read_bytes().startswith(b"\xef\xbb\xbf")  # written with a BOM like A1111
    with open(f, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["name", "prompt", "negative_prompt"]
    again = StyleDatabase(f)
    assert again.get('Comma, "quoted"').prompt == 'a, "b"\nsecond line'
    assert again.names() == ['Comma, "quoted"', "Plain"]

    db.add_style("Plain", "changed")  # replace keeps the order
    assert StyleDatabase(f).get("Plain").prompt == "changed"
    assert db.delete_style("Plain") is True
    assert db.delete_style("Plain") is False
    assert StyleDatabase(f).names() == ['Comma, "quoted"']
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["styles.csv"]  # no temp files left

    with pytest.raises(ValueError, match="empty"):
        db.add_style("  ", "x")
    with pytest.raises(ValueError, match="#"):
        db.add_style("#x", "x")


def test_several_files_save_back_to_their_own_file(tmp_path: Path) -> None:
    first = tmp_path / "styles.csv"
    second = write(tmp_path / "more.csv", "name,prompt,negative_prompt\nB,b,\n")
    db = StyleDatabase([first, second])
    assert db.names() == ["B"]
    db.add_style("A", "a")
    db.add_style("B", "b2")
    assert StyleDatabase(first).names() == ["A"]
    assert StyleDatabase(second).get("B").prompt == "b2"
    assert StyleDatabase([first, second]).names() == ["A", "B"]


def test_reload_sees_external_changes(tmp_path: Path) -> None:
    f = write(tmp_path / "styles.csv", "name,prompt,negative_prompt\nA,a,\n")
    db = StyleDatabase(f)
    write(f, "name,prompt,negative_prompt\nZ,z,\n")
    db.reload()
    assert db.names() == ["Z"]


# -- saving keeps the file's other content (issue 19) -----------------------------------------------------------------
KEPT = ("name,prompt,negative_prompt,author\r\n"
        "# my styles,,,\r\n"
        "cinematic,\"film still, {prompt}\",cartoon,me\r\n"
        ",orphan text,,\r\n"
        "old,old text,,someone\r\n")


def test_save_keeps_comments_unknown_columns_and_order(tmp_path: Path) -> None:
    path = tmp_path / "styles.csv"
    path.write_text(KEPT, encoding="utf-8")
    db = StyleDatabase(path)
    assert db.names() == ["cinematic", "old"]
    db.add_style("cinematic", "movie still, {prompt}", "drawing")
    db.add_style("new one", "shiny")
    db.delete_style("old")
    rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    assert rows == [["name", "prompt", "negative_prompt", "author"], ["# my styles", "", "", ""],
                    ["cinematic", "movie still, {prompt}", "drawing", "me"], ["", "orphan text", "", ""],
                    ["new one", "shiny", "", ""]]
    again = StyleDatabase(path)
    assert again.get("cinematic") == PromptStyle("cinematic", "movie still, {prompt}", "drawing", str(path))
    assert again.apply_styles_to_prompt("a cat", ["cinematic"]) == "movie still, a cat"


def test_old_layout_is_saved_with_the_new_header(tmp_path: Path) -> None:
    path = tmp_path / "styles.csv"
    path.write_text("name,text\nfoo,bar\n", encoding="utf-8")
    db = StyleDatabase(path)
    db.add_style("baz", "qux", "neg")
    rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    assert rows == [["name", "prompt", "negative_prompt"], ["foo", "bar", ""], ["baz", "qux", "neg"]]


def test_unreadable_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "styles.csv"
    path.write_bytes(b"\xff\xfe not utf-8 \xff")
    db = StyleDatabase(path)
    assert db.errors
    with pytest.raises(ValueError, match="not overwritten"):
        db.add_style("x", "y")
    assert path.read_bytes() == b"\xff\xfe not utf-8 \xff"


def test_crash_during_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    path = tmp_path / "styles.csv"
    path.write_bytes(KEPT.encode())
    db = StyleDatabase(path)

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        db.add_style("cinematic", "changed")
    monkeypatch.undo()
    assert path.read_bytes() == KEPT.encode()
    assert [p.name for p in tmp_path.iterdir()] == ["styles.csv"]  # the temp file is gone too
