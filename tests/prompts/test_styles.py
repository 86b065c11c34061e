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
