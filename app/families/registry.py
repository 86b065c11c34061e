"""Families by stable id, and the family of a loaded model."""

from __future__ import annotations

from typing import Any

from app.families.base import Family

_FAMILIES: dict[str, Family] = {}


class UnknownFamilyError(KeyError):
    """A model whose family no registered adapter covers."""


def register(family: Family) -> Family:
    """Add (or replace) a family under its id; its loaded ids then resolve to it."""
    _FAMILIES[family.id] = family
    return family


def families() -> list[Family]:
    _ensure_builtin()
    return list(_FAMILIES.values())


def get_family(family_id: str) -> Family:
    _ensure_builtin()
    try:
        return _FAMILIES[family_id]
    except KeyError:
        raise UnknownFamilyError(f"unknown model family {family_id!r}") from None


def family_for_id(loaded_id: str) -> Family:
    """The family covering a ``LoadedModel.family`` value ("sd1-inpaint" -> SD 1.x)."""
    _ensure_builtin()
    for family in _FAMILIES.values():
        if loaded_id == family.id or loaded_id in family.loaded_ids:
            return family
    raise UnknownFamilyError(f"no model family covers {loaded_id!r}")


def family_of(loaded: Any) -> Family:
    """The family of a ``LoadedModel`` (or anything with a ``family`` id; default SD 1.x)."""
    return family_for_id(str(getattr(loaded, "family", "sd1") or "sd1"))


def _ensure_builtin() -> None:
    if not _FAMILIES:
        from app.families import flux, sd, sd3, zimage

        for family in (*sd.FAMILIES, zimage.ZIMAGE, *flux.FAMILIES, sd3.SD3):
            _FAMILIES.setdefault(family.id, family)
