"""LoRA / LyCORIS networks applied per job by patching weights in place (spec §3).

* ``keys``: key formats and the module lookup; ``network``: parsed networks, deltas, LRU cache;
* ``patch``: CPU backups, in-place apply, bit-exact restore; ``apply``: networks → one pipeline;
* ``bundled``: embeddings bundled in a network; ``handler``: the engine's ``lora``/``lyco`` hook.

Nothing happens on import: the Runtime calls ``register_lora_handlers(manager.extra_networks)`` when it
builds the model manager.
"""

from __future__ import annotations

from typing import Any


def register_lora_handlers(registry: Any, catalog: Any = None, cache: Any = None) -> Any:
    """Register the ``<lora:…>``/``<lyco:…>`` handlers in *registry* (a manager's ``extra_networks``; see ``handler``)."""
    # deferred on purpose: the handler imports torch and the engine; importing app.models.lora stays cheap
    from app.models.lora.handler import register_lora_handlers as register

    return register(registry, catalog, cache)


__all__ = ["register_lora_handlers"]
