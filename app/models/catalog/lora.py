"""LoRA / LyCORIS files: names, aliases, metadata, sidecars and lookup (spec §3.2).

Pure module (no torch): only safetensors headers are read, never tensors.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.models.catalog.scan import (
    decode_metadata_values,
    find_preview,
    read_safetensors_metadata,
    read_user_metadata,
    walk_files,
)

log = logging.getLogger(__name__)

LORA_EXTENSIONS = (".pt", ".ckpt", ".safetensors")
#: Aliases that never resolve through the alias table (A1111 hard-codes these).
ALWAYS_FORBIDDEN_ALIASES = frozenset({"none", "Addams"})


@dataclass(frozen=True)
class LoraInfo:
    """One LoRA file.

    name: file name without extension (always usable in `<lora:name:w>`).
    alias: safetensors metadata `ss_output_name`, else the name.
    metadata: safetensors `__metadata__` (JSON-looking string values decoded), {} for .pt/.ckpt.
    user_metadata: the sidecar `<stem>.json` (activation text, preferred weight, notes, sd version ...).
    preview: `<stem>.png` / `<stem>.preview.png` / ... if present.
    sd_version: "SDXL" | "SD2" | "SD1" | "Unknown" guessed from metadata.
    hash: `sshs_model_hash` from metadata or the cached (addnet) hash, None when not known yet;
    `Catalog.lora_hash` computes it.
    """

    name: str
    alias: str
    filename: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)
    user_metadata: dict[str, Any] = field(default_factory=dict, compare=False)
    preview: str | None = None
    sd_version: str = "Unknown"
    hash: str | None = None
    error: str | None = None

    @property
    def is_safetensors(self) -> bool:
        return self.filename.lower().endswith(".safetensors")

    @property
    def shorthash(self) -> str | None:
        """First 12 hex of the hash (the `Lora hashes:` infotext value)."""
        return self.hash[:12] if self.hash else None

    @property
    def cache_title(self) -> str:
        """The cache.json title: `lora/<name>`."""
        return f"lora/{self.name}"

    def as_api(self) -> dict[str, Any]:
        """The `/sdapi/v1/loras` item."""
        return {"name": self.name, "alias": self.alias, "path": self.filename, "metadata": self.metadata}


def detect_sd_version(metadata: dict[str, Any]) -> str:
    """SDXL if `ss_base_model_version` starts with "sdxl_", SD2 if `ss_v2` == "True", SD1 for any other
    metadata, else Unknown (A1111's rule)."""
    if str(metadata.get("ss_base_model_version", "")).startswith("sdxl_"):
        return "SDXL"
    if str(metadata.get("ss_v2", "")) == "True":
        return "SD2"
    if metadata:
        return "SD1"
    return "Unknown"


def read_lora_info(path: Path, cached_hash: str | None = None) -> LoraInfo:
    """Build a LoraInfo from a file; an unreadable safetensors header is recorded in `error`, not raised."""
    name = os.path.splitext(path.name)[0]
    metadata: dict[str, Any] = {}
    error = None
    if path.name.lower().endswith(".safetensors"):
        try:
            raw, _ = read_safetensors_metadata(path)
            metadata = decode_metadata_values(raw)
        except (OSError, ValueError) as exc:
            error = str(exc)
            log.warning("LoRA %s: %s", path, exc)
    alias = metadata.get("ss_output_name")
    if not isinstance(alias, str) or not alias:
        alias = name
    sshs = metadata.get("sshs_model_hash")
    preview = find_preview(path)
    return LoraInfo(
        name=name,
        alias=alias,
        filename=os.path.abspath(path),
        metadata=metadata,
        user_metadata=read_user_metadata(path),
        preview=os.fspath(preview) if preview else None,
        sd_version=detect_sd_version(metadata),
        hash=(sshs if isinstance(sshs, str) and sshs else None) or cached_hash,
        error=error,
    )


class LoraIndex:
    """name/alias lookup with A1111's forbidden-alias rule (an alias shared by two files, `none`, `Addams`)."""

    def __init__(self, loras: Sequence[LoraInfo]) -> None:
        self.by_name: dict[str, LoraInfo] = {}
        self.by_alias: dict[str, LoraInfo] = {}
        self.forbidden: set[str] = {a.lower() for a in ALWAYS_FORBIDDEN_ALIASES}
        for info in loras:
            self.by_name[info.name] = info
            if info.alias in self.by_alias:
                self.forbidden.add(info.alias.lower())
            self.by_alias[info.name] = info
            self.by_alias[info.alias] = info

    def find(self, name: str) -> LoraInfo | None:
        """By alias or name; a forbidden alias only matches a file name."""
        if name.lower() in self.forbidden:
            return self.by_name.get(name)
        return self.by_alias.get(name)

    def preferred_name(self, info: LoraInfo, preference: str = "Alias from file") -> str:
        """What the UI inserts (setting `lora_preferred_name`): the alias unless "Filename" or forbidden."""
        if preference == "Filename" or info.alias.lower() in self.forbidden:
            return info.name
        return info.alias


def list_lora_files(dirs: Sequence[Path]) -> list[Path]:
    """LoRA candidates in scan order (each dir recursively, natural order)."""
    return walk_files(dirs, LORA_EXTENSIONS)
