"""Model families behind one seam (see :mod:`app.families.base`)."""

from app.families.base import Family, FamilyDefaults, LatentFormat
from app.families.registry import UnknownFamilyError, families, family_for_id, family_of, get_family, register

__all__ = [
    "Family",
    "FamilyDefaults",
    "LatentFormat",
    "UnknownFamilyError",
    "families",
    "family_for_id",
    "family_of",
    "get_family",
    "register",
]
