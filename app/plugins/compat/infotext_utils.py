"""``modules.infotext_utils`` (older name ``modules.generation_parameters_copypaste``): infotext parsing."""

from __future__ import annotations

from typing import Any

from app.infotext.parse import parse_generation_parameters as _parse


def parse_generation_parameters(x: str, skip_fields: list[str] | None = None) -> dict[str, Any]:
    """An infotext as A1111's dict (``Prompt``, ``Negative prompt``, ``Steps``, ``Size-1``...)."""
    return _parse(x, tuple(skip_fields or ()))


def quote(text: Any) -> Any:
    from app.infotext.format import quote as q

    return q(text)
