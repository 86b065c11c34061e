"""Parts of ``modules.processing`` for A1111's own scripts: per-image prompt/seed lists set on ``p`` before
``process_images`` (Prompt matrix) and the colour-correction helpers (Loopback)."""

from __future__ import annotations

from typing import Any

from app.params import GenerationParams
from app.plugins.hooks import CARRIED_LISTS


def carry_per_image_lists(params: GenerationParams) -> None:
    """A1111 lets a script set ``p.prompt``, ``p.negative_prompt`` or ``p.seed`` to one value per image (Prompt
    matrix does): the first one becomes the job's value and the lists travel to ``hooks.job_started``, which
    gives them to the images in order."""
    carried: dict[str, list[Any]] = {}
    for name, key in (("prompt", "all_prompts"), ("negative_prompt", "all_negative_prompts")):
        value = getattr(params, name)
        if isinstance(value, (list, tuple)):
            items = [str(v) for v in value] or [""]
            setattr(params, name, items[0])
            carried[key] = items
    seed = params.seed.seed
    if isinstance(seed, (list, tuple)):
        numbers = [int(v) for v in seed] or [-1]
        params.seed.seed = numbers[0]
        carried["seeds"] = numbers
    if carried:
        params.extras[CARRIED_LISTS] = carried


def setup_color_correction(image: Any) -> Any:
    """What ``apply_color_correction`` matches colours to (A1111's name; the engine's own colour correction)."""
    from app.engine.image import color_correction

    return color_correction.correction_target(image)


def apply_color_correction(correction: Any, original_image: Any) -> Any:
    """``original_image`` with its colours matched to ``correction`` (from ``setup_color_correction``)."""
    from app.engine.image import color_correction

    return color_correction.apply(correction, original_image)
