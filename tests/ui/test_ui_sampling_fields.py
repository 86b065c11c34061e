"""The sampler row's Shift and Unconditional-first-steps fields and the CFG 1 note (form level, no browser)."""

from __future__ import annotations

import pytest

from app.infotext.format import create_infotext
from app.params import GenerationParams
from app.ui import form as F


@pytest.mark.parametrize("kind", ["txt2img", "img2img"])
def test_sampler_row_has_shift_and_unconditional_steps(kind: str) -> None:
    specs = {s.name: s for s in F.fields_for(kind)}
    assert specs["shift"].elem_id(kind) == f"{kind}_shift" and specs["shift"].default == 0.0
    assert specs["unconditional_first_steps"].elem_id(kind) == f"{kind}_unconditional_first_steps"
    names = [s.name for s in F.SAMPLER_FIELDS]
    assert names.index("shift") == names.index("steps") + 1  # next to the sampler


def test_form_values_map_to_params_and_back() -> None:
    params = F.values_to_params("txt2img", {"shift": 3, "unconditional_first_steps": 2.0})
    assert params.shift == 3.0 and isinstance(params.shift, float) and params.unconditional_first_steps == 2
    assert F.values_to_params("txt2img", {}).shift is None  # 0 = the model's default
    values = F.params_to_values("txt2img", params)
    assert (values["shift"], values["unconditional_first_steps"]) == (3.0, 2)
    assert F.params_to_values("txt2img", GenerationParams())["shift"] == 0.0


@pytest.mark.parametrize(("values", "message"), [
    ({"shift": -1}, "Shift"), ({"unconditional_first_steps": -2}, "Unconditional first steps"),
    ({"shift": "abc"}, "Shift"),
])
def test_bad_values_name_the_field(values, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        F.values_to_params("txt2img", values)


def test_negative_prompt_note_at_cfg_1() -> None:
    assert "inactive" in F.negative_prompt_note(1.0) and "inactive" in F.negative_prompt_note(1)
    assert F.negative_prompt_note(7.0) == "" and F.negative_prompt_note(None) == ""


def test_paste_sets_the_fields() -> None:
    from app.infotext.parse import parse_generation_parameters
    from app.infotext.paste import infotext_to_params

    text = create_infotext(GenerationParams(prompt="p", sampler_name="res_multistep", cfg_scale=1.0), prompt="p",
                           negative_prompt="", seed=5, extra={"Shift": 4.5, "Unconditional first steps": 3})
    params, _ = infotext_to_params(parse_generation_parameters(text))
    values = F.params_to_values("txt2img", params)
    assert (values["shift"], values["unconditional_first_steps"], values["sampler_name"]) == (4.5, 3, "res_multistep")


@pytest.mark.parametrize("kind", ["txt2img", "img2img"])
def test_slg_fields_map_to_params_and_back(kind: str) -> None:
    """SD3.5's skip-layer guidance row: off by default (scale 0), the layers as text, paste back through the form."""
    from app.infotext.parse import parse_generation_parameters
    from app.infotext.paste import infotext_to_params

    off = F.values_to_params(kind, {})
    assert (off.skip_layer_guidance_scale, off.skip_guidance_layers) == (0.0, [7, 8, 9])
    on = F.values_to_params(kind, {"skip_layer_guidance_scale": 3, "skip_guidance_layers": "6, 7",
                                   "skip_layer_guidance_start": 0.05, "skip_layer_guidance_stop": 0.3})
    assert (on.skip_layer_guidance_scale, on.skip_guidance_layers) == (3.0, [6, 7])
    assert (on.skip_layer_guidance_start, on.skip_layer_guidance_stop) == (0.05, 0.3)
    values = F.params_to_values(kind, on)
    assert (values["skip_layer_guidance_scale"], values["skip_guidance_layers"]) == (3.0, "6, 7")
    text = create_infotext(on, prompt="p", negative_prompt="", seed=5,
                           extra={"SLG scale": 3.0, "SLG layers": "6, 7", "SLG start": 0.05, "SLG stop": 0.3})
    pasted, _ = infotext_to_params(parse_generation_parameters(text))
    assert F.params_to_values(kind, pasted)["skip_guidance_layers"] == "6, 7"
    with pytest.raises(ValueError, match="SLG layers: 'x' is not a block number"):
        F.values_to_params(kind, {"skip_guidance_layers": "7, x"})
    with pytest.raises(ValueError, match="SLG scale"):
        F.values_to_params(kind, {"skip_layer_guidance_scale": "abc"})
