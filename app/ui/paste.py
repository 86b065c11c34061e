"""Paste ↙️ (infotext → every form field), "Send to" between tabs, and the Save button."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from app.infotext.parse import parse_generation_parameters
from app.infotext.paste import infotext_to_params
from app.params import GenerationParams
from app.ui import form as F
from app.ui.common import TabForm
from app.ui.context import UiContext

log = logging.getLogger(__name__)


def paste_values(ctx: UiContext, kind: str, text: str, current: Mapping[str, Any]) -> dict[str, Any]:
    """The form values after pasting infotext `text` over `current` (spec §4.4). Keys the infotext lacks keep
    their current value; Clip skip/VAE/settings that differ from the current settings go to Override settings."""
    parsed = parse_generation_parameters(text)
    try:
        base = F.values_to_params(kind, current)
    except (ValueError, TypeError):
        base = F.values_to_params(kind, {})
    settings = ctx.settings
    params, overrides = infotext_to_params(
        parsed, base, kind=kind, current_settings=settings.data,
        allow_checkpoint_swap=not settings.get("disable_weights_auto_swap", True))
    if params.clip_skip and params.clip_skip == settings.get("CLIP_stop_at_last_layers", 1):
        params.clip_skip = 0
    if params.vae and params.vae == settings.get("sd_vae", "Automatic"):
        params.vae = ""
    extra = bool(current.get("seed_extra")) or any(k in parsed for k in F.SEED_KEYS)
    values = F.params_to_values(kind, params, overrides, seed_extra=extra)
    # A1111's Refiner paste fields: ticked iff the infotext names a refiner, the checkpoint's closest match (or none)
    values["enable_refiner"] = "Refiner" in parsed
    if "Refiner" in parsed:
        found = ctx.catalog.find_checkpoint(str(parsed["Refiner"])) if ctx.catalog is not None else None
        values["refiner_checkpoint"] = str(found.title) if found is not None else ""
    return {**current, **values}


def make_paste(ctx: UiContext, tab: TabForm) -> Callable[..., list[Any]]:
    """Paste handler: the prompt box's text (or params.txt when empty) → every field."""
    kind = tab.extra["kind"]
    names = [s.name for s in F.fields_for(kind)]

    def paste(*args: Any) -> list[Any]:
        current = dict(zip(names, args, strict=False))
        text = str(current.get("prompt") or "").strip() or ctx.params_txt()
        if not text.strip():
            return list(args)
        values = paste_values(ctx, kind, text, current)
        return [values.get(n, current[n]) for n in names]

    return paste


def make_save(ctx: UiContext, kind: str) -> Callable[[dict, int], Any]:
    """💾 Save: copy the selected image (with its infotext) to `log/images` and offer it for download."""
    import gradio as gr

    def save(state: dict, index: int) -> Any:
        from PIL import Image

        from app.outputs.save import save_image

        images = (state or {}).get("images") or []
        infotexts = (state or {}).get("infotexts") or []
        if not images:
            raise gr.Error("Nothing to save: generate an image first")
        i = index if 0 <= (index or 0) < len(images) else 0
        item = images[i]
        image = item if isinstance(item, Image.Image) else Image.open(item[0] if isinstance(item, tuple) else item)
        folder = Path(getattr(ctx.paths, "log_dir", Path(ctx.paths.data_dir) / "log")) / "images"
        infotext = infotexts[i] if i < len(infotexts) else ""
        parsed = parse_generation_parameters(infotext) if infotext else {}
        seed = parsed.get("Seed")
        path = save_image(image, folder, infotext=infotext or None, save_to_dirs=False,
                          seed=int(seed) if seed and str(seed).lstrip("-").isdigit() else None,
                          prompt=str(parsed.get("Prompt", "")))
        return gr.File(value=[str(path)], visible=True)

    return save


def image_from(item: Any) -> Any:
    """A gallery/state entry (PIL image, path, or (path, caption)) as a PIL image."""
    from PIL import Image

    if item is None:
        return None
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, (tuple, list)):
        item = item[0]
    with Image.open(item) as im:
        im.load()
        return im.copy()


def selected_image(state: Mapping[str, Any] | None, index: int | None) -> tuple[Any, str]:
    images = (state or {}).get("images") or []
    infotexts = (state or {}).get("infotexts") or []
    if not images:
        return None, ""
    i = index if index is not None and 0 <= index < len(images) else 0
    return image_from(images[i]), (infotexts[i] if i < len(infotexts) else (infotexts[0] if infotexts else ""))


def send_values(ctx: UiContext, target: TabForm, infotext: str, current: Sequence[Any]) -> list[Any]:
    """The target tab's field values after pasting `infotext` (unchanged when there is none)."""
    names = [s.name for s in F.fields_for(target.extra["kind"])]
    cur = dict(zip(names, current, strict=False))
    if not infotext:
        return list(current)
    values = paste_values(ctx, target.extra["kind"], infotext, cur)
    return [values.get(n, cur[n]) for n in names]


__all__ = ["GenerationParams", "image_from", "make_paste", "make_save", "paste_values", "selected_image",
           "send_values"]
