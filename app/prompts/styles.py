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
        self.reload()

    # ------------------------------------------------------------------ reading
    def reload(self) -> None:
        with self._lock:
            self.styles = {}
            self.errors = []
            for path in self.paths:
                if path.is_file():
                    self._load(path)

    def _load(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8-sig")
            for row in csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True):
                style = _style_from_row(row, path)
                if style is not None:
                    self.styles[style.name] = style
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            message = f"styles file {path}: cannot be read ({e})"
            self.errors.append(message)
            log.warning(message)

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
        """Write every file atomically (temp file + rename); the default file is always written."""
        with self._lock:
            by_path: dict[str, list[PromptStyle]] = {str(self.default_path): []}
            for style in self.styles.values():
                path = style.path or str(self.default_path)
                by_path.setdefault(path, []).append(replace(style, path=path))
            for path, styles in by_path.items():
                _write_csv_atomic(Path(path), styles)
            for styles in by_path.values():
                for style in styles:
                    self.styles[style.name] = style


def _style_from_row(row: dict, path: Path) -> PromptStyle | None:
    name = (row.get("name") or "").strip()
    if not name or name.startswith("#"):
        return None
    prompt = row.get("prompt") if "prompt" in row else row.get("text")
    return PromptStyle(name, prompt or "", row.get("negative_prompt") or "", str(path))


def _write_csv_atomic(path: Path, styles: list[PromptStyle]) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(FIELDS)
    for style in styles:
        writer.writerow([style.name, style.prompt, style.negative_prompt])
    write_text_atomic(path, buffer.getvalue(), encoding="utf-8-sig", newline="")
