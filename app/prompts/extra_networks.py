"""Extra-network tags ``<type:arg:arg...>`` (spec §3.1), pure Python.

* ``<lora:name:te:unet:dyn>``, ``<lora:name:0.8>``, ``<lora:name:unet=0.3:te=0.5>``,
  ``<lyco:...>`` (the type is kept as written; the LoRA code maps ``lyco`` to ``lora``),
  ``<hypernet:name:multiplier>``. Any ``\\w+`` type is collected; deciding which types are
  known (and logging the others) is the caller's job.
* A tag is removed from the prompt without touching the spaces around it.
* Only the positive prompt is scanned: a tag in the negative prompt stays literal text.
* In a batch, only the **first** prompt supplies the extra-network data
  (:func:`parse_extra_networks_batch`); the tags are still removed from every prompt.

``ExtraNetworkRegistry`` maps a tag type to its handler. Each model manager owns one (the Runtime
builds it and registers the LoRA handlers into it), so two managers in one process never share handlers.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ExtraNetworkParams",
    "ExtraNetworkRegistry",
    "first_prompt_extra_networks",
    "format_extra_network_tag",
    "lora_weights",
    "parse_extra_networks",
    "parse_extra_networks_batch",
]

_TAG_RE = re.compile(r"<(\w+):([^>]+)>")


@dataclass
class ExtraNetworkParams:
    """The ``:``-separated arguments of one tag.

    ``items`` are all arguments in order; ``named`` holds the ``key=value`` ones (exactly one
    ``=``), ``positional`` the rest. Equality compares ``items`` only (as A1111).
    """

    items: list[str] = field(default_factory=list)
    positional: list[str] = field(default_factory=list)
    named: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.positional and not self.named:
            for item in self.items:
                parts = item.split("=", 2)
                if len(parts) == 2:
                    self.named[parts[0]] = parts[1]
                else:
                    self.positional.append(item)

    @classmethod
    def from_items(cls, items: list[str]) -> ExtraNetworkParams:
        return cls(items=list(items))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExtraNetworkParams):
            return NotImplemented
        return self.items == other.items

    __hash__ = None  # mutable, like a list


class ExtraNetworkRegistry:
    """The handlers for ``<type:...>`` tags of one model manager, by tag type (``lora``, ``lyco``...).

    A handler has ``activate(plan, items)`` and ``deactivate(plan)`` (``app.engine.conditioning.ExtraNetworkHandler``).
    """

    def __init__(self) -> None:
        self._handlers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def register(self, name: str, handler: Any) -> None:
        """Handle ``<name:...>`` tags with *handler* (replaces an earlier one)."""
        with self._lock:
            self._handlers[name] = handler

    def unregister(self, name: str) -> Any:
        """Remove the handler of ``<name:...>``; returns it (None when there was none)."""
        with self._lock:
            return self._handlers.pop(name, None)

    def get(self, name: str) -> Any:
        with self._lock:
            return self._handlers.get(name)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._handlers

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._handlers))


def parse_extra_networks(prompt: str) -> tuple[str, dict[str, list[ExtraNetworkParams]]]:
    """Remove every ``<type:args>`` tag; returns ``(prompt_without_tags, {type: [params, ...]})``."""
    found: dict[str, list[ExtraNetworkParams]] = defaultdict(list)

    def take(m: re.Match) -> str:
        found[m.group(1)].append(ExtraNetworkParams.from_items(m.group(2).split(":")))
        return ""

    return _TAG_RE.sub(take, prompt), dict(found)


def parse_extra_networks_batch(prompts: list[str]) -> tuple[list[str], dict[str, list[ExtraNetworkParams]]]:
    """Strip tags from every prompt; the extra-network data comes from the first prompt only."""
    cleaned: list[str] = []
    data: dict[str, list[ExtraNetworkParams]] | None = None
    for prompt in prompts:
        text, parsed = parse_extra_networks(prompt)
        if data is None:
            data = parsed
        cleaned.append(text)
    return cleaned, data or {}


def first_prompt_extra_networks(prompts: list[str]) -> dict[str, list[ExtraNetworkParams]]:
    """The extra-network data of a batch (its first prompt's tags)."""
    return parse_extra_networks_batch(prompts[:1])[1]


def _number(value: str, what: str, params: ExtraNetworkParams, convert: type) -> float | int:
    try:
        return convert(value)
    except ValueError:
        tag = ":".join(params.items)
        raise ValueError(f"extra network tag <…:{tag}>: {what} must be a number, got {value!r}") from None


def lora_weights(params: ExtraNetworkParams) -> tuple[float, float, int | None]:
    """``(te_multiplier, unet_multiplier, dyn_dim)`` of a ``<lora:...>`` tag (spec §3.1).

    Positional: name, te (default 1.0), unet (default te), dyn. Named ``te=``, ``unet=``,
    ``dyn=`` override; unet falls back to the (possibly overridden) te. A bad number raises
    ValueError naming the tag.
    """
    pos, named = params.positional, params.named
    te = _number(pos[1], "te multiplier", params, float) if len(pos) > 1 else 1.0
    if "te" in named:
        te = _number(named["te"], "te multiplier", params, float)
    unet = _number(pos[2], "unet multiplier", params, float) if len(pos) > 2 else te
    if "unet" in named:
        unet = _number(named["unet"], "unet multiplier", params, float)
    dyn = _number(pos[3], "dyn dim", params, int) if len(pos) > 3 else None
    if "dyn" in named:
        dyn = _number(named["dyn"], "dyn dim", params, int)
    return te, unet, dyn


def format_extra_network_tag(kind: str, name: str, multiplier: float | str | None = None) -> str:
    """``<kind:name:multiplier>`` (or ``<kind:name>``), e.g. for "Add network to prompt"."""
    if multiplier is None:
        return f"<{kind}:{name}>"
    return f"<{kind}:{name}:{multiplier}>"
