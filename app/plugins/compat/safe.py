"""``modules.safe``: A1111's restricted ``torch.load``. ``load`` reads tensors only (``weights_only=True``: nothing
in the pickle runs) unless Atelier was started with ``--disable-safe-unpickle``; ``unsafe_torch_load`` is
``torch.load`` itself, as in A1111."""

from __future__ import annotations

from typing import Any

from app.plugins.compat.current import current


def _unsafe_allowed() -> bool:
    return bool(getattr(getattr(current().runtime, "args", None), "disable_safe_unpickle", False))


def load(filename: Any, *args: Any, **kwargs: Any) -> Any:
    """``torch.load`` restricted to tensors and plain containers (the file is never executed)."""
    import torch

    kwargs.setdefault("map_location", "cpu")
    if not _unsafe_allowed():
        kwargs["weights_only"] = True
    return torch.load(filename, *args, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "unsafe_torch_load":
        import torch

        return torch.load
    raise AttributeError(f"module 'modules.safe' has no attribute {name!r}")
