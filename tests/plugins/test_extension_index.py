"""The Extensions tab's index (A1111's index.json from a local file or URL) and update checks on git checkouts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.plugins.extension_index import IndexError_, check_for_update, filter_index, installed_urls, read_index, update

INDEX = {"tags": {"script": "Scripts"}, "extensions": [
    {"name": "Dynamic Prompts", "url": "https://github.com/adieyal/sd-dynamic-prompts.git",
     "description": "wildcards and combinatorics", "tags": ["script", "prompting"], "added": "2022-11-01", "stars": 2000},
    {"name": "Tag Autocomplete", "url": "https://github.com/DominikDoom/a1111-sd-webui-tagcomplete",
     "description": "booru tags", "tags": ["prompting"], "added": "2022-10-15", "stars": 2500},
    {"name": "broken entry without url"},
]}


def test_index_from_a_local_file_with_search_and_installed(tmp_path):
    path = tmp_path / "index.json"
    path.write_text(json.dumps(INDEX))
    entries = read_index(str(path))
    assert [e.name for e in entries] == ["Dynamic Prompts", "Tag Autocomplete"]  # the entry without url dropped
    assert read_index(path.as_uri())[0].tags == ("script", "prompting")
    installed = installed_urls([SimpleNamespace(remote="https://github.com/adieyal/sd-dynamic-prompts")])
    rows = filter_index(entries, installed)
    assert [(e.name, done) for e, done in rows] == [("Dynamic Prompts", True), ("Tag Autocomplete", False)]
    assert [e.name for e, _ in filter_index(entries, installed, hide_installed=True)] == ["Tag Autocomplete"]
    assert [e.name for e, _ in filter_index(entries, set(), search="WILDCARD")] == ["Dynamic Prompts"]
    assert [e.name for e, _ in filter_index(entries, set(), sort="stars")] == ["Tag Autocomplete", "Dynamic Prompts"]
    assert [e.name for e, _ in filter_index(entries, set(), sort="added")] == ["Dynamic Prompts", "Tag Autocomplete"]


@pytest.mark.parametrize("content, message", [
    (None, "cannot read the extension index"),
    ("not json", "is not JSON"),
    ('{"something": []}', 'has no "extensions" list'),
])
def test_bad_index_gives_a_clear_error(tmp_path, content, message):
    path = tmp_path / "index.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(IndexError_, match=message):
        read_index(str(path))


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}).stdout


def test_check_for_updates_and_update_a_clone(tmp_path):
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    git(upstream, "init", "-q", "-b", "main")
    (upstream / "scripts.py").write_text("v = 1\n")
    git(upstream, "add", ".")
    git(upstream, "commit", "-qm", "one")
    clone = tmp_path / "extensions" / "ext"
    subprocess.run(["git", "clone", "-q", str(upstream), str(clone)], check=True)
    assert check_for_update(clone) == "up to date"
    (upstream / "scripts.py").write_text("v = 2\n")
    git(upstream, "commit", "-qam", "two")
    assert check_for_update(clone) == "behind 1 commit"
    assert update(clone).startswith("updated to ")
    assert (clone / "scripts.py").read_text() == "v = 2\n" and check_for_update(clone) == "up to date"
    plain = tmp_path / "extensions" / "plain"
    plain.mkdir()
    assert check_for_update(plain) == "not a git checkout: update it by hand"
