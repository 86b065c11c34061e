"""The gradio UI without a browser: layout/elem_ids, ui-config.json, paste mapping, last-used values,
generation through the real job service on the tiny SD1 model, and the server-side generate-forever loop."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from app.cli import parse_args
from app.params import GenerationParams
from app.ui import form as F
from tests.helpers import wait_for_step, wait_until

TXT2IMG_IDS = [
    "quicksettings", "tabs", "tab_txt2img", "tab_img2img", "tab_extras", "tab_pnginfo", "tab_settings",
    "tab_extensions", "txt2img_prompt", "txt2img_neg_prompt", "txt2img_token_counter",
    "txt2img_negative_token_counter", "txt2img_generate", "txt2img_interrupt", "txt2img_skip", "txt2img_styles",
    "paste", "txt2img_sampling", "txt2img_scheduler", "txt2img_steps", "txt2img_shift",
    "txt2img_unconditional_first_steps", "txt2img_neg_prompt_note", "txt2img_hr", "txt2img_hr_upscaler",
    "txt2img_hires_steps", "txt2img_denoising_strength", "txt2img_hr_scale", "txt2img_hr_resize_x",
    "txt2img_hr_resize_y", "txt2img_width", "txt2img_height", "txt2img_res_switch_btn", "txt2img_batch_count",
    "txt2img_batch_size", "txt2img_cfg_scale", "txt2img_seed", "txt2img_random_seed", "txt2img_reuse_seed",
    "txt2img_subseed_show", "txt2img_subseed", "txt2img_subseed_strength", "txt2img_seed_resize_from_w",
    "txt2img_seed_resize_from_h", "txt2img_script", "txt2img_gallery", "txt2img_results", "html_info_txt2img",
    "save_txt2img", "txt2img_send_to_img2img", "txt2img_send_to_inpaint", "txt2img_send_to_extras",
    "setting_sd_model_checkpoint", "setting_sd_vae", "setting_CLIP_stop_at_last_layers",
    "refresh_sd_model_checkpoint",
    "txt2img_extra_networks", "txt2img_extra_tabs", "txt2img_lora", "txt2img_textual_inversion",
    "txt2img_checkpoints", "txt2img_hypernetworks", "txt2img_styles_edit_button", "txt2img_styles_dialog",
    "tab_modelmerger", "modelmerger_primary_model_name", "modelmerger_merge",
    "txt2img_enable", "txt2img_enable-checkbox", "txt2img_checkpoint", "txt2img_checkpoint_refresh",
    "txt2img_switch_at",
]
IMG2IMG_IDS = [
    "mode_img2img", "img2img_prompt", "img2img_generate", "img2img_image", "img2img_sketch", "img2maskimg",
    "inpaint_sketch", "img_inpaint_base", "img_inpaint_mask", "img2img_batch_input_dir", "img2img_resize_mode",
    "img2img_denoising_strength", "img2img_mask_blur", "img2img_mask_mode", "img2img_inpainting_fill",
    "img2img_inpaint_full_res", "img2img_inpaint_full_res_padding", "img2img_gallery",
    "extras_image", "extras_upscaler_1", "extras_upscaler_2", "pnginfo_image", "settings_submit",
    "extensions_installed_html", "install_url", "img2img_enable", "img2img_checkpoint", "img2img_switch_at",
]


def _runtime(data: Path, *extra: str):
    from app.runtime import Runtime

    runtime = Runtime(parse_args(["--data-dir", str(data), *extra], environ={}))
    runtime.start()
    return runtime


@pytest.fixture(scope="module")
def data_dir(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ui-data")
    shutil.copytree(tiny_data_dir / "models", out / "models", ignore=shutil.ignore_patterns("tiny-sd2v*", "tiny-sdxl*"))
    shutil.copytree(tiny_data_dir / "embeddings", out / "embeddings")
    (out / "extensions" / "my-ext").mkdir(parents=True)
    return out


@pytest.fixture(scope="module")
def built(data_dir: Path):
    from app.ui import build_blocks

    runtime = _runtime(data_dir)
    demo, ui = build_blocks(runtime)
    runtime.ui_config.save_if_dirty()
    yield runtime, demo, ui
    runtime.shutdown()


def _elem_ids(demo) -> list[str]:
    return [c.get("props", {}).get("elem_id") for c in demo.get_config_file()["components"]]


def test_build_ui_returns_blocks_and_mount_options(built) -> None:
    import gradio as gr

    from app.ui import mount_kwargs

    _, demo, _ = built
    assert isinstance(demo, gr.Blocks)
    kwargs = mount_kwargs()
    assert "#quicksettings" in kwargs["css"] and "head" not in kwargs  # atelier.js comes with the page (page_assets)


@pytest.mark.parametrize("elem_id", TXT2IMG_IDS + IMG2IMG_IDS)
def test_a1111_elem_ids_exist(built, elem_id: str) -> None:
    assert elem_id in _elem_ids(built[1])


def test_elem_ids_are_unique(built) -> None:
    ids = [i for i in _elem_ids(built[1]) if i]
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes


def test_tab_order(built) -> None:
    ids = [i for i in _elem_ids(built[1]) if i and i.startswith("tab_")]
    assert ids == ["tab_txt2img", "tab_img2img", "tab_extras", "tab_pnginfo", "tab_modelmerger", "tab_queue",
                   "tab_settings", "tab_extensions"]


@pytest.mark.parametrize(("key", "value"), [
    ("txt2img/Width/value", 512), ("txt2img/Width/minimum", 64), ("txt2img/Width/maximum", 2048),
    ("txt2img/Width/step", 8), ("txt2img/CFG Scale/value", 7.0), ("txt2img/Batch count/value", 1),
    ("txt2img/Upscaler/value", "Latent"), ("txt2img/Hires steps/value", 0), ("txt2img/Upscale by/value", 2.0),
    ("txt2img/Hires. fix/value", False), ("img2img/Denoising strength/value", 0.75),
    ("customscript/sampler.py/txt2img/Sampling steps/value", 20),
    ("customscript/sampler.py/txt2img/Sampling method/value", "DPM++ 2M"),
    ("customscript/sampler.py/txt2img/Schedule type/value", "Automatic"),
    ("customscript/seed.py/txt2img/Seed/value", -1), ("img2img/Mask blur/value", 4),
    ("img2img/Masked content/value", "original"), ("img2img/Only masked padding, pixels/value", 32),
    ("customscript/refiner.py/txt2img/Refiner/value", False), ("customscript/refiner.py/img2img/Checkpoint/value", ""),
    ("customscript/refiner.py/txt2img/Switch at/value", 0.8), ("customscript/refiner.py/txt2img/Switch at/minimum", 0.01),
])
def test_ui_config_written_with_defaults(built, data_dir: Path, key: str, value) -> None:
    saved = json.loads((data_dir / "ui-config.json").read_text())
    assert saved[key] == value


def test_ui_config_edits_are_respected(tmp_path: Path, data_dir: Path) -> None:
    from app.ui import build_blocks

    data = tmp_path / "d"
    shutil.copytree(data_dir / "models", data / "models")
    (data / "ui-config.json").write_text(json.dumps({
        "txt2img/Width/value": 256, "txt2img/Width/maximum": 1024, "txt2img/Height/visible": False,
        "customscript/sampler.py/txt2img/Sampling method/value": "Euler a",
        "customscript/sampler.py/txt2img/Schedule type/value": "no such schedule",
    }))
    runtime = _runtime(data)
    _, ui = build_blocks(runtime)
    c = ui.txt2img.components
    assert c["width"].value == 256 and c["width"].maximum == 1024
    assert c["height"].visible is False
    assert c["sampler_name"].value == "Euler a"
    assert c["scheduler"].value == "Automatic"  # a saved value outside the choices is ignored


def test_values_to_params_defaults_and_ints() -> None:
    params = F.values_to_params("txt2img", {"prompt": "p", "cfg_scale": 7.0, "steps": 3.0, "seed": 5.0})
    assert params.prompt == "p" and params.steps == 3 and params.seed.seed == 5
    assert params.cfg_scale == 7 and isinstance(params.cfg_scale, int)
    assert params.seed.subseed == -1  # Extra unchecked: variation fields are not used
    assert F.values_to_params("txt2img", {"cfg_scale": 7.5}).cfg_scale == 7.5


@pytest.mark.parametrize(("values", "message"), [
    ({"width": 100}, "Width"), ({"steps": 0}, "Sampling steps"), ({"seed": "abc"}, "Seed"),
    ({"override_settings": ["Bogus: 1"]}, "Override settings"),
])
def test_values_to_params_errors_name_the_field(values, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        F.values_to_params("txt2img", values)


def test_params_round_trip_img2img() -> None:
    values = {**F.defaults("img2img"), "inpainting_fill": "latent noise", "inpaint_full_res": "Only masked",
              "resize_mode": "Crop and resize", "mask_blur": 8, "seed_extra": True, "subseed": 3,
              "subseed_strength": 0.5, "override_settings": ["Clip skip: 2", "ENSD: 31337"]}
    params = F.values_to_params("img2img", values)
    i = params.img2img
    assert (i.inpainting_fill, i.inpaint_full_res, i.resize_mode, i.mask_blur_x) == (2, True, 1, 8)
    assert params.override_settings == {"eta_noise_seed_delta": 31337} and params.clip_skip == 2
    back = F.params_to_values("img2img", params)
    assert {k: back[k] for k in values if k in back} == {k: values[k] for k in values if k in back}


INFOTEXT = ("a photo of a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, Schedule type: Karras, "
            "CFG scale: 7.5, Seed: 1234, Size: 512x768, Model hash: 6ce0161689, Model: v1-5, Denoising strength: 0.5, "
            "Clip skip: 2, ENSD: 31337, Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent, "
            "Variation seed: 77, Variation seed strength: 0.25, Version: v1.10.1")


@pytest.mark.parametrize(("name", "expected"), [
    ("prompt", "a photo of a cat"), ("negative_prompt", "blurry"), ("steps", 20), ("sampler_name", "Euler a"),
    ("scheduler", "Karras"), ("cfg_scale", 7.5), ("seed", 1234), ("width", 512), ("height", 768),
    ("enable_hr", True), ("hr_scale", 2.0), ("hr_second_pass_steps", 10), ("denoising_strength", 0.5),
    ("seed_extra", True), ("subseed", 77), ("subseed_strength", 0.25),
    ("override_settings", ["Clip skip: 2", "RNG: GPU", "ENSD: 31337"]),  # no RNG key = A1111's GPU noise
])
def test_paste_fills_fields(built, name: str, expected) -> None:
    from app.ui.paste import paste_values

    values = paste_values(built[2].ctx, "txt2img", INFOTEXT, F.defaults("txt2img"))
    assert values[name] == expected


def test_paste_fills_the_refiner_as_a1111(built) -> None:
    """Ticked iff the infotext names a refiner; its closest checkpoint's title, or none when it is not there."""
    from app.ui.paste import paste_values

    ctx = built[2].ctx
    title = ctx.catalog.find_checkpoint("tiny-sd1").title
    text = INFOTEXT.replace("Version:", "Refiner: tiny-sd1 [0123456789], Refiner switch at: 0.6, Version:")
    values = paste_values(ctx, "txt2img", text, F.defaults("txt2img"))
    assert (values["enable_refiner"], values["refiner_checkpoint"], values["refiner_switch_at"]) == (True, title, 0.6)
    assert F.values_to_params("txt2img", values).refiner_checkpoint == title
    gone = paste_values(ctx, "img2img", text.replace("tiny-sd1", "elsewhere"), F.defaults("img2img"))
    assert (gone["enable_refiner"], gone["refiner_checkpoint"]) == (True, "")
    off = paste_values(ctx, "txt2img", INFOTEXT, {**F.defaults("txt2img"), "enable_refiner": True,
                                                   "refiner_checkpoint": title})
    assert off["enable_refiner"] is False and F.values_to_params("txt2img", off).refiner_checkpoint == ""


def test_paste_handler_reads_params_txt_when_prompt_empty(built, data_dir: Path) -> None:
    from app.ui.paste import make_paste

    ui = built[2]
    (data_dir / "params.txt").write_text("from file\nSteps: 7, Sampler: Euler, CFG scale: 3, Seed: 9, Size: 64x128")
    names = [s.name for s in F.fields_for("txt2img")]
    out = dict(zip(names, make_paste(ui.ctx, ui.txt2img)(*[F.defaults("txt2img")[n] for n in names]), strict=True))
    assert (out["prompt"], out["steps"], out["seed"], out["width"], out["height"]) == ("from file", 7, 9, 64, 128)


def test_last_used_save_and_restore(tmp_path: Path, data_dir: Path) -> None:
    from app.ui import build_blocks
    from app.ui.last_used import LastUsed

    data = tmp_path / "d"
    shutil.copytree(data_dir / "models", data / "models")
    LastUsed.for_data_dir(data).save("txt2img", {**F.defaults("txt2img"), "prompt": "remember me", "steps": 9,
                                                 "unknown": 1, "sampler_name": "Euler a"})
    saved = json.loads((data / "last_used.json").read_text())
    assert saved["txt2img"]["prompt"] == "remember me" and "unknown" not in saved["txt2img"]
    _, ui = build_blocks(_runtime(data))
    c = ui.txt2img.components
    assert (c["prompt"].value, c["steps"].value, c["sampler_name"].value) == ("remember me", 9, "Euler a")
    runtime = _runtime(data)
    runtime.settings.set("restore_last_used_values", False)
    _, ui = build_blocks(runtime)
    assert ui.txt2img.components["prompt"].value == ""


def test_token_counter_text() -> None:
    from app.ui.common import token_counter_text

    assert token_counter_text("") == "0/75"
    assert token_counter_text("a cat") == "2/75"
    assert token_counter_text(", ".join(["cat"] * 60)).endswith("/150")


def _txt2img_values(**changes) -> dict:
    return {**F.defaults("txt2img"), "prompt": "a cat", "steps": 2, "width": 64, "height": 64, **changes}


@pytest.mark.slow
def test_generate_through_the_service(built, data_dir: Path) -> None:
    from app.ui.generation import make_generate

    runtime, _, ui = built
    tab = ui.txt2img
    gen = make_generate(ui.ctx, tab, tab.extra["build_params"])
    values = _txt2img_values(seed=5)
    outputs = list(gen(*[values[s.name] for s in F.fields_for("txt2img")]))
    gallery, info, progress, state = outputs[-1]
    assert len(gallery) == 1 and "Seed: 5" in gallery[0].info["parameters"]
    assert len(list((data_dir / "outputs").rglob("*-5.png"))) >= 1
    assert "Seed: 5" in info and "Size: 64x64" in info and "CFG scale: 7," in info
    assert state["seeds"] == [5]
    assert ui.ctx.last_used.get("txt2img")["prompt"] == "a cat"


def test_generate_bad_input_shows_error(built) -> None:
    from app.ui.generation import make_generate

    ui = built[2]
    gen = make_generate(ui.ctx, ui.txt2img, ui.txt2img.extra["build_params"])
    values = _txt2img_values(width=70)
    (_, info, _, _), = list(gen(*[values[s.name] for s in F.fields_for("txt2img")]))
    assert "atelier-error" in info and "Width" in info


@pytest.mark.slow
def test_generate_forever_start_and_cancel(built) -> None:
    from app.ui.forever import ForeverLoop

    runtime = built[0]
    loop = ForeverLoop(lambda: runtime.service, "txt2img")
    params = F.values_to_params("txt2img", _txt2img_values(seed=-1))
    assert loop.start(params)
    wait_until(lambda: loop.snapshot().generation >= 2, timeout=60, interval=0.1, message="two forever generations")
    loop.cancel()
    assert loop.wait(30)
    state = loop.snapshot()
    assert state.generation >= 2 and not state.running and state.stopped_by == "cancel"
    assert state.result is not None and len(state.result.images) == 1
    seeds = set()
    for job_id in state.history:
        job = runtime.service.get(job_id)
        if job is not None and job.result is not None:
            seeds.update(job.result.seeds)
    assert len(seeds) >= 2  # seed -1: a new random seed each time


@pytest.mark.slow
def test_generate_forever_stops_on_error_and_interrupt(built) -> None:
    from app.ui.forever import ForeverLoop

    runtime = built[0]
    bad = GenerationParams(prompt="x", steps=2, width=64, height=64, sampler_name="No such sampler")
    loop = ForeverLoop(lambda: runtime.service, "txt2img")
    loop.start(bad)
    assert loop.wait(30)
    assert loop.snapshot().stopped_by == "error" and "No such sampler" in loop.snapshot().error
    loop = ForeverLoop(lambda: runtime.service, "txt2img")
    loop.start(F.values_to_params("txt2img", _txt2img_values(steps=150)))
    job = wait_until(lambda: loop.snapshot().job, timeout=30, message="the loop's first job")
    wait_for_step(job, 1, timeout=30)
    loop.interrupt()
    assert loop.wait(30) and loop.snapshot().stopped_by == "interrupt"


def test_quicksetting_change_persists(built, data_dir: Path) -> None:
    from app.ui.quicksettings import set_setting

    ui = built[2]
    set_setting(ui.ctx, "CLIP_stop_at_last_layers", 2.0)
    assert json.loads((data_dir / "config.json").read_text())["CLIP_stop_at_last_layers"] == 2
    set_setting(ui.ctx, "CLIP_stop_at_last_layers", 99)  # out of range: rejected, old value kept
    assert ui.ctx.settings.get("CLIP_stop_at_last_layers") == 2
    set_setting(ui.ctx, "CLIP_stop_at_last_layers", 1)


def test_extensions_listed_and_disabled(built) -> None:
    from app.ui.extensions_tab import install_from_url, list_extensions

    ui = built[2]
    assert [e["name"] for e in list_extensions(ui.ctx)] == ["my-ext"]
    ui.ctx.settings.set("disabled_extensions", ["my-ext"])
    assert list_extensions(ui.ctx)[0]["enabled"] is False
    ui.ctx.settings.set("disabled_extensions", [])
    assert "atelier-error" in install_from_url(ui.ctx, "not a url", "")


def test_inpaint_mask_from_editor_layers() -> None:
    from PIL import Image, ImageDraw

    from app.ui.img2img import images_for_mode

    bg = Image.new("RGBA", (64, 64), (10, 20, 30, 255))
    layer = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle((8, 8, 23, 23), fill=(255, 255, 255, 255))
    image, mask = images_for_mode(2, [None, None, {"background": bg, "layers": [layer], "composite": bg}, None, None,
                                      None])
    assert image.mode == "RGB" and mask.getbbox() == (8, 8, 24, 24)
    _, blank = images_for_mode(2, [None, None, {"background": bg, "layers": [], "composite": bg}, None, None, None])
    assert blank is None
    with pytest.raises(ValueError, match="no input image"):
        images_for_mode(0, [None] * 6)


def test_upscaler_lists_include_model_files(built) -> None:
    ctx = built[2].ctx
    names = ctx.upscaler_names()
    assert names[:3] == ["None", "Lanczos", "Nearest"] and "tiny-esrgan-4x" in names
    hires = ctx.hires_upscalers()
    assert hires[0] == "Latent" and "Lanczos" in hires and "tiny-esrgan-4x" in hires


@pytest.mark.slow
def test_extras_and_img2img_jobs_from_the_form(built) -> None:
    from PIL import Image

    from app.ui.common import stream_job
    from app.ui.extras import extras_params
    from app.ui.img2img import build_params

    runtime, _, ui = built
    src = Image.new("RGB", (32, 32), (100, 150, 200))
    params = extras_params(src, "Scale by", 2.0, 64, 64, True, "Lanczos", "None", 0.0)
    last = list(stream_job(runtime.service, params, "extras"))[-1]
    assert last.error is None and last.done
    values = {**F.defaults("img2img"), "prompt": "x", "steps": 2, "width": 64, "height": 64, "seed": 3,
              "denoising_strength": 0.5}
    p = build_params(values, [0, src, None, None, None, None, None])
    assert p.img2img.init_images[0].size == (32, 32) and p.img2img.mask is None
    last = list(stream_job(runtime.service, p, "img2img"))[-1]
    assert last.error is None, last.info
    assert "Denoising strength: 0.5" in last.infotexts[0] and len(last.images) == 1


def test_no_checkpoint_gives_a_readable_error(tmp_path: Path) -> None:
    from app.ui import build_blocks
    from app.ui.generation import make_generate

    runtime = _runtime(tmp_path / "empty")
    try:
        _, ui = build_blocks(runtime)
        gen = make_generate(ui.ctx, ui.txt2img, ui.txt2img.extra["build_params"])
        values = _txt2img_values()
        last = list(gen(*[values[s.name] for s in F.fields_for("txt2img")]))[-1]
        assert "atelier-error" in last[1] and "checkpoint" in last[1].lower()
    finally:
        runtime.shutdown()


def test_settings_apply_writes_config(built, data_dir: Path) -> None:
    from app.ui.settings_tab import apply_settings

    ctx = built[2].ctx
    out = apply_settings(ctx, ["samples_format", "jpeg_quality"], ["jpg", 90.0])
    assert "2 settings changed" in out
    saved = json.loads((data_dir / "config.json").read_text())
    assert saved["samples_format"] == "jpg" and saved["jpeg_quality"] == 90
    assert "atelier-error" in apply_settings(ctx, ["samples_format"], ["bmp"])
    assert ctx.settings.get("samples_format") == "jpg"
    apply_settings(ctx, ["samples_format", "jpeg_quality"], ["png", 80])


def test_pnginfo_and_send_to(built, tmp_path: Path) -> None:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from app.ui.paste import send_values
    from app.ui.pnginfo import describe

    ui = built[2]
    info = PngInfo()
    info.add_text("parameters", INFOTEXT)
    info.add_text("notes", "hello")
    path = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    html_out, text = describe(str(path))
    assert text == INFOTEXT and "hello" in html_out and "a photo of a cat" in html_out
    assert "atelier-error" in describe(str(tmp_path / "missing.png"))[0]
    names = [s.name for s in F.fields_for("img2img")]
    current = [F.defaults("img2img")[n] for n in names]
    values = dict(zip(names, send_values(ui.ctx, ui.img2img, text, current), strict=True))
    assert values["prompt"] == "a photo of a cat" and values["denoising_strength"] == 0.5
    assert values["width"] == 512 and values["height"] == 768


def test_interrupt_button_stops_the_job(built) -> None:
    from app.ui.common import follow_job

    runtime, _, ui = built
    params = F.values_to_params("txt2img", _txt2img_values(steps=150, n_iter=4))
    job = runtime.service.submit(params, kind="txt2img")
    wait_for_step(job, 1, timeout=30)
    runtime.service.interrupt()
    last = list(follow_job(runtime.service, job, poll=0.1))[-1]
    assert last.done and "Interrupted" in last.info


@pytest.mark.slow
def test_live_preview_and_progress_while_sampling(built) -> None:
    from app.ui.common import stream_job
    from app.ui.generation import make_generate

    runtime, _, ui = built
    runtime.settings.set("show_progress_every_n_steps", 1)
    try:
        params = F.values_to_params("txt2img", _txt2img_values(steps=40))
        updates = list(stream_job(runtime.service, params, "txt2img", poll=0.01))
    finally:
        runtime.settings.set("show_progress_every_n_steps", 10)
    running = updates[:-1]
    assert any(u.images for u in running)  # a preview image reached the gallery while sampling
    assert any("atelier-progress" in u.progress and "%" in u.progress for u in running)
    gen = make_generate(ui.ctx, ui.txt2img, ui.txt2img.extra["build_params"])
    values = _txt2img_values(n_iter=2)
    gallery, _, _, state = list(gen(*[values[s.name] for s in F.fields_for("txt2img")]))[-1]
    assert len(gallery) == 3 and gallery[0].size == (128, 64)  # the grid first, then both images
    assert len(state["infotexts"]) == 3 and len(state["seeds"]) == 2


def test_image_inputs_for_every_mode() -> None:
    from PIL import Image, ImageDraw

    from app.ui.img2img import images_for_mode

    bg = Image.new("RGB", (32, 32), (10, 20, 30))
    painted = bg.copy()
    ImageDraw.Draw(painted).rectangle((4, 4, 9, 9), fill=(250, 0, 0))
    sketch = {"background": bg, "layers": [], "composite": painted}
    image, mask = images_for_mode(1, [None, sketch, None, None, None, None])  # Sketch: the drawing is the input
    assert image.getpixel((5, 5)) == (250, 0, 0) and mask is None
    image, mask = images_for_mode(3, [None, None, None, sketch, None, None])  # Inpaint sketch: changed pixels
    assert mask.getbbox() == (4, 4, 10, 10) and image.getpixel((5, 5)) == (250, 0, 0)
    upload_mask = Image.new("L", (32, 32), 0)
    ImageDraw.Draw(upload_mask).rectangle((0, 0, 7, 7), fill=255)
    image, mask = images_for_mode(4, [None, None, None, None, bg, upload_mask])
    assert mask.getbbox() == (0, 0, 8, 8)
    with pytest.raises(ValueError, match="mask"):
        images_for_mode(4, [None, None, None, None, bg, None])


def test_save_button_writes_log_images(built, data_dir: Path) -> None:
    from PIL import Image

    from app.ui.paste import make_save

    ui = built[2]
    image = Image.new("RGB", (8, 8))
    out = make_save(ui.ctx, "txt2img")({"images": [image], "infotexts": ["p\nSteps: 2, Seed: 9, Size: 8x8"],
                                         "seeds": [9]}, 0)
    assert out.visible
    saved, = (data_dir / "log" / "images").glob("*.png")
    assert saved.name == "00000-9-p.png"
    with Image.open(saved) as im:
        assert "Seed: 9" in im.info["parameters"]


def test_script_args_reach_script_params(built) -> None:
    from PIL import Image

    from app.ui.generation import params_from_args
    from app.ui.img2img import build_params

    tab = built[2].img2img
    choices = [c[0] if isinstance(c, tuple) else c for c in tab.components["script_name"].choices]
    assert choices[0] == "None" and "SD upscale" in choices
    values = {**F.defaults("img2img"), "script_name": "SD upscale"}
    extra = [0, Image.new("RGB", (64, 64)), None, None, None, None, None, "", "", ""]
    script_values = [c.value for c in tab.extra["script_inputs"]]
    start, end = tab.extra["script_spans"]["SD upscale"]
    script_values[start] = 32.0
    args = [values[s.name] for s in F.fields_for("img2img")] + extra + script_values
    _, params = params_from_args(tab, build_params, args)
    assert params.script.name == "SD upscale" and params.script.args == [32, "None", 2]


def test_styles_dropdown_and_counter(tmp_path: Path, data_dir: Path) -> None:
    from app.ui import build_blocks
    from app.ui.common import token_counter_text

    data = tmp_path / "d"
    shutil.copytree(data_dir / "models", data / "models")
    (data / "styles.csv").write_text('name,prompt,negative_prompt\nfancy,"masterpiece, {prompt}",blurry\n'
                                     '# hidden,x,y\n')
    _, ui = build_blocks(_runtime(data))
    choices = [c[0] if isinstance(c, tuple) else c for c in ui.txt2img.components["styles"].choices]
    assert choices == ["fancy"]
    db = ui.ctx.style_db
    assert token_counter_text("a cat", styles=["fancy"], style_db=db) == "4/75"
    assert token_counter_text("", is_negative=True, styles=["fancy"], style_db=db) == "1/75"


def test_defaults_view_lists_changed_fields(built) -> None:
    from app.ui.settings_tab import ui_defaults_changes

    ctx = built[2].ctx
    keys = ["txt2img/Width/value", "customscript/sampler.py/txt2img/Sampling steps/value"]
    assert ui_defaults_changes(ctx, keys, [512, 20]) == {}
    assert ui_defaults_changes(ctx, keys, [640, 20]) == {"txt2img/Width/value": (512, 640)}


@pytest.mark.slow
def test_checkpoint_quicksetting_loads_through_the_queue(tiny_data_dir: Path, tmp_path: Path) -> None:
    from app.ui.context import UiContext
    from app.ui.quicksettings import set_setting

    data = tmp_path / "d"
    shutil.copytree(tiny_data_dir / "models", data / "models", ignore=shutil.ignore_patterns("tiny-sdxl*"))
    runtime = _runtime(data)
    try:
        ctx = UiContext(runtime)
        titles = ctx.checkpoint_titles()
        target = next(t for t in titles if "sd2v" in t)
        set_setting(ctx, "sd_model_checkpoint", target)
        assert "sd2v" in runtime.manager.current.title
        assert "sd2v" in json.loads((data / "config.json").read_text())["sd_model_checkpoint"]
        set_setting(ctx, "sd_model_checkpoint", "no-such-model.safetensors")  # rejected, shown as a warning
        assert "sd2v" in runtime.settings.get("sd_model_checkpoint")
    finally:
        runtime.shutdown()


@pytest.mark.slow
def test_img2img_batch_from_directory(built, tmp_path: Path) -> None:
    from PIL import Image

    from app.ui.img2img import run_batch

    ui = built[2]
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(2):
        Image.new("RGB", (64, 64), (40 * i, 90, 200)).save(src / f"{i}.png")
    values = {**F.defaults("img2img"), "prompt": "b", "steps": 2, "width": 64, "height": 64}
    last = list(run_batch(ui.ctx, values, str(src), str(dst), ""))[-1]
    assert len(last[0]) == 2 and "Batch: 2 images" in last[1]
    assert len(list(dst.rglob("*.png"))) == 2
    (_, info, _, _), = list(run_batch(ui.ctx, values, str(tmp_path / "missing"), "", ""))
    assert "atelier-error" in info and "missing" in info


def test_extension_errors_and_scripts_from_the_plugin_layer(tmp_path: Path, data_dir: Path) -> None:
    from app.plugins.compat import current as compat_current
    from app.ui import build_blocks
    from app.ui.extensions_tab import list_extensions

    data = tmp_path / "d"
    shutil.copytree(data_dir / "models", data / "models")
    good = data / "extensions" / "good-ext" / "scripts"
    good.mkdir(parents=True)
    (good / "s.py").write_text(
        "from modules import scripts\n\n"
        "class MyScript(scripts.Script):\n"
        "    def title(self):\n        return 'My script'\n"
        "    def show(self, is_img2img):\n        return True\n")
    bad = data / "extensions" / "bad-ext" / "scripts"
    bad.mkdir(parents=True)
    (bad / "broken.py").write_text("def oops(:\n")
    previous = compat_current.current()  # start() makes its registry the A1111 layer's current one
    runtime = _runtime(data)  # start() loads the extensions into runtime.plugins
    try:
        _, ui = build_blocks(runtime)
        items = {e["name"]: e for e in list_extensions(ui.ctx)}
        assert items["good-ext"]["error"] == "" and "SyntaxError" in items["bad-ext"]["error"]
        choices = [c[0] if isinstance(c, tuple) else c for c in ui.txt2img.components["script_name"].choices]
        assert "My script" in choices
    finally:
        compat_current.set_current(previous)


def test_ui_config_selects_the_start_tab(tmp_path: Path, data_dir: Path) -> None:
    from app.ui import build_blocks

    data = tmp_path / "d"
    shutil.copytree(data_dir / "models", data / "models")
    (data / "ui-config.json").write_text(json.dumps({"webui/Tabs@tabs/selected": "img2img"}))
    _, ui = build_blocks(_runtime(data))
    assert ui.tabs.selected == "img2img"


@pytest.mark.slow
def test_interrupt_cancels_this_sessions_queued_job(built) -> None:
    from types import SimpleNamespace

    from app.ui.generation import make_generate

    runtime, _, ui = built
    release = threading.Event()
    blocker = runtime.service.submit(kind="custom", fn=lambda ctx: release.wait(30))  # someone else's running job
    try:
        gen = make_generate(ui.ctx, ui.txt2img, ui.txt2img.extra["build_params"])
        values = _txt2img_values()
        stream = gen(*[values[s.name] for s in F.fields_for("txt2img")], request=SimpleNamespace(session_hash="s1"))
        first = next(stream)
        assert "Waiting in queue" in first[2]
        ui.ctx.interrupt("s1")  # our job is queued: it is cancelled; the running job of someone else goes on
        last = list(stream)[-1]
        assert "atelier-error" in last[1] and "cancelled" in last[1]
        assert not blocker.done
    finally:
        release.set()
    blocker.wait(10)
    assert blocker.state.value == "done"


def test_a_broken_secondary_tab_does_not_stop_the_ui(tmp_path: Path, data_dir: Path, monkeypatch) -> None:
    import app.ui.extras as extras_mod
    from app.ui import build_blocks

    def broken(ctx):
        raise RuntimeError("upscaler registry exploded")

    monkeypatch.setattr(extras_mod, "build_extras", broken)
    data = tmp_path / "d"
    shutil.copytree(data_dir / "models", data / "models")
    demo, ui = build_blocks(_runtime(data))
    assert ui.extras is None
    values = [c.get("props", {}).get("value") for c in demo.get_config_file()["components"]]
    assert any(isinstance(v, str) and "upscaler registry exploded" in v for v in values)
    assert "txt2img_generate" in _elem_ids(demo)


@pytest.mark.slow
def test_forever_timer_shows_each_new_result_once_per_page(built) -> None:
    from app.ui.generation import make_forever_tick

    ui = built[2]
    loop = ui.ctx.forever_loop("txt2img")
    tick = make_forever_tick(ui.ctx, ui.txt2img)
    loop.start(F.values_to_params("txt2img", _txt2img_values()))
    try:
        def shown():
            out = tick(-1)
            return out if isinstance(out[0], list) else None

        out = wait_until(shown, timeout=30, interval=0.2, message="the forever timer shows a result")
        images, info, _, state, _, seen = out
        assert len(images) == 1 and "Generate forever" in info and seen >= 1
        again = tick(seen)  # nothing new for this page unless the loop finished another set meanwhile
        assert not isinstance(again[0], list) or again[5] > seen
        other_page = tick(-1)  # a second page that has seen nothing gets the latest result too
        assert isinstance(other_page[0], list)
    finally:
        loop.cancel()
        loop.wait(30)


def test_inpaint_sketch_mask_transparency() -> None:
    from PIL import Image, ImageDraw

    from app.ui.img2img import build_params

    bg = Image.new("RGB", (32, 32), (0, 0, 0))
    painted = bg.copy()
    ImageDraw.Draw(painted).rectangle((0, 0, 7, 7), fill=(200, 200, 200))
    sketch = {"background": bg, "layers": [], "composite": painted}
    values = {**F.defaults("img2img"), "mask_alpha": 50}
    p = build_params(values, [3, None, None, None, sketch, None, None])
    assert p.img2img.init_images[0].getpixel((2, 2)) == (100, 100, 100)
    assert p.img2img.mask.getbbox() == (0, 0, 8, 8)


def test_hide_ui_dir_config_disables_batch_dirs(tmp_path: Path, data_dir: Path) -> None:
    from app.ui import build_blocks
    from app.ui.img2img import run_batch

    data = tmp_path / "d"
    shutil.copytree(data_dir / "models", data / "models")
    _, ui = build_blocks(_runtime(data, "--hide-ui-dir-config"))
    assert ui.img2img.extra["batch_in"].interactive is False
    (_, info, _, _), = list(run_batch(ui.ctx, F.defaults("img2img"), str(data), "", ""))
    assert "disabled" in info


def test_builtin_script_controls_reach_the_engine_parsers(built) -> None:
    """Each built-in script's controls (A1111's order and defaults) give args the engine's parsers accept."""
    from PIL import Image

    from app.engine.scripts import loopback, outpainting, prompt_matrix
    from app.ui.generation import params_from_args
    from app.ui.img2img import build_params

    txt_choices = [c[0] if isinstance(c, tuple) else c for c in built[2].txt2img.components["script_name"].choices]
    assert {"Prompt matrix", "Prompts from file or textbox"} <= set(txt_choices) and "Loopback" not in txt_choices
    tab = built[2].img2img
    extra = [0, Image.new("RGB", (64, 64)), None, None, None, None, None, "", "", ""]
    expected = {
        "Prompt matrix": [False, False, "positive", "comma", 0],
        "Prompts from file or textbox": [False, False, "start", ""],
        "Loopback": [4, 0.5, "Linear", "None"],
        "Poor man's outpainting": [128, 4, "fill", ["left", "right", "up", "down"]],
    }
    for title in (*expected, "Outpainting mk2"):
        values = {**F.defaults("img2img"), "script_name": title}
        script_values = [c.value for c in tab.extra["script_inputs"]]
        args = [values[s.name] for s in F.fields_for("img2img")] + extra + script_values
        _, params = params_from_args(tab, build_params, args)
        assert params.script.name == title
        if title in expected:
            assert params.script.args == expected[title], title
    assert params.script.args[1:] == [128, 8, ["left", "right", "up", "down"], 1, 0.05]  # after the info HTML
    assert outpainting._mk2_args(params) == (128, 8, ["left", "right", "up", "down"], 1.0, 0.05)
    params.script.name, params.script.args = "Prompt matrix", expected["Prompt matrix"]
    assert prompt_matrix.parse_args(params).delimiter == ", "
    assert loopback.strength_at(3, 4, 0.75, 0.5, "Linear") == 0.5
