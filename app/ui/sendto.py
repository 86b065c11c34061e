""""Send to img2img / inpaint / extras" from the output panels and the PNG Info tab: the selected image goes to
the target tab's input, its infotext is pasted into the target's fields, and the target tab is selected."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from app.ui import form as F
from app.ui.common import TabForm
from app.ui.context import UiContext
from app.ui.paste import image_from, selected_image, send_values


@dataclass
class BuiltUi:
    """Handles on the built UI (for wiring across tabs and for tests)."""

    ctx: UiContext
    blocks: Any
    tabs: Any
    quicksettings: dict[str, Any]
    txt2img: TabForm
    img2img: TabForm
    extras: dict[str, Any] | None
    pnginfo: dict[str, Any] | None
    extensions: dict[str, Any] | None
    settings: Any = None  # app.ui.settings_bind.SettingsBinding: the settings-bound components


def _fields(tab: TabForm) -> list[Any]:
    return [tab.components[s.name] for s in F.fields_for(tab.extra["kind"])]


def editor_value(image: Any) -> dict[str, Any] | None:
    return None if image is None else {"background": image, "layers": [], "composite": image}


def wire_send_to(ui: BuiltUi) -> None:
    ctx, txt, img = ui.ctx, ui.txt2img, ui.img2img
    i = img.extra
    img_fields = _fields(img)
    txt_fields = _fields(txt)
    n_img = len(img_fields)

    def to_img2img(inpaint: bool):  # noqa: ANN202
        def fn(state: dict, index: int, *current: Any) -> list[Any]:
            image, infotext = selected_image(state, index)
            if image is None:
                raise gr.Error("Nothing to send: generate or select an image first")
            values = send_values(ctx, img, infotext, current[:n_img])
            mode = 2 if inpaint else 0
            target = "img2img_inpaint_tab" if inpaint else "img2img_img2img_tab"
            image_update = editor_value(image) if inpaint else image
            return [image_update, *values, gr.Tabs(selected="img2img"), gr.Tabs(selected=target), mode,
                    gr.Group(visible=inpaint)]
        return fn

    def to_extras(state: dict, index: int) -> list[Any]:
        image, _ = selected_image(state, index)
        if image is None:
            raise gr.Error("Nothing to send: generate or select an image first")
        return [image, gr.Tabs(selected="extras")]

    common_out = [ui.tabs, i["mode_tabs"], i["mode"], i["inpaint_controls"]]
    for src in (txt, img):
        x = src.extra
        state = [x["result"], x["selected"]]
        x["send_img2img"].click(to_img2img(False), state + img_fields, [i["init_img"], *img_fields, *common_out])
        x["send_inpaint"].click(to_img2img(True), state + img_fields, [i["inpaint"], *img_fields, *common_out])
        if ui.extras is not None:
            x["send_extras"].click(to_extras, state, [ui.extras["image"], ui.tabs])

    # PNG Info → txt2img / img2img / inpaint / extras
    p = ui.pnginfo
    if p is None:
        return

    def png_to(target: TabForm, inpaint: bool = False):  # noqa: ANN202
        def fn(path: str | None, infotext: str, *current: Any) -> list[Any]:
            values = send_values(ctx, target, infotext or "", current)
            if target is txt:
                return [*values, gr.Tabs(selected="txt2img")]
            image = image_from(path) if path else None
            mode_tab = "img2img_inpaint_tab" if inpaint else "img2img_img2img_tab"
            return [editor_value(image) if inpaint else image, *values, gr.Tabs(selected="img2img"),
                    gr.Tabs(selected=mode_tab), 2 if inpaint else 0, gr.Group(visible=inpaint)]
        return fn

    p["send_txt2img"].click(png_to(txt), [p["image"], p["infotext"], *txt_fields], [*txt_fields, ui.tabs])
    p["send_img2img"].click(png_to(img), [p["image"], p["infotext"], *img_fields],
                            [i["init_img"], *img_fields, *common_out])
    p["send_inpaint"].click(png_to(img, True), [p["image"], p["infotext"], *img_fields],
                            [i["inpaint"], *img_fields, *common_out])
    if ui.extras is not None:
        p["send_extras"].click(lambda path: [image_from(path) if path else None, gr.Tabs(selected="extras")],
                               p["image"], [ui.extras["image"], ui.tabs])


__all__: Sequence[str] = ("BuiltUi", "editor_value", "wire_send_to")
