"""LoRA / LyCORIS networks applied per job by patching weights in place (spec §3).

* ``keys``: key formats and the module lookup; ``network``: parsed networks, deltas, LRU cache;
* ``patch``: CPU backups, in-place apply, bit-exact restore; ``apply``: networks → one pipeline;
* ``bundled``: embeddings bundled in a network; ``handler``: the engine's ``lora``/``lyco`` hook.

Nothing happens on import: call ``register_lora_handlers()`` once at startup.
"""

from __future__ import annotations

from typing import Any


def register_lora_handlers(catalog: Any = None, cache: Any = None) -> Any:
    """Register the ``<lora:…>``/``<lyco:…>`` handlers with the engine (see ``handler``)."""
    from app.models.lora.handler import register_lora_handlers as register

    return register(catalog, cache)


__all__ = ["register_lora_handlers"]
