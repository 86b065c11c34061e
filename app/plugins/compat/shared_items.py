"""``modules.shared_items``: the lists A1111's settings dropdowns show, which extensions reuse in their own UI
(ADetailer's "VAE" dropdown calls ``sd_vae_items()``). Over the runtime's catalog; empty lists without one."""

from __future__ import annotations

from app.plugins.compat import sd_models
from app.plugins.compat.current import current


def _catalog() -> object | None:
    return getattr(current().runtime, "catalog", None)


def sd_vae_items() -> list[str]:
    """"Automatic", "None", then the VAE names (the ``sd_vae`` setting's choices)."""
    catalog = _catalog()
    return list(catalog.vae_choices()) if catalog is not None else ["Automatic", "None"]


def refresh_vae_list() -> None:
    catalog = _catalog()
    if catalog is not None:
        catalog.refresh_vaes()


def sd_unet_items() -> list[str]:
    """A1111's UNet overrides (``sd_unet``): Atelier has none, so only "Automatic" and "None"."""
    return ["Automatic", "None"]


def refresh_unet_list() -> None:
    pass


def list_checkpoint_tiles(use_short: bool = False) -> list[str]:
    return sd_models.checkpoint_tiles(use_short)


def refresh_checkpoints() -> None:
    sd_models.list_models()
