"""The parts txt2img and img2img share: the top row (prompts, token counters, Generate/Interrupt/Skip, paste,
styles), sampler/size/batch/seed/script controls, the output panel, and their handlers. Every generation goes
through `values_to_params` and `service.submit` (one code path with the API)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from app.families.sizes import ASPECT_RATIOS, MEGAPIXELS, size_for
from app.params import check_text
from app.ui import family_fields as FF
from app.ui import form as F
from app.ui.common import (
    TabForm,
    announced,
    error_html,
    follow_job,
    info_html,
    make_component,
    progress_html,
    stream_job,
    token_counter_text,
    tool_button,
)
from app.ui.context import UiContext

log = logging.getLogger(__name__)

PASTE_TOOLTIP = ("Read generation parameters from prompt or last generation if prompt is empty into user "
                 "interface.")
FOREVER_SECONDS = 1.0


def field(ctx: UiContext, tab: TabForm, name: str, restored: dict[str, Any], **extra: Any) -> Any:
    spec = next(s for s in F.fields_for(tab.extra["kind"]) if s.name == name)
    choices = ctx.choices(spec.choices, tab.tab) if isinstance(spec.choices, str) else None
    value = restored.get(name)
    if spec.choices == "hr_checkpoints" and isinstance(value, str):
        value = ctx.canonical_checkpoint(value)  # saved with its [hash], listed without (or the other way round)
    if choices is not None and value is not None and spec.kind == "dropdown":
        items = value if isinstance(value, list) else [value]
        if any(v not in choices for v in items):
            value = None
    return make_component(spec, tab, ctx.ui_config, choices=choices, value=value, **extra)


# -- layout ------------------------------------------------------------------------------------------------------
def build_toprow(ctx: UiContext, tab: TabForm, restored: dict[str, Any]) -> None:
    from app.ui import extra_networks, styles_editor
    from app.ui.extension_scripts import install_component_hooks

    install_component_hooks(ctx, tab)  # the first fields of a tab are built here
    t = tab.tab
    with gr.Row(elem_id=f"{t}_toprow", equal_height=False):
        with gr.Column(scale=6, elem_id=f"{t}_prompt_container"):
            with gr.Row(elem_classes=["prompt-row"]):
                field(ctx, tab, "prompt", restored, scale=8)
                tab.extra["token_counter"] = gr.HTML('<span>0/75</span>', elem_id=f"{t}_token_counter",
                                                     elem_classes=["token-counter"], min_height=0)
            with gr.Row(elem_classes=["prompt-row"]):
                field(ctx, tab, "negative_prompt", restored, scale=8)
                tab.extra["neg_token_counter"] = gr.HTML('<span>0/75</span>', elem_id=f"{t}_negative_token_counter",
                                                         elem_classes=["token-counter"], min_height=0)
            cfg = restored.get("cfg_scale", F.defaults(tab.extra["kind"]).get("cfg_scale"))
            tab.extra["neg_inactive"] = gr.HTML(F.negative_prompt_note(cfg), elem_id=f"{t}_neg_prompt_note",
                                                min_height=0)
        with gr.Column(scale=2, elem_id=f"{t}_actions_column", min_width=220):
            with gr.Row(elem_id=f"{t}_generate_box"):
                # announced to the extensions (ADetailer keeps `txt2img_generate` from after_component), as
                # A1111 does: its toprow is built before the scripts' ui()
                tab.extra["generate"] = announced(tab, gr.Button, value="Generate", elem_id=f"{t}_generate",
                                                  variant="primary", elem_classes=["generate-button"])
            with gr.Row(elem_id=f"{t}_interrupt_row"):
                tab.extra["interrupt"] = announced(tab, gr.Button, value="Interrupt", elem_id=f"{t}_interrupt",
                                                   size="sm", min_width=60)
                tab.extra["skip"] = announced(tab, gr.Button, value="Skip", elem_id=f"{t}_skip", size="sm",
                                              min_width=60)
            with gr.Row(elem_id=f"{t}_tools", equal_height=True):
                tab.extra["paste"] = tool_button("↙️", "paste" if t == "txt2img" else f"{t}_paste", PASTE_TOOLTIP, tab)
                tab.extra["clear"] = tool_button("🗑️", f"{t}_clear_prompt", "Clear prompt", tab)
                extra_networks.build_button(tab)
                tab.extra["apply_styles"] = tool_button("🖌️", f"{t}_style_apply",
                                                        "Apply all selected styles to prompts", tab)
                styles_editor.build_button(tab)
                field(ctx, tab, "styles", restored, scale=4, min_width=120, show_label=False,
                      container=False)
            # Generate forever runs on the server; atelier.js clicks these from the Generate context menu.
            with gr.Row(elem_classes=["atelier-hidden"]):
                tab.extra["forever_start"] = gr.Button("Generate forever", elem_id=f"{t}_forever_start")
                tab.extra["forever_cancel"] = gr.Button("Cancel generate forever", elem_id=f"{t}_forever_cancel")
    extra_networks.build_panel(ctx, tab)  # the 🎴 panel, under the prompt
    styles_editor.build_dialog(ctx, tab)


def build_sampler(ctx: UiContext, tab: TabForm, restored: dict[str, Any]) -> None:
    with gr.Row(elem_id=f"{tab.tab}_sampler_row"):
        field(ctx, tab, "sampler_name", restored)
        field(ctx, tab, "scheduler", restored)
        field(ctx, tab, "steps", restored)
        field(ctx, tab, "shift", restored, min_width=80, visible=_family_fields(ctx).flow)
        field(ctx, tab, "unconditional_first_steps", restored, min_width=80)


def build_size(ctx: UiContext, tab: TabForm, restored: dict[str, Any]) -> None:
    with gr.Row(elem_id=f"{tab.tab}_dimensions_row"):
        with gr.Column(scale=4):
            field(ctx, tab, "width", restored)
            field(ctx, tab, "height", restored)
        with gr.Column(scale=0, min_width=48):
            tab.extra["swap"] = tool_button("⇅", f"{tab.tab}_res_switch_btn", "Switch width/height")
            tab.extra["size_pick"] = tool_button("📐", f"{tab.tab}_size_pick_btn",
                                                 "Set width and height from the aspect ratio and megapixels")
    with gr.Row(elem_id=f"{tab.tab}_size_picker_row"):
        tab.extra["size_ratio"] = gr.Dropdown(list(ASPECT_RATIOS), value="1:1", label="Aspect ratio",
                                              elem_id=f"{tab.tab}_size_ratio", min_width=80)
        tab.extra["size_mp"] = gr.Dropdown([str(mp) for mp in MEGAPIXELS], value="1.0", label="Megapixels",
                                           elem_id=f"{tab.tab}_size_mp", min_width=80)


def picked_size(ctx: UiContext, ratio: str, megapixels: Any) -> tuple[int, int]:
    """The size picker: the ratio and megapixels snapped to the current model family's size step."""
    family = ctx.current_family()
    try:
        return size_for(str(ratio), float(megapixels), family.defaults.size_step)
    except (TypeError, ValueError) as exc:
        raise gr.Error(str(exc)) from None


def build_batch_cfg(ctx: UiContext, tab: TabForm, restored: dict[str, Any]) -> None:
    with gr.Row(elem_id=f"{tab.tab}_column_batch"):
        field(ctx, tab, "n_iter", restored)
        field(ctx, tab, "batch_size", restored)
    field(ctx, tab, "cfg_scale", restored)
    fields = _family_fields(ctx)  # shown for the selected checkpoint's family; app.ui.family_fields keeps it current
    field(ctx, tab, "distilled_cfg_scale", restored, info=FF.distilled_info(fields),
          visible=fields.distilled_cfg is not None)
    with gr.Row(elem_id=f"{tab.tab}_slg_row", visible=fields.skip_layers) as tab.extra["slg_row"]:  # SD3.5 only
        for name in ("skip_layer_guidance_scale", "skip_guidance_layers", "skip_layer_guidance_start",
                     "skip_layer_guidance_stop"):
            field(ctx, tab, name, restored, info=FF.SLG_INFO[name], show_label=True)


def _family_fields(ctx: UiContext) -> FF.FamilyFields:
    return FF.fields_of(FF.checkpoint_family(ctx, None))


def build_seed(ctx: UiContext, tab: TabForm, restored: dict[str, Any]) -> None:
    t = tab.tab
    with gr.Row(elem_id=f"{t}_seed_row"):
        field(ctx, tab, "seed", restored, scale=6)
        tab.extra["random_seed"] = tool_button("🎲", f"{t}_random_seed", "Set seed to -1 (a new random seed each time)")
        tab.extra["reuse_seed"] = tool_button("♻️", f"{t}_reuse_seed", "Reuse the seed of the selected image")
        extra = field(ctx, tab, "seed_extra", restored, scale=1)
    shown = bool(restored.get("seed_extra", False))
    with gr.Group(visible=True, elem_id=f"{t}_seed_extras", elem_classes=[] if shown else ["atelier-collapsed"]) as box:
        with gr.Row():
            field(ctx, tab, "subseed", restored, scale=6)
            tab.extra["random_subseed"] = tool_button("🎲", f"{t}_random_subseed", "Set variation seed to -1")
            tab.extra["reuse_subseed"] = tool_button("♻️", f"{t}_reuse_subseed", "Reuse the variation seed")
            field(ctx, tab, "subseed_strength", restored, scale=6)
        with gr.Row():
            field(ctx, tab, "seed_resize_from_w", restored)
            field(ctx, tab, "seed_resize_from_h", restored)
    extra.change(lambda on: gr.update(elem_classes=[] if on else ["atelier-collapsed"]), extra, box,
                 show_progress="hidden")


def build_scripts(ctx: UiContext, tab: TabForm, restored: dict[str, Any]) -> None:
    from app.ui.extension_scripts import build_alwayson_scripts
    from app.ui.scripts import build_script_args

    field(ctx, tab, "override_settings", restored)
    build_alwayson_scripts(ctx, tab)  # extensions' always-on scripts, above the Script dropdown (A1111)
    field(ctx, tab, "script_name", restored)
    build_script_args(ctx, tab)


def build_output(ctx: UiContext, tab: TabForm) -> None:
    t = tab.tab
    with gr.Column(elem_id=f"{t}_results", scale=5):
        tab.extra["progress"] = gr.HTML("", elem_id=f"{t}_progress", min_height=0)
        tab.extra["gallery"] = gr.Gallery(label="Output", show_label=False, elem_id=f"{t}_gallery", columns=4,
                                          height=512, object_fit="contain", format="png", interactive=False)
        with gr.Row(elem_id=f"{t}_image_buttons"):
            tab.extra["save"] = gr.Button("💾 Save", elem_id=f"save_{t}", size="sm")
            tab.extra["send_img2img"] = gr.Button("🖼️ Send to img2img", elem_id=f"{t}_send_to_img2img", size="sm")
            tab.extra["send_inpaint"] = gr.Button("🎨️ Send to inpaint", elem_id=f"{t}_send_to_inpaint", size="sm")
            tab.extra["send_extras"] = gr.Button("📐 Send to extras", elem_id=f"{t}_send_to_extras", size="sm")
        tab.extra["download"] = gr.File(label="Saved files", elem_id=f"download_files_{t}", visible=False,
                                        file_count="multiple", interactive=False)
        tab.extra["info"] = gr.HTML("", elem_id=f"html_info_{t}")
        tab.extra["result"] = gr.State({"images": [], "infotexts": [], "seeds": [], "subseeds": []})
        tab.extra["selected"] = gr.State(0)
        tab.extra["timer"] = gr.Timer(FOREVER_SECONDS, active=False)


# -- handlers ----------------------------------------------------------------------------------------------------
def values_from(tab: TabForm, args: Sequence[Any]) -> dict[str, Any]:
    names = [s.name for s in F.fields_for(tab.extra["kind"])]
    return dict(zip(names, args, strict=False))


def result_state(update: Any, result_images: list[Any]) -> dict[str, Any]:
    return {"images": result_images, "infotexts": update.infotexts, "seeds": update.seeds,
            "subseeds": update.subseeds}


def split_args(tab: TabForm, args: Sequence[Any]) -> tuple[dict[str, Any], list[Any], list[Any]]:
    """Handler args → (field values, extra inputs such as images, script inputs)."""
    n_fields = len(F.fields_for(tab.extra["kind"]))
    n_extra = int(tab.extra.get("n_extra", 0))
    return (values_from(tab, args[:n_fields]), list(args[n_fields:n_fields + n_extra]),
            list(args[n_fields + n_extra:]))


def params_from_args(tab: TabForm, build_params: Callable[[dict[str, Any], Sequence[Any]], Any],
                     args: Sequence[Any]) -> tuple[dict[str, Any], Any]:
    from app.ui.scripts import attach_script_args

    values, extra, script_values = split_args(tab, args)
    return values, attach_script_args(tab, build_params(values, extra), script_values)


def checked_params_from_args(ctx: UiContext, tab: TabForm,
                             build_params: Callable[[dict[str, Any], Sequence[Any]], Any],
                             args: Sequence[Any]) -> tuple[dict[str, Any], Any]:
    """`params_from_args`, then the text checks the API makes too (prompt length, text that cannot be saved):
    a ValueError naming the field, before anything is queued or remembered as last used."""
    values, params = params_from_args(tab, build_params, args)
    limit = ctx.settings.get("api_max_prompt_length")
    check_text(params, int(limit) if limit else None)
    return values, params


def on_load_counter(count: Callable[..., str]) -> Callable[..., Any]:
    """The page-load token count: nothing to do for an empty prompt without styles (the counter already shows 0).

    The load event and the prompt's change event run side by side; a load answer computed for the empty prompt could
    arrive after the answer for what the user typed meanwhile and put the counter back to 0."""

    def on_load(text: str, steps: Any, styles: Any) -> Any:
        if not text and not styles:
            return gr.skip()
        return count(text, steps, styles)

    return on_load


def make_generate(ctx: UiContext, tab: TabForm,
                  build_params: Callable[[dict[str, Any], Sequence[Any]], Any]) -> Callable[..., Any]:
    """The Generate handler: values → params → job → streamed (gallery, info, progress, result state)."""
    kind = tab.extra["kind"]

    def generate(*args: Any, request: gr.Request = None):  # noqa: ANN202 - gradio generator
        try:
            values, params = checked_params_from_args(ctx, tab, build_params, args)
        except (ValueError, TypeError) as exc:
            yield gr.skip(), error_html(str(exc)), "", gr.skip()
            return
        ctx.last_used.save(kind, values)
        session = getattr(request, "session_hash", None)
        for update in stream_job(ctx.service, params, kind, on_submit=lambda job: ctx.remember_job(session, job)):
            if not update.done:
                yield (gr.skip() if update.images is None else update.images), gr.skip(), update.progress, gr.skip()
            elif update.error:
                yield gr.skip(), update.info, "", gr.skip()
            else:
                yield update.images, update.info, "", result_state(update, update.images)

    return generate


def make_forever_tick(ctx: UiContext, tab: TabForm) -> Callable[..., Any]:
    """Timer handler while generate forever runs: show the loop's newest images once per page (the last
    generation shown is kept in a per-page State)."""
    kind = tab.extra["kind"]

    def tick(seen: int):  # noqa: ANN202
        loop = ctx.forever_loop(kind)
        state = loop.snapshot()
        timer_update = gr.Timer(active=state.running)
        if state.error:
            return (gr.skip(), error_html(f"Generate forever stopped: {state.error}"), "", gr.skip(), timer_update,
                    seen)
        job = state.job
        progress = ""
        if job is not None and not job.done:
            p = job.progress
            progress = progress_html(p.fraction, p.eta_seconds, f"Generate forever: image set {state.generation + 1}")
        if state.result is None or state.generation == seen:
            return gr.skip(), gr.skip(), progress, gr.skip(), timer_update, seen
        from app.ui.common import gallery_items

        r = state.result
        images = gallery_items(r)
        info = info_html(r.infotexts[0] if r.infotexts else "", r.warnings, f"Generate forever: {state.generation}")
        state_value = {"images": images, "infotexts": list(r.infotexts), "seeds": list(r.seeds),
                       "subseeds": list(r.subseeds)}
        return images, info, progress, state_value, timer_update, state.generation

    return tick


def wire_common(ctx: UiContext, tab: TabForm, extra_inputs: Sequence[Any],
                build_params: Callable[[dict[str, Any], Sequence[Any]], Any],
                generate_fn: Callable[..., Any] | None = None) -> None:
    """Connect the buttons every generation tab has."""
    kind = tab.extra["kind"]
    c, x = tab.components, tab.extra
    names = [s.name for s in F.fields_for(kind)]
    x["n_extra"] = len(extra_inputs)
    inputs = [c[n] for n in names] + list(extra_inputs) + list(x.get("script_inputs", []))
    outputs = [x["gallery"], x["info"], x["progress"], x["result"]]
    x["generate"].click(generate_fn or make_generate(ctx, tab, build_params), inputs, outputs, concurrency_limit=None,
                        show_progress="hidden", api_name=f"{kind}_generate")

    def interrupt(request: gr.Request = None) -> None:
        ctx.forever_loop(kind).interrupt()
        ctx.interrupt(getattr(request, "session_hash", None))

    def skip() -> None:
        if ctx.service is not None:
            ctx.service.skip()

    x["interrupt"].click(interrupt, None, None, queue=False, show_progress="hidden")
    x["skip"].click(skip, None, None, queue=False, show_progress="hidden")

    def forever_start(*args: Any):  # noqa: ANN202
        try:
            values, params = checked_params_from_args(ctx, tab, build_params, args)
        except (ValueError, TypeError) as exc:
            return error_html(str(exc)), gr.Timer(active=False)
        ctx.last_used.save(kind, values)
        ctx.forever_loop(kind).start(params)
        return progress_html(0, None, "Generate forever started"), gr.Timer(active=True)

    x["forever_start"].click(forever_start, inputs, [x["progress"], x["timer"]], show_progress="hidden")
    x["forever_cancel"].click(lambda: (ctx.forever_loop(kind).cancel(), "")[1], None, x["progress"],
                              show_progress="hidden")
    seen = gr.State(-1)
    x["timer"].tick(make_forever_tick(ctx, tab), seen, outputs + [x["timer"], seen], show_progress="hidden")

    # token counters (also recomputed after paste, since .change fires on programmatic updates)
    def counter(is_negative: bool) -> Callable[..., str]:
        def count(text: str, steps: Any, styles: Any) -> str:
            shown = token_counter_text(text, steps, is_negative=is_negative, styles=styles or (),
                                       style_db=ctx.style_db, llm=not ctx.current_family().prompt_weights)
            return f"<span>{shown}</span>"
        return count

    for box, out, neg in ((c["prompt"], x["token_counter"], False), (c["negative_prompt"], x["neg_token_counter"], True)):
        box.change(counter(neg), [box, c["steps"], c["styles"]], out, trigger_mode="always_last",
                   show_progress="hidden", queue=False)
    ctx_load = tab.extra.setdefault("on_load", [])
    # a page opened while generate forever runs (e.g. after the tab was closed) follows the loop again
    ctx_load.append((lambda: gr.Timer(active=ctx.forever_loop(kind).running), [], x["timer"]))
    ctx_load.append((on_load_counter(counter(False)), [c["prompt"], c["steps"], c["styles"]], x["token_counter"]))
    ctx_load.append((on_load_counter(counter(True)), [c["negative_prompt"], c["steps"], c["styles"]],
                     x["neg_token_counter"]))

    # small tools
    c["cfg_scale"].change(F.negative_prompt_note, c["cfg_scale"], x["neg_inactive"], queue=False,
                          show_progress="hidden")
    x["clear"].click(lambda: ("", ""), None, [c["prompt"], c["negative_prompt"]], queue=False)
    x["swap"].click(lambda w, h: (h, w), [c["width"], c["height"]], [c["width"], c["height"]], queue=False)
    x["size_pick"].click(lambda r, mp: picked_size(ctx, r, mp), [x["size_ratio"], x["size_mp"]],
                         [c["width"], c["height"]], queue=False)
    x["random_seed"].click(lambda: -1, None, c["seed"], queue=False)
    x["random_subseed"].click(lambda: -1, None, c["subseed"], queue=False)

    def reuse(key: str) -> Callable[[dict, int, Any], Any]:
        def fn(state: dict, index: int, current: Any) -> Any:
            seeds = (state or {}).get(key) or []
            if not seeds:
                return current
            offset = max(0, len((state or {}).get("images") or []) - len(seeds))  # the grid comes first
            i = max(0, (index or 0) - offset)
            return seeds[i] if i < len(seeds) else seeds[0]
        return fn

    x["reuse_seed"].click(reuse("seeds"), [x["result"], x["selected"], c["seed"]], c["seed"], queue=False)
    x["reuse_subseed"].click(reuse("subseeds"), [x["result"], x["selected"], c["subseed"]], c["subseed"], queue=False)

    def on_select(evt: gr.SelectData) -> int:
        return int(evt.index or 0)

    x["gallery"].select(on_select, None, x["selected"], queue=False)

    def apply_styles(prompt: str, negative: str, styles: list[str]) -> tuple[str, str, list[str]]:
        db = ctx.style_db
        if db is None or not styles:
            return prompt, negative, styles
        return db.apply_styles_to_prompt(prompt, styles), db.apply_negative_styles_to_prompt(negative, styles), []

    x["apply_styles"].click(apply_styles, [c["prompt"], c["negative_prompt"], c["styles"]],
                            [c["prompt"], c["negative_prompt"], c["styles"]], queue=False)

    from app.ui import extra_networks, styles_editor
    from app.ui.paste import make_paste, make_save

    extra_networks.wire(ctx, tab)
    styles_editor.wire(ctx, tab)

    x["paste"].click(make_paste(ctx, tab), [c[n] for n in names], [c[n] for n in names], queue=False)
    x["save"].click(make_save(ctx, kind), [x["result"], x["selected"]], [x["download"]], queue=False)


__all__ = ["build_batch_cfg", "build_output", "build_sampler", "build_scripts", "build_seed", "build_size",
           "build_toprow", "follow_job", "wire_common"]
