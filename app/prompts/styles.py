"""Prompt styles stored in ``styles.csv`` (spec §9.6), pure Python.

File format (A1111): a CSV with the header ``name,prompt,negative_prompt`` (the old
``name,text`` layout is read too), UTF-8 with or without BOM, fields may hold quoted newlines.
Rows whose name starts with ``#`` are comments; rows without a name are skipped. A missing file
is an empty database; an unreadable one is reported in :attr:`StyleDatabase.errors` and skipped.

Applying a style: a style text holding ``{prompt}`` gets the prompt substituted there; otherwise
the result is ``prompt + ", " + style`` with empty (stripped) parts dropped.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from app.outputs.fileio import write_text_atomic

__all__ = [
    "PromptStyle",
    "StyleDatabase",
    "apply_styles_to_prompt",
    "extract_original_prompts",
    "extract_style_text_from_prompt",
    "merge_prompts",
]

log = logging.getLogger(__name__)
FIELDS = ("name", "prompt", "negative_prompt")


@dataclass(frozen=True)
class PromptStyle:
    name: str
    prompt: str = ""
    negative_prompt: str = ""
    path: str | None = None  # the file it was loaded from / will be saved to


def merge_prompts(style_prompt: str, prompt: str) -> str:
    """One style applied to a prompt."""
    if "{prompt}" in style_prompt:
        return style_prompt.replace("{prompt}", prompt)
    return ", ".join(part for part in (prompt.strip(), style_prompt.strip()) if part)


def apply_styles_to_prompt(prompt: str, styles: Iterable[str]) -> str:
    """Apply style texts in order."""
    for style in styles:
        prompt = merge_prompts(style or "", prompt)
    return prompt


def extract_style_text_from_prompt(style_text: str, prompt: str) -> tuple[bool, str]:
    """Undo one style: ``(True, prompt_without_style)`` or ``(False, prompt)`` when it does not match."""
    stripped_prompt = prompt.strip()
    style = (style_text or "").strip()
    if "{prompt}" in style:
        left, _, right = style.partition("{prompt}")
        if stripped_prompt.startswith(left) and stripped_prompt.endswith(right):
            return True, stripped_prompt[len(left) : len(stripped_prompt) - len(right)]
    elif stripped_prompt.endswith(style):
        rest = stripped_prompt[: len(stripped_prompt) - len(style)]
        if rest.endswith(", "):
            rest = rest[:-2]
        return True, rest
    return False, prompt


def extract_original_prompts(style: PromptStyle, prompt: str, negative_prompt: str) -> tuple[bool, str, str]:
    """Undo a style on both prompts; it matches only if both parts match."""
    if not style.prompt and not style.negative_prompt:
        return False, prompt, negative_prompt
    ok, positive = extract_style_text_from_prompt(style.prompt, prompt)
    if not ok:
        return False, prompt, negative_prompt
    ok, negative = extract_style_text_from_prompt(style.negative_prompt, negative_prompt)
    if not ok:
        return False, prompt, negative_prompt
    return True, positive, negative


class StyleDatabase:
    """The styles of one or more CSV files; the first file is where new styles are saved."""

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike]) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        if not paths:
            raise ValueError("StyleDatabase needs at least one styles file path")
        self.paths: list[Path] = [Path(p) for p in paths]
        self.default_path = self.paths[0]
        self.styles: dict[str, PromptStyle] = {}
        self.errors: list[str] = []
        self._lock = threading.RLock()
        self._tables: dict[str, _Table] = {}  # path -> the file as read: header and raw rows, rewritten in place
        self._unreadable: set[str] = set()  # files that could not be read: never overwritten
        self.reload()

    # ------------------------------------------------------------------ reading
    def reload(self) -> None:
        with self._lock:
            self.styles = {}
            self.errors = []
            self._tables = {}
            self._unreadable = set()
            for path in self.paths:
                if path.is_file():
                    self._load(path)

    def _load(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8-sig")
            table = _read_table(text)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            message = f"styles file {path}: cannot be read ({e})"
            self.errors.append(message)
            self._unreadable.add(str(path))
            log.warning(message)
            return
        self._tables[str(path)] = table
        for style in table.styles(str(path)):
            self.styles[style.name] = style

    def names(self) -> list[str]:
        return list(self.styles)

    def get(self, name: str) -> PromptStyle | None:
        return self.styles.get(name)

    def get_style_prompts(self, names: Iterable[str]) -> list[str]:
        return [self.styles[n].prompt if n in self.styles else "" for n in names]

    def get_negative_style_prompts(self, names: Iterable[str]) -> list[str]:
        return [self.styles[n].negative_prompt if n in self.styles else "" for n in names]

    def apply_styles_to_prompt(self, prompt: str, names: Iterable[str]) -> str:
        """Apply the named styles (unknown names act as an empty style)."""
        return apply_styles_to_prompt(prompt, self.get_style_prompts(names))

    def apply_negative_styles_to_prompt(self, prompt: str, names: Iterable[str]) -> str:
        return apply_styles_to_prompt(prompt, self.get_negative_style_prompts(names))

    def extract_styles_from_prompt(self, prompt: str, negative_prompt: str) -> tuple[list[str], str, str]:
        """Find styles whose text the prompts end with (or wrap); returns (names, prompt, negative).

        Styles are peeled off one at a time (each at most once); the names come back in the
        order they would be applied.
        """
        found: list[str] = []
        candidates = list(self.styles.values())
        while True:
            for style in candidates:
                ok, new_prompt, new_negative = extract_original_prompts(style, prompt, negative_prompt)
                if ok:
                    prompt, negative_prompt = new_prompt, new_negative
                    candidates.remove(style)
                    found.append(style.name)
                    break
            else:
                break
        return list(reversed(found)), prompt, negative_prompt

    # ------------------------------------------------------------------ editing
    def add_style(self, name: str, prompt: str = "", negative_prompt: str = "", *, save: bool = True) -> PromptStyle:
        """Create or replace a style (kept in its file; new styles go to the first file)."""
        name = (name or "").strip()
        if not name:
            raise ValueError("style name must not be empty")
        if name.startswith("#"):
            raise ValueError(f"style name {name!r} must not start with '#' (that marks a comment row)")
        with self._lock:
            old = self.styles.get(name)
            path = old.path if old is not None and old.path else str(self.default_path)
            style = PromptStyle(name, prompt or "", negative_prompt or "", path)
            self.styles[name] = style
            if save:
                self.save()
        return style

    def delete_style(self, name: str, *, save: bool = True) -> bool:
        """Remove a style; returns whether it existed."""
        with self._lock:
            existed = self.styles.pop(name, None) is not None
            if existed and save:
                self.save()
        return existed

    def save(self) -> None:
        """Write every file atomically (temp file + rename); the default file is always written.

        Each file keeps what it had that is not a style: comment rows (`#...`), rows without a name, extra columns
        and their values, the row order. Styles update their row in place; new styles are appended."""
        with self._lock:
            by_path: dict[str, list[PromptStyle]] = {str(self.default_path): []}
            for style in self.styles.values():
                path = style.path or str(self.default_path)
                by_path.setdefault(path, []).append(replace(style, path=path))
            refused = sorted(p for p in by_path if p in self._unreadable)
            if refused:
                raise ValueError(f"styles file {refused[0]} could not be read; it is not overwritten (fix or move "
                                 "it, then reload the styles)")
            for path, styles in by_path.items():
                table = self._tables.get(path) or _Table(list(FIELDS), [])
                table = table.updated(styles)
                _write_table_atomic(Path(path), table)
                self._tables[path] = table
            for styles in by_path.values():
                for style in styles:
                    self.styles[style.name] = style


@dataclass
class _Table:
    """One styles file as read: its header (the old `text` column renamed `prompt`, `negative_prompt` added when
    missing) and its raw rows, so a save changes only the style cells."""

    header: list[str]
    rows: list[list[str]]

    def _index(self, column: str) -> int:
        return self.header.index(column)

    def _cell(self, row: list[str], column: str) -> str:
        i = self._index(column)
        return row[i] if i < len(row) else ""

    def styles(self, path: str) -> list[PromptStyle]:
        out = []
        for row in self.rows:
            name = self._cell(row, "name").strip()
            if name and not name.startswith("#"):
                out.append(PromptStyle(name, self._cell(row, "prompt"), self._cell(row, "negative_prompt"), path))
        return out

    def updated(self, styles: list[PromptStyle]) -> _Table:
        """The table with `styles` (this file's current styles) written into it."""
        wanted = {s.name: s for s in styles}
        written: set[str] = set()
        rows = []
        width = len(self.header)
        for raw in self.rows:
            row = list(raw) + [""] * (width - len(raw))
            name = self._cell(row, "name").strip()
            if not name or name.startswith("#"):
                rows.append(list(raw))  # a comment or an unnamed row: kept as it was
                continue
            style = wanted.get(name)
            if style is None or name in written:
                continue  # deleted (or a duplicate of a row already written)
            row[self._index("prompt")] = style.prompt
            row[self._index("negative_prompt")] = style.negative_prompt
            rows.append(row)
            written.add(name)
        for style in styles:
            if style.name not in written:
                row = [""] * width
                row[self._index("name")] = style.name
                row[self._index("prompt")] = style.prompt
                row[self._index("negative_prompt")] = style.negative_prompt
                rows.append(row)
        return _Table(list(self.header), rows)


def _read_table(text: str) -> _Table:
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    lines = [row for row in reader]
    if not lines:
        return _Table(list(FIELDS), [])
    header = [h.strip() for h in lines[0]]
    rows = [row for row in lines[1:] if row]
    if "name" not in header:
        raise csv.Error("the first row must be a header with a 'name' column")
    if "prompt" not in header:
        if "text" in header:  # A1111's old layout: name,text
            header[header.index("text")] = "prompt"
        else:
            header.append("prompt")
    if "negative_prompt" not in header:
        header.append("negative_prompt")
    return _Table(header, rows)


def _write_table_atomic(path: Path, table: _Table) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(table.header)
    writer.writerows(table.rows)
    write_text_atomic(path, buffer.getvalue(), encoding="utf-8-sig", newline="")
