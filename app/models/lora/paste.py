"""LoRA parts of pasting an infotext (spec §3.4), for the paste code to call on the parsed dict.

Pure module (no torch):
* ``convert_addnet_fields(d)``: legacy kohya additional-networks keys (``AddNet Module N`` = ``LoRA``,
  ``AddNet Model N`` = ``name(hash)``, ``AddNet Weight A N``) become ``<lora:name:weight>`` tags appended
  to ``d["Prompt"]`` on a new line;
* ``rewrite_lora_aliases(d, catalog)``: a ``<lora:ALIAS:`` whose ``Lora hashes`` entry matches a local
  file's known hash is rewritten to that file's preferred name (setting ``lora_preferred_name``).
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

_ADDNET_NAME = re.compile(r"(.*)\s*\([0-9a-fA-F]+\)")
_LORA_TAG_HEAD = re.compile(r"<lora:([^:]+):")


def convert_addnet_fields(d: MutableMapping[str, Any]) -> list[str]:
    """Append ``<lora:…>`` tags for legacy ``AddNet`` fields; returns the tags added."""
    added: list[str] = []
    for key in list(d):
        if not key.startswith("AddNet Model "):
            continue
        num = key[len("AddNet Model ") :]
        if d.get(f"AddNet Module {num}") != "LoRA":
            continue
        name = d.get(key)
        if not name:
            continue
        match = _ADDNET_NAME.match(str(name))
        if match:
            name = match.group(1).strip()
        weight = d.get(f"AddNet Weight A {num}", "1.0")
        added.append(f"<lora:{name}:{weight}>")
    if added:
        d["Prompt"] = str(d.get("Prompt", "")) + "\n" + "".join(added)
    return added


def parse_lora_hashes(text: str) -> dict[str, str]:
    """``"a: 0123456789ab, b: …"`` → ``{"a": "0123456789ab", …}`` (malformed parts skipped)."""
    out: dict[str, str] = {}
    for part in str(text).split(","):
        name, sep, digest = part.partition(":")
        if sep and name.strip() and digest.strip():
            out[name.strip()] = digest.strip()
    return out


def rewrite_lora_aliases(d: MutableMapping[str, Any], catalog: Any, preference: str = "Alias from file") -> str:
    """Rewrite ``<lora:ALIAS:`` in ``d["Prompt"]`` to local names by hash; returns the new prompt."""
    prompt = str(d.get("Prompt", ""))
    hashes = parse_lora_hashes(d.get("Lora hashes", "") or "")
    if not hashes or "<lora:" not in prompt:
        return prompt
    by_hash: dict[str, Any] = {}
    for info in catalog.loras():
        short = info.shorthash
        if short:
            by_hash.setdefault(short.lower(), info)

    def replace(match: re.Match) -> str:
        short = hashes.get(match.group(1))
        info = by_hash.get(short.lower()) if short else None
        if info is None:
            return match.group(0)
        return f"<lora:{catalog.lora_preferred_name(info, preference)}:"

    d["Prompt"] = _LORA_TAG_HEAD.sub(replace, prompt)
    return d["Prompt"]
