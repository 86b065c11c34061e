"""``modules.extra_networks``: ``ExtraNetwork`` (the base class of ``<name:...>`` prompt-tag handlers),
``ExtraNetworkParams``, ``register_extra_network`` and the prompt parsing helpers, over Atelier's
``app.prompts.extra_networks``.

A registered A1111 handler joins the runtime's extra-network registry: for a job whose first prompt has
``<name:...>`` tags its ``activate(p, params_list)`` runs with ``p`` the job's processing view (infotext keys it
adds to ``p.extra_generation_params`` reach the images), and ``deactivate(p)`` after the job.
"""

from __future__ import annotations

from typing import Any

from app.plugins.compat.current import current
from app.prompts.extra_networks import ExtraNetworkParams, parse_extra_networks, parse_extra_networks_batch

__all__ = ["ExtraNetwork", "ExtraNetworkParams", "activate", "deactivate", "extra_network_registry",
           "parse_prompt", "parse_prompts", "register_extra_network", "lookup_extra_networks"]

#: name → the A1111 handler registered with ``register_extra_network``.
extra_network_registry: dict[str, Any] = {}


class ExtraNetwork:
    """Base class of an A1111 extra-network handler: ``name`` is the tag type (``<name:...>``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def activate(self, p: Any, params_list: list[ExtraNetworkParams]) -> None:
        raise NotImplementedError

    def deactivate(self, p: Any) -> None:
        raise NotImplementedError


class _Adapter:
    """An A1111 ``ExtraNetwork`` as an engine handler (``activate(plan, items)`` / ``deactivate(plan)``)."""

    def __init__(self, network: Any) -> None:
        self.network = network
        self._p: dict[int, Any] = {}

    def _p_for(self, plan: Any) -> Any:
        from app.plugins.compat.processing import StableDiffusionProcessing

        p = self._p.get(id(plan))
        if p is None:
            p = self._p[id(plan)] = StableDiffusionProcessing.from_params(plan.params)
            p.extra_generation_params = plan.extra  # what activate() adds lands in the infotext
        return p

    def activate(self, plan: Any, items: list[Any]) -> None:
        self.network.activate(self._p_for(plan), list(items))

    def deactivate(self, plan: Any) -> None:
        try:
            self.network.deactivate(self._p_for(plan))
        finally:
            self._p.pop(id(plan), None)


def register_extra_network(extra_network: Any) -> None:
    """Handle ``<extra_network.name:...>`` tags with an A1111 handler (in this runtime's registry)."""
    extra_network_registry[extra_network.name] = extra_network
    runtime = current().runtime
    registry = getattr(runtime, "extra_networks", None)
    if registry is not None:
        registry.register(extra_network.name, _Adapter(extra_network))


def register_extra_network_alias(extra_network: Any, alias: str) -> None:
    """Also handle ``<alias:...>`` tags with ``extra_network``."""
    extra_network_registry[alias] = extra_network
    registry = getattr(current().runtime, "extra_networks", None)
    if registry is not None:
        registry.register(alias, _Adapter(extra_network))


def lookup_extra_networks(extra_network_data: dict[str, list[ExtraNetworkParams]]) -> dict[Any, list[ExtraNetworkParams]]:
    """``{handler: params_list}`` for the tag types that have an A1111 handler."""
    return {extra_network_registry[name]: items for name, items in extra_network_data.items()
            if name in extra_network_registry}


def parse_prompt(prompt: str) -> tuple[str, dict[str, list[ExtraNetworkParams]]]:
    """``(prompt without tags, {type: [params...]})``."""
    return parse_extra_networks(prompt)


def parse_prompts(prompts: list[str]) -> tuple[list[str], dict[str, list[ExtraNetworkParams]]]:
    """Strip tags from every prompt; the data comes from the first one (A1111)."""
    return parse_extra_networks_batch(prompts)


def activate(p: Any, extra_network_data: dict[str, list[ExtraNetworkParams]]) -> None:
    """Call ``activate(p, params)`` of the A1111 handlers named in ``extra_network_data``."""
    for network, items in lookup_extra_networks(extra_network_data).items():
        network.activate(p, items)


def deactivate(p: Any, extra_network_data: dict[str, list[ExtraNetworkParams]]) -> None:
    """Call ``deactivate(p)`` of the A1111 handlers named in ``extra_network_data``."""
    for network in lookup_extra_networks(extra_network_data):
        network.deactivate(p)
