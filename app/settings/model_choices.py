"""The settings that name model files, tied to the catalog: the choices offered for `sd_model_checkpoint`,
`sd_vae` and `forge_additional_modules`, and what is recorded once a checkpoint is loaded (its canonical title and
sha256) or hashed by the worker process.

Split out of `app.runtime`: these are the only places where settings and the model catalog meet, and they must
never let a broken catalog break the settings page or a job. The catalog is passed as a getter because the
runtime creates it on first use; creating it can fail, and that failure is caught here like any other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("atelier")


def connect_model_choices(settings: Any, catalog: Callable[[], Any]) -> None:
    """Let *settings* offer the catalog's checkpoints, VAEs and text encoder / VAE modules as choices."""
    settings.set_choices_provider("sd_model_checkpoint", lambda: checkpoint_titles(catalog))
    settings.set_choices_provider("sd_vae", lambda: vae_names(catalog))
    settings.set_choices_provider("forge_additional_modules", lambda: module_names(catalog))


def checkpoint_titles(catalog: Callable[[], Any]) -> list[str]:
    """The `sd_model_checkpoint` choices (empty, and logged, when the catalog fails)."""
    try:
        return [c.title for c in catalog().checkpoints()]
    except Exception:  # a broken catalog must not break the settings page
        log.exception("could not list checkpoints")
        return []


def vae_names(catalog: Callable[[], Any]) -> list[str]:
    """The `sd_vae` choices: Automatic, None and the VAE files."""
    try:
        return ["Automatic", "None", *[v.name for v in catalog().vaes()]]
    except Exception:
        log.exception("could not list VAEs")
        return ["Automatic", "None"]


def module_names(catalog: Callable[[], Any]) -> list[str]:
    """The `forge_additional_modules` choices: text encoder and VAE file names (paths are accepted too)."""
    try:
        return [m.name for m in catalog().modules()]
    except Exception:
        log.exception("could not list text encoders and VAEs")
        return []


def note_loaded(settings: Any, handle: Any) -> None:
    """Record the loaded checkpoint's canonical title and sha256 (an alias such as "v1-5" becomes
    "v1-5-pruned-emaonly.safetensors [6ce0161689]", as A1111 stores it)."""
    title = getattr(handle, "title", None)
    if isinstance(title, str) and title:
        settings.set_quietly("sd_model_checkpoint", title)
    sha256 = getattr(handle, "sha256", None)
    if isinstance(sha256, str) and sha256:
        settings.set_quietly("sd_checkpoint_hash", sha256)


def note_model_hash(catalog: Callable[[], Any], state: Any) -> None:
    """The worker hashed a checkpoint while loading it (and wrote cache.json): give the server's catalog the
    hashed title too (`/sd-models`, `sd_model_checkpoint` show `name [shorthash]`, as in one process)."""
    if not state.sha256 or not state.filename:
        return
    try:
        cat = catalog()
        info = cat.checkpoint_for_file(state.filename)
        if info is not None and not info.sha256:
            cat.hash_cache.reload()  # the worker's write
            if cat.hash_cache.cached(info.cache_title, info.filename):  # never hash a big file here
                cat.ensure_hash(info)
    except Exception:  # noqa: BLE001 - a missing hash in a listing never fails a job
        log.exception("could not record the hash of %s", state.filename)
