"""``modules.ui_common`` (and the same helpers in ``modules.ui``): refresh buttons, the icons A1111's tool
buttons use, and small HTML helpers, built with the installed gradio."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import gradio as gr

from app.plugins.compat.ui_components import ToolButton

refresh_symbol = "\U0001f504"  # 🔄
random_symbol = "\U0001f3b2\ufe0f"  # 🎲️
reuse_symbol = "\u267b\ufe0f"  # ♻️
paste_symbol = "\u2199\ufe0f"  # ↙
folder_symbol = "\U0001f4c2"  # 📂
save_style_symbol = "\U0001f4be"  # 💾
apply_style_symbol = "\U0001f4cb"  # 📋
clear_prompt_symbol = "\U0001f5d1\ufe0f"  # 🗑️
extra_networks_symbol = "\U0001f3b4"  # 🎴
switch_values_symbol = "\u21c5"  # ⇅
restore_progress_symbol = "\U0001f300"  # 🌀
detect_image_size_symbol = "\U0001f4d0"  # 📐
up_down_symbol = "\u2195\ufe0f"  # ↕️


def create_refresh_button(refresh_component: Any, refresh_method: Callable[[], Any],
                          refreshed_args: dict[str, Any] | Callable[[], dict[str, Any]], elem_id: str | None) -> ToolButton:
    """A 🔄 button that calls ``refresh_method()`` and then updates ``refresh_component`` (one or a list)
    with ``refreshed_args`` (a dict, or a function returning one, e.g. ``{"choices": [...]}``)."""
    components = refresh_component if isinstance(refresh_component, list) else [refresh_component]
    label = elem_id or "refresh"

    def refresh() -> Any:
        refresh_method()
        args = refreshed_args() if callable(refreshed_args) else refreshed_args
        updates = [gr.update(**(args or {})) for _ in components]
        return updates if len(updates) > 1 else updates[0]

    button = ToolButton(value=refresh_symbol, elem_id=elem_id, elem_classes=[f"refresh-{label}"])
    button.click(fn=refresh, inputs=[], outputs=components)
    return button


def plaintext_to_html(text: str, classname: str | None = None) -> str:
    """``<p>`` lines of escaped text (A1111 ``plaintext_to_html``)."""
    body = "<br>\n".join(html.escape(x) for x in (text or "").split("\n"))
    return f"<p class='{classname}'>{body}</p>" if classname else f"<p>{body}</p>"


def gr_show(visible: bool = True) -> dict[str, Any]:
    """A gradio update that shows or hides a component (A1111 ``ui.gr_show``)."""
    return {"visible": visible, "__type__": "update"}


def setup_dialog(button_show: Any, dialog: Any, *, button_close: Any = None) -> None:
    """A1111 opens a popup dialog with JavaScript; here the dialog is shown and hidden with updates."""
    button_show.click(fn=lambda: gr.update(visible=True), inputs=[], outputs=[dialog])
    if button_close is not None:
        button_close.click(fn=lambda: gr.update(visible=False), inputs=[], outputs=[dialog])


def _gallery_image(item: Any) -> Any:
    """A PIL image from one gallery item as A1111 forks hand them to ``save_files``: ``(image, caption)``
    tuples, a PIL image, a file path, a ``{"name"/"path": file}`` dict, or a base64 (data URL) string."""
    import base64
    import io
    from pathlib import Path

    from PIL import Image

    if isinstance(item, (tuple, list)) and item:
        item = item[0]
    if isinstance(item, dict):
        item = item.get("path") or item.get("name") or (item.get("image") or {}).get("path")
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, str):
        try:
            is_file = not item.startswith("data:") and Path(item).is_file()
        except OSError:  # e.g. a base64 string longer than a file name may be
            is_file = False
        if is_file:
            return Image.open(item)
        try:
            return Image.open(io.BytesIO(base64.b64decode(item.split(",", 1)[-1], validate=True)))
        except (ValueError, OSError) as exc:
            raise ValueError(f"save_files: {item[:60]!r} is neither an image file nor base64 image data") from exc
    raise ValueError(f"save_files: cannot read an image from {type(item).__name__}")


def save_files(js_data: str, images: list[Any], do_make_zip: bool, index: int) -> tuple[dict[str, Any], str]:
    """A1111's Save button: write the gallery's images (only ``images[index]`` with ``save_selected_only``) into
    ``opts.outdir_save`` (under the data dir) with their infotext, append a row per image to ``log.csv`` there,
    and return ``(gr.update(value=<files>, visible=True), <"Saved: name" HTML>)``; ``do_make_zip`` adds a zip of
    them. ``js_data`` is the generation-info JSON (``infotexts``, ``index_of_first_image``, ``all_seeds``...)."""
    import csv
    import json
    import os
    import zipfile

    from app.plugins.compat import images as compat_images
    from app.plugins.compat.shared import opts

    data = json.loads(js_data) if js_data else {}
    infotexts = list(data.get("infotexts") or [])
    first = int(data.get("index_of_first_image", 0) or 0)
    chosen = list(enumerate(images))
    if index is not None and index > -1 and getattr(opts, "save_selected_only", True) and index < len(images):
        chosen = [(index, images[index])]
    folder = compat_images.resolve_output_dir(str(getattr(opts, "outdir_save", "") or "log/images"))
    os.makedirs(folder, exist_ok=True)
    log_file = os.path.join(folder, "log.csv")
    new_log = not os.path.exists(log_file)
    files: list[str] = []
    with open(log_file, "a", encoding="utf8", newline="") as f:
        writer = csv.writer(f)
        if new_log:
            writer.writerow(["prompt", "seed", "width", "height", "sampler", "cfgs", "steps", "filename",
                             "negative_prompt", "sd_model_name", "sd_model_hash"])
        for i, item in chosen:
            image = _gallery_image(item)
            text = infotexts[i] if i < len(infotexts) else (image.info.get("parameters") or "")
            seeds = data.get("all_seeds") or [data.get("seed")]
            seed = seeds[max(i - first, 0)] if max(i - first, 0) < len(seeds) else None
            prompts = data.get("all_prompts") or [data.get("prompt", "")]
            prompt = prompts[max(i - first, 0)] if max(i - first, 0) < len(prompts) else ""
            fullfn, _ = compat_images.save_image(image, folder, "", seed=seed, prompt=prompt,
                                                 extension=str(getattr(opts, "samples_format", "png") or "png"),
                                                 info=text or None,
                                                 save_to_dirs=bool(getattr(opts, "use_save_to_dirs_for_ui", False)))
            files.append(fullfn)
            writer.writerow([prompt, seed, image.width, image.height, data.get("sampler_name"),
                             data.get("cfg_scale"), data.get("steps"), os.path.basename(fullfn),
                             data.get("negative_prompt", ""), data.get("sd_model_name"), data.get("sd_model_hash")])
    if do_make_zip and files:
        zip_path = os.path.join(folder, "images.zip")
        with zipfile.ZipFile(zip_path, "w") as zf:
            for name in files:
                zf.write(name, arcname=os.path.basename(name))
        files.insert(0, zip_path)
    shown = os.path.basename(files[-1]) if files else "nothing"
    return gr.update(value=files, visible=True), plaintext_to_html(f"Saved: {shown}")
