"""Extra Networks cards (A1111's 🎴 panel, spec §8): what the UI lists for textual inversion, LoRA, checkpoints
and hypernetworks, built from the catalog's file lists (no torch, no model loading).

Each card knows its file, its folder relative to the model folder it was found in (the subfolder filter), its
preview image (`name.preview.png` / `.jpg` / `.webp` / ... next to the file), its user metadata (`name.json` next to
the file, as A1111's metadata editor writes it: `description`, `activation text`, `preferred weight`,
`negative text`, `notes`, `sd version`) and the text a click puts into the prompt. The user metadata file and the
preview are written here too (atomically; other keys of the JSON are kept).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.models.catalog.scan import PREVIEW_EXTENSIONS, find_preview, natural_sort_key, read_user_metadata
from app.outputs.fileio import write_json_atomic

__all__ = [
    "KINDS",
    "NetworkCard",
    "SORT_KEYS",
    "allowed_preview",
    "filter_cards",
    "list_cards",
    "lora_prompt",
    "metadata_path",
    "save_preview",
    "save_user_metadata",
    "sort_cards",
    "subfolders",
]

#: (kind, tab title) in A1111's tab order.
KINDS: tuple[tuple[str, str], ...] = (("textual_inversion", "Textual Inversion"), ("hypernetworks", "Hypernetworks"),
                                      ("checkpoints", "Checkpoints"), ("lora", "Lora"))
SORT_KEYS = ("name", "date", "path")
ALL_FOLDERS = "All"
#: The user-metadata fields the editor shows (A1111's key names in `name.json`).
METADATA_FIELDS = ("description", "activation text", "preferred weight", "negative text", "notes")


@dataclass(frozen=True)
class NetworkCard:
    """One card. `prompt` is what a click inserts (empty for checkpoints, which select `checkpoint` instead);
    `negative` goes into the negative prompt for LoRA `negative text`."""

    kind: str
    name: str
    filename: str
    folder: str  # relative to its model folder, "" at the top
    mtime: float
    prompt: str = ""
    negative: str = ""
    checkpoint: str = ""  # the checkpoint title a checkpoint card selects
    preview: str | None = None
    user_metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def description(self) -> str:
        return str(self.user_metadata.get("description") or "")

    @property
    def search_text(self) -> str:
        """What the search box matches (lower case): name, path, description and activation text."""
        parts = (self.name, self.filename, self.description, str(self.user_metadata.get("activation text") or ""))
        return " ".join(parts).lower()


def _folder_of(path: Path, roots: Sequence[Path]) -> str:
    for root in roots:
        try:
            rel = path.resolve().relative_to(root.resolve())
        except (ValueError, OSError):
            continue
        parent = rel.parent.as_posix()
        return "" if parent == "." else parent
    return ""


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _preview(path: Path) -> str | None:
    found = find_preview(path)
    return str(found) if found is not None else None


def _weight_text(value: Any) -> str:
    number = float(value)
    return f"{number:g}"


def lora_prompt(alias: str, user_metadata: dict[str, Any], default_multiplier: float = 1.0) -> str:
    """`<lora:alias:w>` with the preferred weight (0 / missing: the default multiplier), then the activation text,
    as A1111's card inserts it."""
    try:
        preferred = float(user_metadata.get("preferred weight") or 0.0)
    except (TypeError, ValueError):
        preferred = 0.0
    text = f"<lora:{alias}:{_weight_text(preferred or default_multiplier)}>"
    activation = str(user_metadata.get("activation text") or "").strip()
    return f"{text} {activation}" if activation else text


def _negative_text(user_metadata: dict[str, Any]) -> str:
    text = str(user_metadata.get("negative text") or "").strip()
    return f"({text}:1)" if text else ""


def list_cards(catalog: Any, kind: str, *, default_multiplier: float = 1.0,
               lora_name_preference: str = "Alias from file") -> list[NetworkCard]:
    """The cards of one kind from the catalog's current lists (unsorted, unfiltered)."""
    paths = catalog.paths
    if kind == "lora":
        roots = list(paths.lora_dirs)
        cards = []
        for info in catalog.loras():
            path = Path(info.filename)
            meta = read_user_metadata(path)
            alias = catalog.lora_preferred_name(info, lora_name_preference)
            cards.append(NetworkCard("lora", info.name, str(path), _folder_of(path, roots), _mtime(path),
                                     prompt=lora_prompt(alias, meta, default_multiplier),
                                     negative=_negative_text(meta), preview=_preview(path), user_metadata=meta))
        return cards
    if kind == "textual_inversion":
        roots = list(paths.embeddings_dirs)
        return [NetworkCard("textual_inversion", e.name, str(e.path), _folder_of(Path(e.path), roots),
                            _mtime(Path(e.path)), prompt=e.name, preview=_preview(Path(e.path)),
                            user_metadata=read_user_metadata(e.path))
                for e in catalog.embedding_files()]
    if kind == "checkpoints":
        roots = list(paths.ckpt_dirs)
        cards = []
        for info in catalog.checkpoints():
            path = Path(info.filename)
            cards.append(NetworkCard("checkpoints", info.name_for_extra, str(path), _folder_of(path, roots),
                                     _mtime(path), checkpoint=info.title, preview=_preview(path),
                                     user_metadata=read_user_metadata(path)))
        return cards
    if kind == "hypernetworks":
        return []  # hypernetworks are not supported: the tab is there (extensions look for it) and empty
    raise ValueError(f"unknown extra network kind {kind!r}")


def filter_cards(cards: Iterable[NetworkCard], search: str = "", folder: str = ALL_FOLDERS) -> list[NetworkCard]:
    """Cards whose text holds every word of `search` (case-insensitive) and that sit in `folder` or below it."""
    words = (search or "").lower().split()
    folder = "" if folder in (None, ALL_FOLDERS) else folder.strip("/")
    out = []
    for card in cards:
        if folder and card.folder != folder and not card.folder.startswith(folder + "/"):
            continue
        if all(w in card.search_text for w in words):
            out.append(card)
    return out


def sort_cards(cards: Iterable[NetworkCard], key: str = "name", descending: bool = False) -> list[NetworkCard]:
    """Sort by name (natural order), date (modification time) or path."""
    if key == "name":
        return sorted(cards, key=lambda c: natural_sort_key(c.name.lower()), reverse=descending)
    if key == "date":
        return sorted(cards, key=lambda c: (c.mtime, c.name.lower()), reverse=descending)
    if key == "path":
        return sorted(cards, key=lambda c: natural_sort_key(c.filename.lower()), reverse=descending)
    raise ValueError(f"unknown sort key {key!r}; use one of {', '.join(SORT_KEYS)}")


def subfolders(cards: Iterable[NetworkCard]) -> list[str]:
    """"All" and every folder (with its parents) that holds a card."""
    found: set[str] = set()
    for card in cards:
        parts = card.folder.split("/") if card.folder else []
        for i in range(1, len(parts) + 1):
            found.add("/".join(parts[:i]))
    return [ALL_FOLDERS, *sorted(found, key=natural_sort_key)]


# -- writing -----------------------------------------------------------------------------------------------------------
def metadata_path(model_file: str | os.PathLike[str]) -> Path:
    """`<file without extension>.json`, where A1111 keeps a network's user metadata."""
    return Path(os.path.splitext(os.fspath(model_file))[0] + ".json")


def save_user_metadata(model_file: str | os.PathLike[str], updates: dict[str, Any]) -> dict[str, Any]:
    """Write the editor's fields into the sidecar JSON (atomically), keeping every other key; returns the result.

    `preferred weight` is stored as a number (0 = use the default multiplier), as A1111 does; an unparsable weight
    is a ValueError naming the value."""
    data = read_user_metadata(model_file)
    for key, value in updates.items():
        if key == "preferred weight":
            try:
                value = float(value or 0)
            except (TypeError, ValueError):
                raise ValueError(f"preferred weight must be a number, got {value!r}") from None
        data[key] = value
    write_json_atomic(metadata_path(model_file), data)
    return data


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def save_preview(model_file: str | os.PathLike[str], png: bytes) -> Path:
    """Write `png` as `<file without extension>.preview.png` (atomically) and remove other previews of the file that
    would be shown before it (`<stem>.png`, `<stem>.preview.jpg`, ...), so the new one is the one shown."""
    if not png.startswith(_PNG_SIGNATURE):
        raise ValueError("the preview must be a PNG image")
    stem = os.path.splitext(os.fspath(model_file))[0]
    target = Path(f"{stem}.preview.png")
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(png)
    os.replace(tmp, target)
    model_suffix = Path(model_file).suffix.lower()
    for ext in PREVIEW_EXTENSIONS:
        for other in (Path(f"{stem}.{ext}"), Path(f"{stem}.preview.{ext}")):
            # `<stem>.png` may be the model itself (a PNG embedding): never removed
            if other != target and other.suffix.lower() != model_suffix and other.is_file():
                other.unlink()
    return target


_IMAGE_SUFFIXES = frozenset("." + e for e in PREVIEW_EXTENSIONS)


def allowed_preview(raw: str, roots: Iterable[Path]) -> Path | None:
    """The preview image `raw` names when it is an image file inside one of the model folders `roots`, else None
    (the thumbnail route serves nothing else: no model files, nothing outside those folders)."""
    if not raw or "\x00" in raw:
        return None
    try:
        path = Path(raw).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if path.suffix.lower() not in _IMAGE_SUFFIXES or not path.is_file():
        return None
    for root in roots:
        try:
            path.relative_to(Path(root).resolve())
        except (ValueError, OSError):
            continue
        return path
    return None
