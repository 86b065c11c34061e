"""Shared gradio pieces: components built from `FieldSpec`s with ui-config.json defaults, the error box, the
token counter, and the job runner that streams progress and previews from the job service."""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import gradio as gr

from app.ui.form import FieldSpec

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
ERROR_CLASS = "atelier-error"


# -- component registry ------------------------------------------------------------------------------------------
@dataclass
class TabForm:
    """The components of one generation tab, by field name, plus what the handlers need to find them."""

    tab: str
    components: dict[str, Any] = field(default_factory=dict)
    config_keys: dict[str, str] = field(default_factory=dict)  # field name -> ui-config "value" key
    extra: dict[str, Any] = field(default_factory=dict)  # buttons, gallery, ... by short name

    def ordered(self, names: Sequence[str]) -> list[Any]:
        return [self.components[n] for n in names]


#: elem_id → hover text; atelier.js sets them as `title` (gradio 6 buttons take no tooltip argument).
TOOLTIPS: dict[str, str] = {
    "txt2img_generate": "Generate (Ctrl+Enter). Right-click: generate forever",
    "img2img_generate": "Generate (Ctrl+Enter). Right-click: generate forever",
    "txt2img_interrupt": "Interrupt (Esc)", "img2img_interrupt": "Interrupt (Esc)",
    "txt2img_skip": "Skip (Alt+Enter)", "img2img_skip": "Skip (Alt+Enter)",
}


def tool_button(value: str, elem_id: str, tooltip: str = "", form: TabForm | None = None,
                **kwargs: Any) -> gr.Button:
    """A small square emoji button (🎲 ♻️ ⇅ ↙️ 🔄); announced to ``form``'s extensions when given."""
    if tooltip:
        TOOLTIPS[elem_id] = tooltip
    kwargs = {"value": value, "elem_id": elem_id, "elem_classes": ["tool"], "min_width": 40, "scale": 0, **kwargs}
    return announced(form, gr.Button, **kwargs) if form is not None else gr.Button(**kwargs)


def make_component(spec: FieldSpec, form: TabForm, ui_config: Any, *, choices: Sequence[Any] | None = None,
                   value: Any = None, visible: bool = True, **extra: Any) -> Any:
    """Create the gradio component of `spec` on `form.tab`: its default, range and visibility come from
    ui-config.json (`<prefix>/<Label>/<field>`, recorded when missing); `value` (last used) wins over the default."""
    tab = form.tab

    def cfg(fld: str, default: Any, options: Sequence[Any] | None = None) -> Any:
        return ui_config.get_or_default(spec.config_key(tab, fld), default, options) if ui_config else default

    opts = list(choices) if choices is not None else (list(spec.choices) if isinstance(spec.choices, tuple) else [])
    default = cfg("value", spec.default, opts if spec.kind in ("dropdown", "radio") and opts else None)
    if value is not None:
        default = value
    common = {"label": spec.label, "elem_id": spec.elem_id(tab), "visible": cfg("visible", visible), **extra}
    kind: type[Any]
    if spec.kind == "slider":
        kind, kw = gr.Slider, {"minimum": cfg("minimum", spec.minimum), "maximum": cfg("maximum", spec.maximum),
                               "step": cfg("step", spec.step)}
    elif spec.kind == "textbox":
        kind, kw = gr.Textbox, {"lines": spec.lines, "max_lines": max(spec.lines, 20), "placeholder": spec.label,
                                "show_label": False}
    elif spec.kind == "checkbox":
        kind, kw, default = gr.Checkbox, {}, bool(default)
    elif spec.kind == "number":
        kind, kw = gr.Number, {"precision": spec.precision}
    elif spec.kind == "radio":
        kind, kw, default = gr.Radio, {"choices": opts}, default if default in opts else spec.default
    elif spec.kind == "dropdown":
        if spec.multiselect:
            default = [v for v in (default or []) if not opts or v in opts or spec.name == "override_settings"]
        elif opts and default not in opts:
            default = opts[0]
        kind, kw = gr.Dropdown, {"choices": opts, "multiselect": spec.multiselect,
                                 "allow_custom_value": spec.name == "override_settings"}
    else:
        raise ValueError(f"field {spec.name!r}: unknown component kind {spec.kind!r}")
    comp = announced(form, kind, **{"value": default, **kw, **common})
    form.components[spec.name] = comp
    form.config_keys[spec.name] = spec.config_key(tab)
    return comp


def announced(form: TabForm, kind: type[Any], **kwargs: Any) -> Any:
    """``kind(**kwargs)``, announced to the tab's extensions (``before_component``/``after_component``) when it has
    any. Created in two steps, as A1111's patched gradio does: the ``before_component`` hooks get the object before
    its ``__init__`` ran (its class is known, nothing else), then the same object is initialised and goes to the
    ``after_component`` hooks (an extension may keep it, as ADetailer keeps the Generate button)."""
    comp = kind.__new__(kind)
    hooks = form.extra.get("component_hooks")  # extensions' before/after_component (app.ui.extension_scripts)
    if hooks is not None:
        hooks.before(comp, kwargs)
    comp.__init__(**kwargs)
    if hooks is not None:
        hooks.after(comp, kwargs)
    return comp


# -- messages ----------------------------------------------------------------------------------------------------
def error_html(message: str) -> str:
    """A readable red box for a failed job or bad input; the UI keeps working."""
    return f'<div class="{ERROR_CLASS}"><b>Error</b>: {html.escape(str(message))}</div>'


def info_html(infotext: str, warnings: Sequence[str] = (), extra: str = "") -> str:
    parts = [f'<p class="atelier-infotext">{html.escape(infotext).replace(chr(10), "<br>")}</p>']
    parts += [f'<p class="atelier-warning">{html.escape(w)}</p>' for w in warnings]
    if extra:
        parts.append(f'<p class="atelier-comment">{html.escape(extra)}</p>')
    return '<div class="atelier-info">' + "".join(parts) + "</div>"


def progress_html(fraction: float, eta: float | None, text: str = "", queued: int | None = None) -> str:
    pct = max(0.0, min(1.0, float(fraction or 0))) * 100
    if queued:
        label = f"Waiting in queue (position {queued})"
    else:
        label = f"{pct:.0f}%" + (f" ETA: {eta:.0f}s" if eta else "") + (f" — {html.escape(text)}" if text else "")
    return (f'<div class="atelier-progress"><div class="atelier-progress-bar" style="width:{pct:.1f}%"></div>'
            f'<span class="atelier-progress-text">{label}</span></div>')


# -- token counter -----------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    from app.prompts.count_tokenizers import clip_counter_tokenizer  # the same ids as the encoder's, without torch

    return clip_counter_tokenizer()


@lru_cache(maxsize=1)
def _qwen_tokenizer() -> Any:
    from app.prompts.count_tokenizers import qwen_counter_tokenizer  # the encoder's ids, without transformers

    return qwen_counter_tokenizer()


def llm_token_count(text: str) -> int:
    """Tokens a Qwen3 encoder sees for a prompt (A1111 markup removed, as the Z-Image encoder does)."""
    from app.families.zimage import plain_text

    plain, _ = plain_text(text or "")
    return len(_qwen_tokenizer()(plain).input_ids) if plain else 0


def token_counter_text(text: str, steps: Any = 20, *, is_negative: bool = False,
                       styles: Sequence[str] = (), style_db: Any = None, llm: bool = False) -> str:
    """`"12/75"` for the prompt box (spec §1.4), with styles applied when a style database is given; for a
    family with an LLM encoder (``llm``, Z-Image) the LLM's tokens against its 512-token window."""
    from app.prompts.chunks import token_count

    if style_db is not None and styles:
        try:
            apply = style_db.apply_negative_styles_to_prompt if is_negative else style_db.apply_styles_to_prompt
            text = apply(text, list(styles))
        except Exception:  # noqa: BLE001 - a broken style must not break the counter
            log.debug("could not apply styles for the token counter", exc_info=True)
    try:
        steps_i = max(1, int(float(steps)))
    except (TypeError, ValueError):
        steps_i = 20
    if llm:
        try:
            return f"{llm_token_count(text)}/512"
        except Exception as exc:  # noqa: BLE001
            log.debug("token counter failed: %s", exc)
            return "?/512"
    try:
        tokens, limit = token_count(text or "", _tokenizer(), steps=steps_i, is_negative=is_negative)
    except Exception as exc:  # noqa: BLE001
        log.debug("token counter failed: %s", exc)
        return "?/75"
    return f"{tokens}/{limit}"


# -- jobs --------------------------------------------------------------------------------------------------------
@dataclass
class JobUpdate:
    """One update of a running job for the output panel."""

    images: list[Any] | None  # None while no new preview exists
    info: str  # HTML
    infotexts: list[str]
    progress: str  # HTML
    done: bool = False
    error: str | None = None
    seeds: list[int] = field(default_factory=list)
    subseeds: list[int] = field(default_factory=list)


def gallery_items(result: Any) -> list[Any]:
    """Images for the gallery, in the result's order (the grid first when returned), aligned with its infotexts.
    They are PIL images carrying `info["parameters"]`; gradio writes that into the PNG it serves."""
    return list(getattr(result, "images", []) or [])


def stream_job(service: Any, params: Any, kind: str, poll: float = POLL_SECONDS,
               on_done: Callable[[Any], None] | None = None,
               on_submit: Callable[[Any], None] | None = None) -> Iterator[JobUpdate]:
    """Submit `params` as a `kind` job and yield progress (with the live preview) until it ends."""
    if service is None:
        yield JobUpdate([], error_html("the job service is not available"), [], "", done=True,
                        error="no job service")
        return
    try:
        job = service.submit(params, kind=kind, origin="ui")
    except Exception as exc:  # noqa: BLE001 - e.g. an unknown job kind
        yield JobUpdate([], error_html(str(exc)), [], "", done=True, error=str(exc))
        return
    if on_submit is not None:
        on_submit(job)
    yield from follow_job(service, job, poll, on_done)


def follow_job(service: Any, job: Any, poll: float = POLL_SECONDS,
               on_done: Callable[[Any], None] | None = None) -> Iterator[JobUpdate]:
    """Yield updates for an already submitted job until it finishes."""
    last_preview = -1
    while not job.done:
        p = job.progress
        position = service.position(job.id) if hasattr(service, "position") else None
        preview = None  # None = leave the gallery as it is
        if p.preview is not None and p.preview_id != last_preview:
            last_preview = p.preview_id
            preview = [p.preview]
        yield JobUpdate(preview, "", [], progress_html(p.fraction, p.eta_seconds, p.textinfo,
                                                       queued=position if position and position > 0 else None))
        job._done.wait(poll) if hasattr(job, "_done") else time.sleep(poll)
    try:
        result = job.wait(0)
    except Exception as exc:  # noqa: BLE001 - JobFailed / JobCancelled: show it, keep the UI usable
        yield JobUpdate([], error_html(str(exc)), [], "", done=True, error=str(exc))
        return
    if on_done is not None:
        on_done(result)
    infotexts = list(result.infotexts)
    comment = "Interrupted" if result.interrupted else ""
    yield JobUpdate(gallery_items(result), info_html(infotexts[0] if infotexts else "", result.warnings, comment),
                    infotexts, "", done=True, seeds=list(result.seeds), subseeds=list(result.subseeds))


def pick(values: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    return {n: values[n] for n in names if n in values}
