"""Shipped diffusers config skeletons (no weights, no tokenizer files) for each model family.

Each family folder mirrors a diffusers pipeline folder: ``model_index.json``, ``unet/config.json``,
``vae/config.json``, ``text_encoder/config.json`` (+ ``text_encoder_2/``) and
``scheduler/scheduler_config.json``; Z-Image (``zimage``) has ``transformer/config.json`` instead of a UNet. They hold
the public full-size architectures (SD1.5, SD2.x, SDXL base and refiner (no ``text_encoder/``: OpenCLIP bigG alone), Z-Image Turbo with its Qwen3-4B text encoder and the FLUX
VAE); the loader starts from them and overrides every dimension it can read from a file. ``qwen3_tokenizer/`` holds the
Qwen3 tokenizer data (see its NOTICE).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFIG_ROOT = Path(__file__).resolve().parent
FAMILIES: tuple[str, ...] = ("sd1", "sd1-inpaint", "sd2", "sd2v", "sdxl", "sdxl-inpaint", "sdxl-refiner", "zimage")
_COMPONENT_FILES = {
    "model_index": "model_index.json",
    "unet": "unet/config.json",
    "transformer": "transformer/config.json",
    "vae": "vae/config.json",
    "text_encoder": "text_encoder/config.json",
    "text_encoder_2": "text_encoder_2/config.json",
    "scheduler": "scheduler/scheduler_config.json",
}


def family_config_dir(family: str) -> Path:
    """The shipped config folder of *family* (``ValueError`` for an unknown family)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    return CONFIG_ROOT / family


def load_family_config(family: str, component: str) -> dict[str, Any]:
    """A fresh dict with the shipped config of *component* (unet, vae, text_encoder, ...) of *family*."""
    if component not in _COMPONENT_FILES:
        raise ValueError(f"unknown component {component!r}; expected one of {', '.join(_COMPONENT_FILES)}")
    path = family_config_dir(family) / _COMPONENT_FILES[component]
    if not path.is_file():
        raise ValueError(f"family {family!r} has no {component} config ({path})")
    return json.loads(path.read_text("utf-8"))
