"""API request bodies → GenerationParams (spec §10.2 defaults and rules), validation and image decoding. No server."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image
from pydantic import ValidationError

from app.api.convert import ConvertContext, request_to_job
from app.api.errors import ApiError
from app.api.images import decode_image, encode_image
from app.api.models import Img2ImgRequest, Txt2ImgRequest
from app.settings import Settings


@pytest.fixture(scope="module")
def catalog(tiny_data_dir):
    from app.models.catalog.index import Catalog
    from app.paths import Paths

    return Catalog(Paths.from_data_dir(tiny_data_dir), no_hashing=True)


@pytest.fixture()
def ctx(catalog):
    return ConvertContext(settings=Settings(None), catalog=catalog,
                          selectable_scripts={"sd upscale": "SD upscale"}, alwayson_scripts={})


def txt2img(ctx, **body):
    return request_to_job(Txt2ImgRequest(**body), "txt2img", ctx).params


def png_b64(size=(8, 8), color=(255, 0, 0)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


# -- API defaults (they differ from the UI's) -------------------------------------------------------------------------
def test_txt2img_api_defaults(ctx):
    job = request_to_job(Txt2ImgRequest(), "txt2img", ctx)
    p = job.params
    assert (p.steps, p.sampler_name, p.scheduler, p.cfg_scale, p.width, p.height) == (50, "Euler", "Automatic", 7.0, 512, 512)
    assert (p.batch_size, p.n_iter, p.seed.seed, p.seed.subseed) == (1, 1, -1, -1)
    assert p.save_images is False and p.save_grid is False  # save_images false by default: nothing on disk
    assert p.hires.enabled is False and p.img2img is None and p.script is None
    assert job.send_images is True and job.restore_settings is True


def test_img2img_api_defaults(ctx):
    ctx.init_images = ["IMG"]
    p = request_to_job(Img2ImgRequest(init_images=["x"]), "img2img", ctx).params
    i2i = p.img2img
    assert (i2i.inpainting_fill, i2i.inpaint_full_res, i2i.inpaint_full_res_padding) == (0, True, 0)
    assert (i2i.denoising_strength, i2i.resize_mode, i2i.mask_blur_x, i2i.mask_blur_y) == (0.75, 0, 4, 4)
    assert i2i.init_images == ["IMG"] and i2i.initial_noise_multiplier == 1.0


@pytest.mark.parametrize(("body", "sampler", "scheduler"), [
    ({}, "Euler", "Automatic"),
    ({"sampler_index": "Euler a"}, "Euler a", "Automatic"),
    ({"sampler_name": "DDIM", "sampler_index": "Euler a"}, "DDIM", "Automatic"),  # sampler_name or sampler_index
    ({"sampler_name": "DPM++ 2M Karras"}, "DPM++ 2M", "Automatic"),  # old combined name, Karras is its default
    ({"sampler_name": "Euler a Karras"}, "Euler a", "Karras"),
    ({"sampler_name": "Euler", "scheduler": "karras"}, "Euler", "Karras"),
    ({"sampler_name": "k_dpmpp_2m"}, "DPM++ 2M", "Automatic"),
])
def test_sampler_resolution(ctx, body, sampler, scheduler):
    p = txt2img(ctx, **body)
    assert (p.sampler_name, p.scheduler) == (sampler, scheduler)


def test_unknown_sampler_lists_valid_names(ctx):
    with pytest.raises(ApiError) as err:
        txt2img(ctx, sampler_name="Bogus")
    assert err.value.status_code == 404
    assert "Bogus" in str(err.value) and "DPM++ 2M" in str(err.value) and "Euler a" in str(err.value)


def test_unknown_scheduler_is_422(ctx):
    with pytest.raises(ApiError) as err:
        txt2img(ctx, sampler_name="Euler", scheduler="wobbly")
    assert err.value.status_code == 422 and "wobbly" in str(err.value)


@pytest.mark.parametrize(("body", "field"), [  # only impossible values are refused (A1111 has no ranges)
    ({"steps": 0}, "steps"), ({"steps": -3}, "steps"),
    ({"width": 0}, "width"), ({"width": 7}, "width"), ({"height": -64}, "height"),
    ({"cfg_scale": float("nan")}, "cfg_scale"),
    ({"batch_size": 0}, "batch_size"), ({"n_iter": 0}, "n_iter"),
    ({"denoising_strength": 1.5}, "denoising_strength"), ({"firstphase_width": -8}, "firstphase_width"),
    ({"steps": "many"}, "steps"), ({"subseed_strength": 2}, "subseed_strength"),
])
def test_impossible_values_are_named(body, field):
    with pytest.raises(ValidationError) as err:
        Txt2ImgRequest(**body)
    assert [e["loc"][0] for e in err.value.errors()] == [field]
    assert all("input" not in e for e in err.value.errors(include_input=False))


@pytest.mark.parametrize(("size", "floored"), [(8, 8), (64, 64), (72, 72), (100, 96), (513, 512), (2056, 2056),
                                               (3000, 3000)])
def test_sizes_are_floored_to_the_latent_grid(ctx, size, floored):
    """A1111's API takes any size and floors it to the latent grid (8 px for SD): Open WebUI's `100x100` works."""
    p = txt2img(ctx, width=size, height=size + 4)
    assert (p.width, p.height) == (floored, (size + 4) // 8 * 8)


def test_the_grid_comes_from_the_model():
    """One function decides the grid (`app.params.size_multiple`): a family that declares 16 gets sizes floored to
    16, and a size below one grid cell is refused naming the grid."""
    import types

    from app.params import size_multiple

    assert size_multiple(None) == 8 and size_multiple(types.SimpleNamespace()) == 8
    grid16 = types.SimpleNamespace(size_multiple=16)
    assert size_multiple(grid16) == 16
    ctx16 = ConvertContext(settings=Settings(None), size_multiple=size_multiple(grid16))
    p = request_to_job(Txt2ImgRequest(width=100, height=1000), "txt2img", ctx16).params
    assert (p.width, p.height) == (96, 992)
    with pytest.raises(ApiError, match="width: 8 is smaller than the model's latent grid of 16 px") as err:
        request_to_job(Txt2ImgRequest(width=8), "txt2img", ctx16)
    assert err.value.status_code == 422


@pytest.mark.parametrize("body", [{"steps": 151}, {"steps": 1000}, {"cfg_scale": 30.5}, {"cfg_scale": -1},
                                  {"batch_size": 10}, {"n_iter": 500}, {"hr_scale": 0.5, "enable_hr": True},
                                  {"seed_resize_from_w": 4096}])
def test_a1111_ranges_are_not_limits(ctx, body):
    p = txt2img(ctx, **body)
    assert p.steps == body.get("steps", 50) and p.batch_size == body.get("batch_size", 1)


def test_null_means_the_default(ctx):
    """Clients send `null` for "not set": it is the A1111 API default, and a pasted infotext can still fill it."""
    body = {name: None for name in ("prompt", "negative_prompt", "steps", "cfg_scale", "width", "height", "seed",
                                    "batch_size", "n_iter", "sampler_index", "sampler_name", "denoising_strength",
                                    "script_args", "alwayson_scripts", "hr_scale", "send_images", "styles")}
    job = request_to_job(Txt2ImgRequest(**body), "txt2img", ctx)
    p = job.params
    assert (p.prompt, p.steps, p.cfg_scale, p.width, p.height, p.seed.seed) == ("", 50, 7.0, 512, 512, -1)
    assert (p.batch_size, p.n_iter, p.sampler_name, p.hires.scale, job.send_images) == (1, 1, "Euler", 2.0, True)
    p = txt2img(ctx, steps=None, width=None, infotext=INFOTEXT)
    assert (p.steps, p.width) == (12, 64)


def test_memory_limit_is_a_setting_with_a_clear_message(ctx):
    assert txt2img(ctx, width=2048, height=2048, batch_size=10).batch_size == 10  # 41.9 MP: under the default 64
    with pytest.raises(ApiError) as err:
        txt2img(ctx, width=4096, height=4096, batch_size=4)
    assert err.value.status_code == 413
    assert "api_max_generation_megapixels" in str(err.value) and "67.1 megapixels" in str(err.value)
    with pytest.raises(ApiError, match="with hires fix"):
        txt2img(ctx, width=2048, height=2048, batch_size=2, enable_hr=True, hr_scale=4)
    ctx.settings.set("api_max_generation_megapixels", 0)  # 0 = no limit
    assert txt2img(ctx, width=4096, height=4096, batch_size=4).width == 4096


def test_seeds_and_sizes_map(ctx):
    p = txt2img(ctx, seed=5, subseed=9, subseed_strength=0.5, seed_resize_from_w=-1, seed_resize_from_h=320,
                batch_size=2, n_iter=3, width=64, height=128, tiling=True, eta=0.3, styles=["a"])
    assert (p.seed.seed, p.seed.subseed, p.seed.subseed_strength) == (5, 9, 0.5)
    assert (p.seed.seed_resize_from_w, p.seed.seed_resize_from_h) == (0, 320)  # -1 means off
    assert (p.batch_size, p.n_iter, p.n_images, p.width, p.height) == (2, 3, 6, 64, 128)
    assert p.tiling is True and p.eta == 0.3 and p.styles == ["a"]


@pytest.mark.parametrize(("body", "samples", "grid"), [  # save_images wins over do_not_save_* (A1111's API)
    ({}, False, False),
    ({"save_images": True}, True, True),
    ({"save_images": True, "do_not_save_grid": True}, True, True),
    ({"save_images": True, "do_not_save_samples": True}, True, True),
    ({"save_images": False, "do_not_save_samples": False, "do_not_save_grid": False}, False, False),
])
def test_save_flags(ctx, body, samples, grid):
    p = txt2img(ctx, **body)
    assert (p.save_images, p.save_grid) == (samples, grid)


def test_hires_fields(ctx):
    p = txt2img(ctx, enable_hr=True, hr_scale=1.5, hr_second_pass_steps=3, denoising_strength=0.4,
                hr_prompt="hp", hr_negative_prompt="hn", hr_sampler_name="Euler", hr_resize_x=96)
    h = p.hires
    assert (h.enabled, h.scale, h.steps, h.denoising_strength, h.upscaler) == (True, 1.5, 3, 0.4, "Latent")
    assert (h.prompt, h.negative_prompt, h.sampler_name, h.resize_x, h.resize_y) == ("hp", "hn", "Euler", 96, 0)


def test_firstphase_backcompat(ctx):
    p = txt2img(ctx, enable_hr=True, width=512, height=768, firstphase_width=256, firstphase_height=384)
    assert (p.width, p.height, p.hires.resize_x, p.hires.resize_y) == (256, 384, 512, 768)


def test_mask_blur_sets_both_axes(ctx):
    p = request_to_job(Img2ImgRequest(init_images=["x"], mask_blur=9, mask_blur_x=1), "img2img", ctx).params
    assert (p.img2img.mask_blur_x, p.img2img.mask_blur_y) == (9, 9)
    p = request_to_job(Img2ImgRequest(init_images=["x"], mask_blur_x=2, mask_blur_y=3, inpaint_full_res=0),
                       "img2img", ctx).params
    assert (p.img2img.mask_blur_x, p.img2img.mask_blur_y, p.img2img.inpaint_full_res) == (2, 3, False)


INFOTEXT = ("a dog\nNegative prompt: ugly\nSteps: 12, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5, "
            "Seed: 42, Size: 64x96, Clip skip: 2, ENSD: 31337")


def test_infotext_fills_fields_not_given(ctx):
    p = txt2img(ctx, infotext=INFOTEXT, steps=3)
    assert p.steps == 3  # explicit field wins
    assert (p.prompt, p.negative_prompt, p.seed.seed, p.width, p.height, p.cfg_scale) == ("a dog", "ugly", 42, 64, 96, 5.0)
    assert (p.sampler_name, p.scheduler, p.clip_skip) == ("DPM++ 2M", "Karras", 2)
    # no "RNG:" key means A1111's GPU noise; our default source is CPU, so the paste asks for GPU
    assert p.override_settings == {"randn_source": "GPU", "eta_noise_seed_delta": 31337}


def test_infotext_explicit_sampler_and_overrides_win(ctx):
    p = txt2img(ctx, infotext=INFOTEXT, sampler_name="Euler a", prompt="cat",
                override_settings={"eta_noise_seed_delta": 7})
    assert (p.prompt, p.sampler_name, p.scheduler, p.steps) == ("cat", "Euler a", "Automatic", 12)
    assert p.override_settings == {"randn_source": "GPU", "eta_noise_seed_delta": 7}


def test_override_settings_validated(ctx, catalog):
    p = txt2img(ctx, override_settings={"CLIP_stop_at_last_layers": 2, "sd_model_checkpoint": "tiny-sd1"},
                s_churn=0.5)
    title = catalog.find_checkpoint("tiny-sd1").title
    assert p.override_settings == {"CLIP_stop_at_last_layers": 2, "sd_model_checkpoint": title, "s_churn": 0.5}
    for bad, needle in [({"no_such_setting": 1}, "no_such_setting"), ({"CLIP_stop_at_last_layers": "x"}, "CLIP_stop")]:
        with pytest.raises(ApiError) as err:
            txt2img(ctx, override_settings=bad)
        assert err.value.status_code == 422 and needle in str(err.value)


def test_missing_checkpoint_or_vae_override_falls_back_with_a_warning(ctx, caplog):
    """A1111 drops an override naming a model it does not have and uses the current one; the job says so."""
    job = request_to_job(Txt2ImgRequest(override_settings={"sd_model_checkpoint": "nothere", "sd_vae": "nothere.pt",
                                                           "CLIP_stop_at_last_layers": 2}), "txt2img", ctx)
    assert job.params.override_settings == {"CLIP_stop_at_last_layers": 2}
    assert len(job.warnings) == 2
    assert "override_settings.sd_model_checkpoint: 'nothere' not found; using the current one" in job.warnings[0]
    assert "override_settings.sd_vae: 'nothere.pt' not found" in job.warnings[1]
    assert "nothere.pt" in caplog.text


def test_scripts_by_title(ctx):
    ctx.selectable_scripts = {"sd upscale": "SD upscale"}
    p = request_to_job(Img2ImgRequest(init_images=["x"], script_name="SD Upscale", script_args=["", 64, 0, 2]),
                       "img2img", ctx).params
    assert (p.script.name, p.script.args) == ("SD upscale", ["", 64, 0, 2])
    with pytest.raises(ApiError, match="Script 'nope' not found") as err:
        txt2img(ctx, script_name="nope")
    assert err.value.status_code == 422
    with pytest.raises(ApiError, match="controlnet") as err:
        txt2img(ctx, alwayson_scripts={"controlnet": {"args": []}})
    assert err.value.status_code == 422
    ctx.alwayson_scripts = {"my plugin": "My Plugin"}
    p = txt2img(ctx, alwayson_scripts={"My Plugin": {"args": [1, 2]}})
    assert p.extras["alwayson_scripts"] == {"My Plugin": [1, 2]}


class Field:
    """Duck-typed plugin ExtraField (name + coerce), as `app.plugins.api.ExtraField` provides."""

    def __init__(self, name, maximum=None):
        self.name, self.maximum = name, maximum

    def coerce(self, value):
        if self.maximum is not None and float(value) > self.maximum:
            raise ValueError(f"extra field {self.name!r}: {value} is above the maximum {self.maximum}")
        return value


def test_alwayson_plugin_args_fill_declared_fields(ctx):
    ctx.alwayson_scripts = {"film grain": "Film grain"}
    ctx.alwayson_fields = {"Film grain": (Field("grain_strength", maximum=1), Field("grain_size"))}
    p = txt2img(ctx, alwayson_scripts={"Film Grain": {"args": [0.5]}})
    assert p.extras["grain_strength"] == 0.5 and "grain_size" not in p.extras
    p = txt2img(ctx, alwayson_scripts={"film grain": {"args": {"grain_size": 3, "grain_strength": 0.1}}})
    assert (p.extras["grain_strength"], p.extras["grain_size"]) == (0.1, 3)
    for args, needle in [([2.0], "maximum 1"), ([1, 2, 3], "3 values for 2 fields"), ({"nope": 1}, "nope"),
                         ("text", "expected a list")]:
        with pytest.raises(ApiError, match=needle) as err:
            txt2img(ctx, alwayson_scripts={"film grain": {"args": args}})
        assert err.value.status_code == 422


def test_refiner_fields_match_checkpoints_like_sd_model_checkpoint(ctx, catalog):
    info = catalog.find_checkpoint("tiny-sdxl")
    for name in (info.title, "tiny-sdxl", "tiny-sdxl.safetensors"):
        p = txt2img(ctx, refiner_checkpoint=name, refiner_switch_at=0.6)
        assert (p.refiner_checkpoint, p.refiner_switch_at) == (info.title, 0.6)
    # A1111's API default is None: the refiner runs the whole pass (sd_samplers_common.apply_refiner); null = unset
    assert txt2img(ctx, refiner_checkpoint="tiny-sdxl").refiner_switch_at is None
    assert txt2img(ctx, refiner_checkpoint="tiny-sdxl", refiner_switch_at=None).refiner_switch_at is None
    for off in ("", "None", None):
        assert txt2img(ctx, refiner_checkpoint=off).refiner_checkpoint == ""
    for body, needle in [({"refiner_checkpoint": "nope"}, "refiner_checkpoint: checkpoint 'nope' not found"),
                         ({"refiner_checkpoint": "tiny-sdxl", "refiner_switch_at": 1.5}, "refiner_switch_at")]:
        with pytest.raises((ApiError, ValueError), match=needle):
            txt2img(ctx, **body)
    # an infotext's refiner: pasted when it exists, dropped with a warning when it does not
    text = "a cat\nSteps: 4, Sampler: Euler, Seed: 1, Size: 64x64, Refiner: tiny-sdxl, Refiner switch at: 0.7"
    p = txt2img(ctx, infotext=text)
    assert (p.refiner_checkpoint, p.refiner_switch_at) == (info.title, 0.7)
    job = request_to_job(Txt2ImgRequest(infotext=text.replace("tiny-sdxl", "gone [0123456789]")), "txt2img", ctx)
    assert job.params.refiner_checkpoint == "" and any("refiner 'gone" in w for w in job.warnings)


@pytest.mark.parametrize(("body", "field"), [
    ({"firstpass_image": "abc"}, "firstpass_image"),
])
def test_unsupported_features_are_refused(ctx, body, field):
    with pytest.raises(ApiError, match=field) as err:
        txt2img(ctx, **body)
    assert err.value.status_code == 422


def test_restore_faces_runs_without_a_restorer_and_says_so(ctx):
    """SillyTavern's "Restore Faces" checkbox: A1111 without a restorer model still returns the images."""
    job = request_to_job(Txt2ImgRequest(restore_faces=True, prompt="a face"), "txt2img", ctx)
    assert job.params.prompt == "a face"
    assert job.warnings == ["restore_faces: face restoration is not available yet (no GFPGAN/CodeFormer); "
                            "the images are returned without it"]
    assert request_to_job(Txt2ImgRequest(restore_faces=False), "txt2img", ctx).warnings == []


def test_force_task_id_and_restore_flag(ctx):
    job = request_to_job(Txt2ImgRequest(force_task_id="task(abc)", override_settings_restore_afterwards=False,
                                        send_images=False), "txt2img", ctx)
    assert (job.job_id, job.restore_settings, job.send_images) == ("task(abc)", False, False)


@pytest.mark.parametrize("model", [Txt2ImgRequest, Img2ImgRequest])
def test_every_request_field_is_mapped(model):
    from app.api.convert import FIELD_SETTERS, HIRES_SETTERS, IMG2IMG_SETTERS, OTHER_FIELDS

    handled = set(FIELD_SETTERS) | set(HIRES_SETTERS) | set(IMG2IMG_SETTERS) | set(OTHER_FIELDS)
    assert set(model.model_fields) - handled == set()


def test_disable_extra_networks(ctx):
    assert txt2img(ctx, disable_extra_networks=True).extras == {"disable_extra_networks": True}
    assert "disable_extra_networks" not in txt2img(ctx).extras


# -- images -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", ["", "data:image/png;base64,"])
def test_decode_base64_and_data_uri(prefix):
    image = decode_image(prefix + png_b64((5, 7)))
    assert image.size == (5, 7) and image.getpixel((0, 0)) == (255, 0, 0)


def test_decode_unpadded_base64():
    assert decode_image(png_b64().rstrip("=")).size == (8, 8)


@pytest.mark.parametrize("value", ["", "not base64 at all!!", base64.b64encode(b"hello world").decode(), 12])
def test_decode_invalid_image(value):
    with pytest.raises(ApiError, match="Invalid encoded image in init_images") as err:
        decode_image(value, "init_images")
    assert err.value.status_code == 422


def test_urls_to_local_addresses_are_refused():
    with pytest.raises(ApiError, match="local") as err:
        decode_image("http://127.0.0.1:1/x.png", "image", Settings(None))
    assert err.value.status_code == 403


def test_urls_refused_when_requests_disabled():
    settings = Settings(None)
    settings.set("api_enable_requests", False, save=False)
    with pytest.raises(ApiError, match="api_enable_requests") as err:
        decode_image("https://example.com/x.png", "image", settings)
    assert err.value.status_code == 403


def test_redirects_to_local_addresses_are_refused():
    from app.api.images import _CheckedRedirects

    handler = _CheckedRedirects("image", forbid_local=True)
    for target in ("http://127.0.0.1:8080/x.png", "http://[::1]/x.png", "file:///etc/passwd"):
        with pytest.raises(ApiError) as err:
            handler.redirect_request(None, None, 302, "Found", {}, target)
        assert err.value.status_code == 403


def test_url_allowed_when_local_requests_permitted(tmp_path):
    import functools
    import http.server
    import threading

    Image.new("RGB", (6, 4), (0, 0, 255)).save(tmp_path / "x.png")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        settings = Settings(None)
        settings.set("api_forbid_local_requests", False, save=False)
        url = f"http://127.0.0.1:{httpd.server_address[1]}/x.png"
        assert decode_image(url, "image", settings).size == (6, 4)
        with pytest.raises(ApiError) as err:
            decode_image(url.replace("x.png", "missing.png"), "image", settings)
        assert err.value.status_code == 422 and "could not fetch" in str(err.value)
    finally:
        httpd.shutdown()


def test_encode_image_embeds_infotext():
    from app.infotext.storage import read_info_from_image

    text = encode_image(Image.new("RGB", (8, 8)), "cat\nSteps: 2, Seed: 1", Settings(None))
    assert not text.startswith("data:")
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    assert image.format == "PNG" and read_info_from_image(image)[0] == "cat\nSteps: 2, Seed: 1"


# -- flow models' shift and "unconditional first steps" --------------------------------------------------------------
def test_shift_and_unconditional_first_steps(ctx):
    p = txt2img(ctx, shift=3.5, unconditional_first_steps=2)
    assert (p.shift, p.unconditional_first_steps) == (3.5, 2)
    p = txt2img(ctx)
    assert (p.shift, p.unconditional_first_steps) == (None, 0)  # None = the model's default shift
    p = txt2img(ctx, infotext="cat\nSteps: 8, Sampler: res_multistep, Shift: 6.0, Unconditional first steps: 1",
                shift=2.0)
    assert (p.shift, p.unconditional_first_steps, p.sampler_name) == (2.0, 1, "res_multistep")  # explicit wins
    p = txt2img(ctx, override_settings={"flow_shift": 4.0})
    assert p.override_settings == {"flow_shift": 4.0}
    with pytest.raises(ApiError) as err:
        txt2img(ctx, override_settings={"flow_shift": -1})
    assert err.value.status_code == 422 and "flow_shift" in str(err.value)


@pytest.mark.parametrize(("body", "field"), [
    ({"shift": -0.5}, "shift"), ({"shift": float("nan")}, "shift"), ({"unconditional_first_steps": -1}, "unconditional_first_steps"),
])
def test_shift_fields_out_of_range(body, field):
    with pytest.raises(ValidationError) as err:
        Txt2ImgRequest(**body)
    assert [e["loc"][0] for e in err.value.errors()] == [field]


def test_builtin_alwayson_scripts_are_accepted_and_not_applied_as_in_a1111(catalog):
    """A1111's API skips the setup() of its built-in UI scripts (`setup_for_ui_only`): the request fields decide."""
    from app.api.scripts import scripts_for

    ctx = ConvertContext(settings=Settings(None), catalog=catalog,
                         alwayson_scripts=scripts_for("txt2img", None, alwayson=True))

    def job(**body):
        return request_to_job(Txt2ImgRequest(**body), "txt2img", ctx)

    same = job(seed=5, steps=7, sampler_name="Euler", alwayson_scripts={
        "seed": {"args": [5]}, "SAMPLER": {"args": [7, "euler", "Automatic"]}, "Extra options": {"args": []},
        "Refiner": {"args": [False, "", 0.8]}})
    assert same.warnings == [] and "alwayson_scripts" not in same.params.extras
    assert (same.params.seed.seed, same.params.steps) == (5, 7)
    other = job(alwayson_scripts={"Seed": {"args": [42, True, 7, 0.5]}, "Refiner": {"args": [True, "tiny-sdxl", 0.6]}})
    assert (other.params.seed.seed, other.params.seed.subseed_strength, other.params.refiner_checkpoint) == (-1, 0.0, "")
    seed_warning, refiner_warning = other.warnings
    assert "built-in Seed script" in seed_warning and "seed 42" in seed_warning and "subseed 7" in seed_warning
    assert "refiner_checkpoint 'tiny-sdxl'" in refiner_warning
    for scripts, needle in [({"Seed": {"args": ["x"]}}, r"Seed.args\[0\]: expected a number"),
                            ({"Sampler": {"args": {"steps": 3}}}, "takes its args as a list"),
                            ({"Hypernetwork": {"args": []}}, "script 'Hypernetwork' not found")]:
        with pytest.raises(ApiError, match=needle) as err:
            job(alwayson_scripts=scripts)
        assert err.value.status_code == 422
