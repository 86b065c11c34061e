"""SD3.5 skip-layer guidance as data: the params fields (off by default, JSON round trip), the step window (diffusers'
rule), the layer list parser, the infotext keys (written only when SLG ran, pasted back) and the A1111 API's extension
fields (request -> params, 422 on a bad value, a pasted infotext). The image side is ``tests/families/test_sd3_slg``."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from app.api.convert import ConvertContext, request_to_job
from app.api.models import Img2ImgRequest, Txt2ImgRequest
from app.engine.sampling.skip_layers import SkipLayerGuidance, job_guidance
from app.infotext.format import create_infotext
from app.infotext.parse import parse_generation_parameters
from app.infotext.paste import infotext_to_params
from app.params import GenerationParams, InvalidParams, check_params, format_layers, parse_layers

ON = {"SLG scale": 2.8, "SLG layers": "7, 8, 9", "SLG start": 0.01, "SLG stop": 0.2}


def test_params_default_off_and_json_round_trip():
    params = GenerationParams()
    assert params.skip_layer_guidance_scale == 0.0 and job_guidance(params) is None
    assert (params.skip_guidance_layers, params.skip_layer_guidance_start, params.skip_layer_guidance_stop) == (
        [7, 8, 9], 0.01, 0.2)
    params.skip_layer_guidance_scale, params.skip_guidance_layers = 3.0, [2, 5]
    back = GenerationParams.from_dict(json.loads(json.dumps(params.to_dict())))
    assert back == params
    assert job_guidance(back) == SkipLayerGuidance((2, 5), 3.0, 0.01, 0.2)
    params.skip_guidance_layers = []
    assert job_guidance(params) is None  # no layers: off too


def test_step_window_is_diffusers_rule():
    slg = SkipLayerGuidance((7, 8, 9), 2.8, 0.01, 0.2)
    assert [i for i in range(28) if slg.active(i, 28)] == [1, 2, 3, 4, 5]  # 0.28 < i < 5.6
    assert [i for i in range(4) if slg.active(i, 4)] == []  # 0.04 < i < 0.8: none on 4 steps
    assert [i for i in range(10) if SkipLayerGuidance((1,), 1.0, 0.0, 1.0).active(i, 10)] == list(range(1, 10))


def test_layer_check_names_the_missing_blocks():
    SkipLayerGuidance((7, 8, 9), 2.8).check(24)
    with pytest.raises(ValueError, match=r"skip_guidance_layers: 24, 30 not in this model's joint blocks 0\.\.23"):
        SkipLayerGuidance((7, 24, 30), 2.8).check(24)


def test_parse_layers():
    assert parse_layers("7, 8, 9") == parse_layers([7, 8, 9]) == parse_layers("[7,8 9]") == (7, 8, 9)
    assert parse_layers("9, 7, 9") == (9, 7) and parse_layers("") == () and parse_layers([4.0]) == (4,)
    assert format_layers((7, 8, 9)) == "7, 8, 9"
    for bad, why in (("7, x", "'x' is not a block number"), ([-1], "-1 is negative"), ([1.5], "1.5 is not"),
                     ([True], "True is not"), (7, "expected a list")):
        with pytest.raises(ValueError, match=why):
            parse_layers(bad)


def test_bounds():
    params = GenerationParams(skip_layer_guidance_stop=1.5)
    with pytest.raises(InvalidParams, match="skip_layer_guidance_stop: 1.5 is outside 0..1"):
        check_params(params)
    check_params(GenerationParams(skip_layer_guidance_scale=-2.0))  # a negative scale is allowed (as cfg)


def test_infotext_round_trip():
    params = GenerationParams(prompt="a fox", sampler_name="Euler", scheduler="Simple", steps=28, cfg_scale=4.5)
    text = create_infotext(params, prompt="a fox", negative_prompt="", seed=7, extra=ON)
    assert 'SLG scale: 2.8, SLG layers: "7, 8, 9", SLG start: 0.01, SLG stop: 0.2' in text
    back, overrides = infotext_to_params(parse_generation_parameters(text))
    assert (back.skip_layer_guidance_scale, back.skip_guidance_layers) == (2.8, [7, 8, 9])
    assert (back.skip_layer_guidance_start, back.skip_layer_guidance_stop, overrides) == (0.01, 0.2, {})
    plain, _ = infotext_to_params(parse_generation_parameters("a fox\nSteps: 20, Sampler: Euler, Seed: 1"))
    assert job_guidance(plain) is None
    broken, _ = infotext_to_params(parse_generation_parameters('a\nSteps: 20, SLG scale: 3, SLG layers: "7, x"'))
    assert broken.skip_guidance_layers == [7, 8, 9] and broken.skip_layer_guidance_scale == 3.0  # bad value: kept


def _job(body: dict, request=Txt2ImgRequest, kind="txt2img"):
    return request_to_job(request(**body), kind, ConvertContext()).params


def test_api_fields():
    params = _job({"skip_layer_guidance_scale": 3.0, "skip_guidance_layers": [6, 7],
                   "skip_layer_guidance_start": 0.0, "skip_layer_guidance_stop": 0.3})
    assert job_guidance(params) == SkipLayerGuidance((6, 7), 3.0, 0.0, 0.3)
    assert job_guidance(_job({})) is None  # off unless asked
    on = _job({"skip_layer_guidance_scale": 2.8, "skip_guidance_layers": "7, 8, 9"})
    assert on.skip_guidance_layers == [7, 8, 9]
    img = _job({"init_images": ["x"], "skip_layer_guidance_scale": 2.0}, Img2ImgRequest, "img2img")
    assert img.skip_layer_guidance_scale == 2.0 and img.skip_guidance_layers == [7, 8, 9]
    nulls = _job({"skip_layer_guidance_scale": None, "skip_guidance_layers": None})  # null = the default
    assert (nulls.skip_layer_guidance_scale, nulls.skip_guidance_layers) == (0.0, [7, 8, 9])


@pytest.mark.parametrize("body, field", [
    ({"skip_guidance_layers": [-1]}, "skip_guidance_layers"),
    ({"skip_guidance_layers": ["a"]}, "skip_guidance_layers"),
    ({"skip_layer_guidance_stop": 2}, "skip_layer_guidance_stop"),
    ({"skip_layer_guidance_start": -0.1}, "skip_layer_guidance_start"),
])
def test_api_bad_values_name_the_field(body, field):
    with pytest.raises(ValidationError) as err:
        Txt2ImgRequest(**body)
    assert err.value.errors()[0]["loc"][0] == field


def test_api_infotext_fills_and_explicit_fields_win():
    text = 'a fox\nSteps: 20, Sampler: Euler, Seed: 1, SLG scale: 3.0, SLG layers: "7, 8", SLG start: 0.05, SLG stop: 0.3'
    pasted = _job({"infotext": text})
    assert job_guidance(pasted) == SkipLayerGuidance((7, 8), 3.0, 0.05, 0.3)
    explicit = _job({"infotext": text, "skip_layer_guidance_scale": 0})
    assert job_guidance(explicit) is None and explicit.skip_guidance_layers == [7, 8]
