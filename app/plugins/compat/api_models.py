"""``modules.api.models``: the request/response models of Atelier's A1111-compatible API, under A1111's names
where extensions import them."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    from app.api import models as api_models

    aliases = {"StableDiffusionTxt2ImgProcessingAPI": "Txt2ImgRequest",
               "StableDiffusionImg2ImgProcessingAPI": "Img2ImgRequest"}
    target = aliases.get(name, name)
    if hasattr(api_models, target):
        return getattr(api_models, target)
    raise AttributeError(f"module 'modules.api.models' has no attribute {name!r}")
