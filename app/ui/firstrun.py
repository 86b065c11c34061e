"""The "no model yet" box at the top of the page: where to put a checkpoint (the real absolute folder), the
supported families and the download command, from `app.firstrun` (the same text the console prints).

It is shown while no checkpoint exists and re-checked on every page load, so it disappears on the next reload
once a model is in place.
"""

from __future__ import annotations

import html
import logging
from typing import Any

import gradio as gr

from app.firstrun import CHECKPOINT_FILES, STARTER_DESCRIPTION, FirstRunGuide, first_run_guide

log = logging.getLogger(__name__)

ELEM_ID = "atelier_first_run"


def guide_html(guide: FirstRunGuide) -> str:
    """The box's HTML (every path and command escaped)."""
    esc = html.escape
    families = "".join(f"<li><b>{esc(f.label)}</b>: {esc(f.variants)}</li>" for f in guide.families)
    parts = [
        '<div class="atelier-first-run">',
        "<h3>No model yet: add a checkpoint to start generating</h3>",
        f"<p>Put a Stable Diffusion checkpoint ({esc(CHECKPOINT_FILES)} file) into this folder, then reload this "
        "page:</p>",
        f'<pre class="atelier-first-run-folder"><code>{esc(str(guide.folder))}</code></pre>',
        f"<p>Supported model families:</p><ul>{families}</ul>",
    ]
    if guide.download:
        parts += [
            f"<p>Or download {esc(STARTER_DESCRIPTION)} by typing this in a terminal:</p>",
            f'<pre class="atelier-first-run-command"><code>{esc(chr(10).join(guide.download))}</code></pre>',
        ]
    parts.append("</div>")
    return "".join(parts)


def _has_checkpoints(runtime: Any) -> bool:
    check = getattr(runtime, "has_checkpoints", None)
    if check is None:  # a test double without the cheap scan: assume a model, show nothing
        return True
    try:
        return bool(check())
    except OSError:  # an unreadable models folder: say nothing rather than break the page load
        log.exception("could not look for checkpoints")
        return True


def box_content(runtime: Any) -> str | None:
    """The box's HTML while there is no checkpoint, else None (no box)."""
    if _has_checkpoints(runtime):
        return None
    guide = runtime.first_run_guide() if hasattr(runtime, "first_run_guide") else first_run_guide(runtime.paths)
    return guide_html(guide)


def current_box(runtime: Any) -> Any:
    """The box's update for this page load: shown with the guide while there is no checkpoint, else hidden."""
    content = box_content(runtime)
    return gr.update(value=content or "", visible=content is not None)


def build_first_run(runtime: Any) -> tuple[Any, Any]:
    """The box (built as it is now) and its page-load handler `fn() -> update`."""
    content = box_content(runtime)
    box = gr.HTML(value=content or "", visible=content is not None, elem_id=ELEM_ID)

    def on_load() -> Any:
        return current_box(runtime)

    return box, on_load
