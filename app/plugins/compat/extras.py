"""``modules.extras``: ``run_pnginfo(image)`` as A1111's PNG Info tab computes it (image browsers call it per
image), over Atelier's infotext reader."""

from __future__ import annotations

import html
from typing import Any


def run_pnginfo(image: Any) -> tuple[str, str | None, str]:
    """``("", infotext, info_html)``: the generation parameters stored in ``image`` (None when there are none)
    and an HTML listing of every text item, as A1111 returns them (the first value is unused there too)."""
    from app.infotext.storage import read_info_from_image

    if image is None:
        return "", "", ""
    geninfo, items = read_info_from_image(image)
    shown = {**({"parameters": geninfo} if geninfo else {}), **{k: v for k, v in items.items() if k != "parameters"}}
    parts = [f"<div><p><b>{html.escape(str(k))}</b></p><p>{html.escape(str(v))}</p></div>"
             for k, v in shown.items() if isinstance(v, (str, int, float))]
    info = "".join(parts) or "<div><p>Nothing found in the image.</p></div>"
    return "", geninfo, info
