"""``modules.deepbooru``: A1111's DeepDanbooru tagger. Atelier ships no DeepDanbooru model, so ``model.tag()``
raises ``UnsupportedFeature`` with that reason; ``start``/``stop`` do nothing."""

from __future__ import annotations

from typing import Any

from app.plugins.compat.sd_hijack import UnsupportedFeature

REASON = "unsupported: DeepDanbooru interrogation is not part of Atelier (it has no deepbooru model)"


class DeepDanbooru:
    """``deepbooru.model``: ``tag(pil_image)`` is unsupported."""

    def __init__(self) -> None:
        self.model = None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def load(self) -> None:
        raise UnsupportedFeature(REASON)

    def tag(self, pil_image: Any) -> str:
        raise UnsupportedFeature(REASON)

    def tag_multi(self, pil_image: Any, force_disable_ranks: bool = False) -> str:
        raise UnsupportedFeature(REASON)


model = DeepDanbooru()
