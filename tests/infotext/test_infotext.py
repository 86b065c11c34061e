"""Infotext formatting and parsing against the spec §4 vectors (A1111 v1.10.1 semantics)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from app.infotext.format import DEFAULT_VERSION, create_infotext, format_infotext, quote
from app.infotext.parse import parse_generation_parameters, parse_version, unquote
from app.infotext.samplers import schedule_label
from app.params import GenerationParams, HiresParams, Img2ImgParams, SeedParams

EXAMPLE_A = (
    "a photo of a cat\n"
    "Negative prompt: blurry\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1"
)
EXAMPLE_B = (
    "masterpiece, (best quality:1.2), 1girl <lora:add_detail:0.8>\n"
    "Negative prompt: EasyNegative, lowres\n"
    "Steps: 25, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 3071412937, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, VAE hash: 735e4c3a44, "
    "VAE: vae-ft-mse-840000-ema-pruned.safetensors, Denoising strength: 0.7, Clip skip: 2, Hires upscale: 2, "
    'Hires upscaler: Latent, Lora hashes: "add_detail: 7c6bad76eb54", TI hashes: "EasyNegative: c74b4e810b03", '
    "Version: v1.10.1"
)
EXAMPLE_C = (
    "example prompt\n"
    "Steps: 3, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7.0, Seed: 1234, Size: 64x64, "
    "Model hash: d030ad8db7, Model: empty, Denoising strength: 0.75, Mask blur: 4, Masked content: fill, "
    "Eta: 0.0, Version: v1.10.1"
)

DEFAULTS = {
    "Clip skip": "1", "Hires resize-1": 0, "Hires resize-2": 0, "Hires sampler": "Use same sampler",
    "Hires schedule type": "Use same scheduler", "Hires checkpoint": "Use same checkpoint", "Hires prompt": "",
    "Hires negative prompt": "", "Mask mode": "Inpaint masked", "Masked content": "original",
    "Inpaint area": "Whole picture", "Masked area padding": 32, "RNG": "GPU", "Schedule type": "Automatic",
    "Schedule max sigma": 0, "Schedule min sigma": 0, "Schedule rho": 0, "VAE Encoder": "Full",
    "VAE Decoder": "Full", "FP8 weight": "Disable", "Refiner switch by sampling steps": False,
}


# ------------------------------------------------------------------------------------ creation
def test_example_a_from_ui_params() -> None:
    params = GenerationParams(prompt="a photo of a cat", negative_prompt="blurry", cfg_scale=7, steps=20)
    text = create_infotext(params, prompt=params.prompt, negative_prompt=params.negative_prompt, seed=1234,
                           subseed=99, model_hash="6ce0161689", model_name="v1-5-pruned-emaonly", version="v1.10.1")
    assert text == EXAMPLE_A


def test_example_b_hires_lora_ti_vae_clip_skip() -> None:
    params = GenerationParams(
        prompt="masterpiece, (best quality:1.2), 1girl <lora:add_detail:0.8>",
        negative_prompt="EasyNegative, lowres", sampler_name="Euler a", steps=25, cfg_scale=7,
        width=512, height=768, clip_skip=2,
        hires=HiresParams(enabled=True, scale=2, upscaler="Latent", denoising_strength=0.7),
    )
    text = create_infotext(
        params, prompt=params.prompt, negative_prompt=params.negative_prompt, seed=3071412937,
        model_hash="6ce0161689", model_name="v1-5-pruned-emaonly", vae_hash="735e4c3a44",
        vae_name="vae-ft-mse-840000-ema-pruned.safetensors",
        extra={"Lora hashes": "add_detail: 7c6bad76eb54", "TI hashes": "EasyNegative: c74b4e810b03"},
        version="v1.10.1",
    )
    assert text == EXAMPLE_B


def test_example_c_api_inpaint() -> None:
    mask = Image.new("L", (64, 64), 255)
    params = GenerationParams(
        prompt="example prompt", sampler_name="Euler a", steps=3, cfg_scale=7.0, width=64, height=64,
        img2img=Img2ImgParams(denoising_strength=0.75, mask=mask, mask_blur_x=4, mask_blur_y=4,
                              inpainting_fill=0, inpaint_full_res=False, inpaint_full_res_padding=0),
    )
    text = create_infotext(params, prompt="example prompt", negative_prompt="", seed=1234,
                           model_hash="d030ad8db7", model_name="empty", extra={"Eta": 0.0}, version="v1.10.1")
    assert text == EXAMPLE_C


def test_fixed_keys_overwritten_in_place_and_none_removes() -> None:
    params = GenerationParams(prompt="p", sampler_name="Euler")
    text = create_infotext(params, prompt="p", negative_prompt="", seed=1, version=None,
                           extra={"Custom": "x", "Schedule type": "Karras", "Sampler": None})
    assert text.splitlines()[-1] == "Steps: 20, Schedule type: Karras, CFG scale: 7.0, Seed: 1, Size: 512x512, Custom: x"


def test_variation_seed_resize_tiling_rng_clip_skip_one() -> None:
    params = GenerationParams(prompt="p", seed=SeedParams(seed=5, subseed=7, subseed_strength=0.25,
                                                          seed_resize_from_w=256, seed_resize_from_h=320),
                              tiling=True, clip_skip=1)
    line = create_infotext(params, prompt="p", negative_prompt="", seed=5, subseed=8, rng="CPU", ensd=31337).splitlines()[-1]
    assert line == (
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.0, Seed: 5, Size: 512x512, "
        "Variation seed: 8, Variation seed strength: 0.25, Seed resize from: 256x320, ENSD: 31337, RNG: CPU, "
        f"Tiling: True, Version: {DEFAULT_VERSION}")


def test_extra_lists_and_callables_are_per_image() -> None:
    params = GenerationParams(prompt="p")
    extra = {"Per image": ["a", "b"], "Computed": lambda index, prompt_text, **_: f"{prompt_text}{index}"}
    text = create_infotext(params, prompt="q", negative_prompt="", seed=1, extra=extra, index=1, version=None)
    assert text.endswith("Per image: b, Computed: q1")


def test_hires_keys_order_and_conditions() -> None:
    params = GenerationParams(prompt="p", negative_prompt="n", sampler_name="Euler a", hires=HiresParams(
        enabled=True, resize_x=1024, resize_y=0, steps=10, upscaler="R-ESRGAN 4x+", sampler_name="DPM++ 2M",
        checkpoint="other [abcdef0123]", prompt="hp", negative_prompt="n", denoising_strength=0.5))
    line = create_infotext(params, prompt="p", negative_prompt="n", seed=1, version=None,
                           extra={"Hires schedule type": "Karras"}).splitlines()[-1]
    assert line.endswith(
        "Denoising strength: 0.5, Hires checkpoint: other [abcdef0123], Hires sampler: DPM++ 2M, Hires prompt: hp, "
        "Hires schedule type: Karras, Hires resize: 1024x0, Hires steps: 10, Hires upscaler: R-ESRGAN 4x+")


def test_quote_rule_and_key_equal_value() -> None:
    assert quote("a, b") == '"a, b"'
    assert quote('x:"y"') == '"x:\\"y\\""'
    assert quote(7) == 7
    assert quote("line\nbreak") == '"line\\nbreak"'
    assert unquote('"a, b"') == "a, b"
    assert unquote('"broken') == '"broken'
    assert format_infotext("p", "", {"Steps": 3, "Flag": "Flag", "Skip": None, "A": "b", "Z": "日本, x"}) == (
        'p\nSteps: 3, Flag, A: b, Z: "日本, x"')


def test_schedule_label_resolution() -> None:
    assert schedule_label("DPM++ 2M", "Automatic") == "Karras"
    assert schedule_label("DPM++ 2M SDE", "Automatic") == "Exponential"
    assert schedule_label("Euler a", "Automatic") == "Automatic"
    assert schedule_label("Euler a", "Karras") == "Karras"


def test_default_version_is_not_an_a1111_version() -> None:
    assert parse_version(DEFAULT_VERSION) is None
    assert "," not in DEFAULT_VERSION and ":" not in DEFAULT_VERSION and " " not in DEFAULT_VERSION


# ------------------------------------------------------------------------------------- parsing
def test_parse_example_a() -> None:
    expected = {
        "Steps": "20", "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": "7", "Seed": "1234",
        "Size-1": "512", "Size-2": "512", "Model hash": "6ce0161689", "Model": "v1-5-pruned-emaonly",
        "Version": "v1.10.1", "Prompt": "a photo of a cat", "Negative prompt": "blurry",
    }
    assert parse_generation_parameters(EXAMPLE_A) == {**DEFAULTS, **expected}


def test_parse_example_b_unquotes_and_emphasis() -> None:
    res = parse_generation_parameters(EXAMPLE_B)
    assert res["Lora hashes"] == "add_detail: 7c6bad76eb54"
    assert res["TI hashes"] == "EasyNegative: c74b4e810b03"
    assert res["Clip skip"] == "2" and res["Hires upscale"] == "2" and res["Denoising strength"] == "0.7"
    assert res["Size-1"] == "512" and res["Size-2"] == "768"
    assert res["Prompt"] == "masterpiece, (best quality:1.2), 1girl <lora:add_detail:0.8>"
    assert res["Emphasis"] == "Original"
    assert "Emphasis" not in parse_generation_parameters(EXAMPLE_A)


@pytest.mark.parametrize(
    ("text", "prompt", "negative"),
    [
        ("p\nSteps: 20, Seed: 5", "p\nSteps: 20, Seed: 5", ""),
        ("just a prompt", "just a prompt", ""),
        ("", "", ""),
        ("a\n b \nNegative prompt: x\ny\nSteps: 1, Seed: 2, CFG scale: 3", "a\nb", "x\ny"),
        ("\n\nlead\n\nmid\nSteps: 1, Seed: 2, CFG scale: 3", "lead\n\nmid", ""),
        ("a\nNegative prompt: x\nNegative prompt: y\nSteps: 1, Seed: 2, CFG scale: 3", "a", "x\ny"),
    ],
)
def test_parse_prompt_lines(text: str, prompt: str, negative: str) -> None:
    res = parse_generation_parameters(text)
    assert (res["Prompt"], res["Negative prompt"]) == (prompt, negative)
    if "\n" not in text.strip():
        assert {k: v for k, v in res.items() if k not in ("Prompt", "Negative prompt")} == DEFAULTS


def test_parse_sizes_quotes_empty_values_and_skip_fields() -> None:
    line = 'p\nSteps: 5, Hires resize: 1024x768, Seed resize from: 64x80, Note: "a, \\"b\\"", Empty: , Size: 8x8'
    res = parse_generation_parameters(line, skip_fields=["Steps"])
    assert res["Hires resize-1"] == "1024" and res["Hires resize-2"] == "768"
    assert res["Seed resize from-1"] == "64" and res["Seed resize from-2"] == "80"
    assert res["Note"] == 'a, "b"'
    assert "Empty" not in res and "Steps" not in res


def test_parse_old_first_pass_size_and_hypernet() -> None:
    text = "p\nSteps: 5, Size: 1024x1024, First pass size: 0x0, Hypernet: anime, Hypernet strength: 0.5"
    res = parse_generation_parameters(text)
    assert (res["Size-1"], res["Size-2"], res["Hires resize-1"], res["Hires resize-2"]) == (512, 512, 1024, 1024)
    assert res["Prompt"] == "p<hypernet:anime:0.5>"


def test_parse_backcompat_by_version() -> None:
    old = parse_generation_parameters("a [b:c:2]\nSteps: 5, Sampler: DDIM, Version: v1.5.1, Refiner: x")
    assert old["Old prompt editing timelines"] is True and old["Pad conds v0"] is True
    assert old["Downcast alphas_cumprod"] is True and old["Refiner switch by sampling steps"] is True
    new = parse_generation_parameters("a [b:c:2]\nSteps: 5, Sampler: DDIM, Version: v1.10.1")
    assert not any(k in new for k in ("Old prompt editing timelines", "Pad conds v0", "Downcast alphas_cumprod"))
    ours = parse_generation_parameters(f"a [b:c:2]\nSteps: 5, Sampler: DDIM, Version: {DEFAULT_VERSION}")
    assert "Downcast alphas_cumprod" not in ours


def test_parse_styles_extractor() -> None:
    def extractor(prompt: str, negative: str) -> tuple[list[str], str, str]:
        return (["Style A"], prompt.replace(", masterpiece", ""), negative) if "masterpiece" in prompt else ([], prompt, negative)

    res = parse_generation_parameters("cat, masterpiece\nSteps: 1, Seed: 2, CFG scale: 3", style_extractor=extractor)
    assert res["Prompt"] == "cat" and res["Styles array"] == ["Style A"]
    res = parse_generation_parameters("cat\nSteps: 1, Seed: 2, CFG scale: 3", style_extractor=extractor)
    assert "Styles array" not in res


# ----------------------------------------------------------------------------- property test
_line_text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=20).map(
    str.strip).filter(lambda s: s and not s.startswith("Negative prompt:"))
_key = st.from_regex(r"[A-Za-z][A-Za-z0-9 \-/]{1,12}[A-Za-z0-9]", fullmatch=True)
_value = st.one_of(
    st.integers(-10**12, 10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    _line_text.filter(lambda s: not (s.startswith('"') and not any(c in s for c in ",:\n"))),
    st.text(min_size=1, max_size=15).filter(lambda s: s.strip() == s and s != ""),
).filter(lambda v: not isinstance(v, str) or ("\r" not in v and not __import__("re").match(r"^\d+x\d+$", v)))


@settings(max_examples=60, deadline=None)
@given(
    prompt_lines=st.lists(_line_text, min_size=1, max_size=3),
    negative_lines=st.lists(_line_text, max_size=3),
    pairs=st.dictionaries(_key, _value, min_size=3, max_size=6),
)
def test_parse_recovers_formatted_fields(prompt_lines: list[str], negative_lines: list[str], pairs: dict) -> None:
    pairs = {k: v for k, v in pairs.items() if k != str(v)}
    if len(pairs) < 3 or any(k.lower().startswith("negative prompt") for k in pairs):
        return
    prompt, negative = "\n".join(prompt_lines), "\n".join(negative_lines)
    res = parse_generation_parameters(format_infotext(prompt, negative, pairs), auto_backcompat=False)
    assert res["Prompt"] == prompt
    assert res["Negative prompt"] == negative
    for key, value in pairs.items():
        assert res[key] == str(value), (key, value, json.dumps(res))


def test_failing_extra_callable_is_left_out() -> None:
    def broken(**_kwargs):
        raise RuntimeError("extension bug")

    text = create_infotext(GenerationParams(prompt="p"), prompt="p", negative_prompt="", seed=1, version=None,
                           extra={"Broken": broken, "Fine": "yes"})
    assert text.endswith("Seed: 1, Size: 512x512, Fine: yes")


def test_parse_windows_line_endings() -> None:
    res = parse_generation_parameters(EXAMPLE_A.replace("\n", "\r\n"))
    assert res["Prompt"] == "a photo of a cat" and res["Version"] == "v1.10.1" and res["Negative prompt"] == "blurry"


# A1111's parameter regex, as the spec describes it (leading \s*, unbounded key): an oracle only.
_A1111_PARAM_RE = __import__("re").compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["Steps", ": ", ", ", " ", "a b", '"', '\\"', "x/y-z", "\t", "7", "é", ":", ",", "\\"]),
                max_size=30).map("".join))
def test_param_regex_matches_a1111(line: str) -> None:
    from app.infotext.parse import parse_params_line

    assert parse_params_line(line) == _A1111_PARAM_RE.findall(line)


def test_long_lines_parse_fast() -> None:
    import time

    start = time.perf_counter()
    parse_generation_parameters("word " * 8000 + "\n" + " " * 40000 + "x")
    assert time.perf_counter() - start < 2.0
