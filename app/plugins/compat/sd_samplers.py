"""``modules.sd_samplers``: the sampler list (names and aliases) as A1111's ``all_samplers``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SamplerData:
    name: str
    constructor: Any = None
    aliases: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


def _load() -> list[SamplerData]:
    from app.engine.sampling.names import api_samplers

    return [SamplerData(s["name"], None, list(s.get("aliases") or []), dict(s.get("options") or {}))
            for s in api_samplers()]


def __getattr__(name: str) -> Any:
    if name in ("all_samplers", "samplers", "samplers_for_img2img", "visible_samplers"):
        return _load()
    if name == "all_samplers_map":
        return {s.name: s for s in _load()}
    raise AttributeError(f"module 'modules.sd_samplers' has no attribute {name!r}")
