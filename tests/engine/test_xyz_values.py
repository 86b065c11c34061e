"""The pure parts of the X/Y/Z plot: A1111 1.10's axis list per mode (the API's indices), value parsing (CSV, int
and float ranges, counts, negative numbers, choices, permutations, sizes, seeds), Prompt S/R and Prompt order,
the loop order that keeps the checkpoint outermost, applying values to params, labels and grid infotexts."""

from __future__ import annotations

import pytest
from PIL import Image

from app.engine.scripts.xyz_grid import draw_plot, with_params
from app.params import GenerationParams, Img2ImgParams
from app.xyz import axes
from app.xyz import values as vals


def _axis(kind: str, label: str) -> axes.Axis:
    return axes.find_axis(kind, label)


def test_axis_lists_are_a1111_order_per_mode():
    t2i = [a.label for a in axes.axes_for("txt2img")]
    i2i = [a.label for a in axes.axes_for("img2img")]
    assert t2i[:12] == ["Nothing", "Seed", "Var. seed", "Var. strength", "Steps", "Hires steps", "CFG Scale",
                        "Prompt S/R", "Prompt order", "Sampler", "Hires sampler", "Checkpoint name"]
    assert i2i[:12] == ["Nothing", "Seed", "Var. seed", "Var. strength", "Steps", "CFG Scale", "Image CFG Scale",
                        "Prompt S/R", "Prompt order", "Sampler", "Checkpoint name", "Negative Guidance minimum sigma"]
    assert t2i.index("Schedule type") == 17 and t2i.index("Clip skip") == 24 and t2i.index("Hires upscaler") == 28
    assert t2i.index("VAE") == 29 and t2i[41] == "Size" and t2i[42:] == ["Shift"]  # ours after A1111's 42
    assert i2i.index("Cond. Image Mask Weight") == 27 and i2i.index("VAE") == 28 and i2i[40:] == ["Size", "Shift"]
    assert "Hires steps" not in i2i and "Image CFG Scale" not in t2i
    assert axes.find_axis("txt2img", 11).label == "Checkpoint name"
    assert axes.find_axis("img2img", "4").label == "Steps" and axes.find_axis("img2img", None).label == "Nothing"
    assert axes.find_axis("txt2img", "cfg scale").label == "CFG Scale"
    with pytest.raises(ValueError, match="out of range"):
        axes.find_axis("txt2img", 43)
    with pytest.raises(ValueError, match="unknown axis"):
        axes.find_axis("txt2img", "Colour")


def test_unavailable_axes_keep_their_index_and_explain():
    fp8 = axes.find_axis("txt2img", 40)
    assert fp8.label == "FP8 mode" and "FP8" in axes.unavailable_reason(fp8, "txt2img")
    assert axes.unavailable_reason(_axis("txt2img", "Token merging ratio"), "txt2img")
    assert axes.unavailable_reason(_axis("txt2img", "Initial noise multiplier"), "txt2img")
    assert axes.unavailable_reason(_axis("img2img", "Initial noise multiplier"), "img2img") == ""
    refiner = _axis("txt2img", "Refiner checkpoint")
    assert axes.unavailable_reason(refiner, "txt2img") == ""
    assert axes.unavailable_reason(_axis("txt2img", "Steps"), "txt2img") == ""


@pytest.mark.parametrize("text, expected", [
    ("1-5", [1, 2, 3, 4, 5]),
    ("1-10 (+3)", [1, 4, 7, 10]),
    ("1-10 [5]", [1, 3, 5, 7, 10]),
    ("10-20 [5]", [10, 12, 15, 17, 20]),
    ("10-1 (-3)", [10, 7, 4]),
    ("-5--3, 7", [-5, -4, -3, 7]),
    ("-1, 3", [-1, 3]),
    (" 2 , 4-5", [2, 4, 5]),
])
def test_int_ranges(text, expected):
    assert vals.axis_values(_axis("txt2img", "Steps"), text, [], False) == expected


@pytest.mark.parametrize("text, expected", [
    ("1-3 (+0.5)", [1.0, 1.5, 2.0, 2.5, 3.0]),
    ("0.5-1 [3]", [0.5, 0.75, 1.0]),
    ("7, 7.5, -1.25", [7.0, 7.5, -1.25]),
    ("1-2", [1.0, 2.0]),
])
def test_float_ranges(text, expected):
    assert vals.axis_values(_axis("txt2img", "CFG Scale"), text, [], False) == pytest.approx(expected)


def test_bad_numbers_are_clear_errors():
    with pytest.raises(ValueError, match="Steps: '1.5' is not a whole number"):
        vals.axis_values(_axis("txt2img", "Steps"), "1.5", [], False)
    with pytest.raises(ValueError, match="CFG Scale: 'high' is not a number"):
        vals.axis_values(_axis("txt2img", "CFG Scale"), "high", [], False)
    with pytest.raises(ValueError, match="no values"):
        vals.axis_values(_axis("txt2img", "Seed"), " ", [], False)


def test_csv_quotes_and_prompt_axes():
    sr = _axis("txt2img", "Prompt S/R")
    values = vals.axis_values(sr, 'cat,"big, red dog", ', [], False)  # csv: no space before a quote (as A1111)
    assert values == ["cat", "big, red dog", ""]
    vals.check_prompt_values(sr, values, "a cat on a mat", "")
    vals.check_prompt_values(sr, values, "a dog", "ugly cat")  # found in the negative prompt
    with pytest.raises(ValueError, match="Prompt S/R did not find cat in prompt or negative prompt"):
        vals.check_prompt_values(sr, values, "a dog", "")
    order = _axis("txt2img", "Prompt order")
    perms = vals.axis_values(order, "red, blue, green", [], False)
    assert len(perms) == 6 and perms[0] == ("red", "blue", "green") and perms[-1] == ("green", "blue", "red")
    assert axes.reorder_prompt("a red car, a blue sky, green grass", ("green", "red", "blue")) == \
        "a green car, a red sky, blue grass"
    with pytest.raises(ValueError, match="Prompt order did not find pink"):
        vals.check_prompt_values(order, [("red", "pink")], "red car", "")


def test_choice_axes_match_case_insensitively():
    sampler = _axis("txt2img", "Sampler")
    choices = {"samplers": ["Euler", "Euler a", "DPM++ 2M", "k_euler"], "vaes": ["Automatic", "None", "tiny.vae.pt"]}
    assert vals.axis_values(sampler, "", ["euler a", "EULER"], False, choices.get) == ["Euler a", "Euler"]
    assert vals.axis_values(sampler, "dpm++ 2m, k_euler", [], True, choices.get) == ["DPM++ 2M", "k_euler"]
    with pytest.raises(ValueError, match="Sampler: unknown value 'Heunn'"):
        vals.axis_values(sampler, "", ["Heunn"], False, choices.get)
    vae = _axis("txt2img", "VAE")
    assert vals.axis_values(vae, "auto, none, tiny", [], True, choices.get) == ["Automatic", "None", "tiny.vae.pt"]
    flag = _axis("txt2img", "Always discard next-to-last sigma")
    assert vals.axis_values(flag, "", ["true", "False"], False) == ["True", "False"]
    assert vals.axis_values(_axis("txt2img", "RNG source"), "cpu,nv", [], True) == ["CPU", "NV"]
    # the dropdown wins over the text unless csv_mode; an empty dropdown falls back to the text
    assert vals.axis_values(sampler, "Euler", ["DPM++ 2M"], False, choices.get) == ["DPM++ 2M"]
    assert vals.axis_values(sampler, "Euler", [], False, choices.get) == ["Euler"]


def test_size_and_seeds():
    assert vals.axis_values(_axis("txt2img", "Size"), "512x768, 64 x 128", [], False) == [(512, 768), (64, 128)]
    with pytest.raises(ValueError, match="not a size like 512x768"):
        vals.axis_values(_axis("txt2img", "Size"), "512", [], False)
    seed = _axis("txt2img", "Seed")
    values = vals.axis_values(seed, "-1, 5, -1", [], False)
    drawn = iter([11, 12])
    assert vals.fix_seeds(seed, values, lambda: next(drawn)) == [11, 5, 12]
    assert vals.fix_seeds(_axis("txt2img", "Steps"), [-1], lambda: 3) == [-1]


def test_checkpoint_axis_is_the_outer_loop():
    assert vals.processing_order(0, 0, 0) == ("z", "y")
    assert vals.processing_order(0, 1.0, 0) == ("y", "z")
    assert vals.processing_order(1.0, 0.7, 0) == ("x", "y")
    assert vals.processing_order(0.7, 0, 1.0) == ("z", "x")
    order = vals.cell_order(2, 3, 2, "y", "z")
    assert order[:4] == [(0, 0, 0), (1, 0, 0), (0, 0, 1), (1, 0, 1)]
    assert [iy for _, iy, _ in order] == [0] * 4 + [1] * 4 + [2] * 4  # each Y value (the checkpoint) once
    assert sorted(order) == sorted((x, y, z) for x in range(2) for y in range(3) for z in range(2))
    with pytest.raises(ValueError, match="too large"):
        vals.check_cell_count(100, 100, 1, 512, 512, 200)


def test_apply_values_to_params():
    p = GenerationParams(prompt="a cat", negative_prompt="no cat", styles=["s0"])
    axes.apply(p, _axis("txt2img", "Prompt S/R"), "dog", ["cat", "dog"])
    axes.apply(p, _axis("txt2img", "Hires steps"), 7, [7])
    axes.apply(p, _axis("txt2img", "Denoising"), 0.3, [0.3])
    axes.apply(p, _axis("txt2img", "Sigma Churn"), 0.5, [0.5])
    axes.apply(p, _axis("txt2img", "Always discard next-to-last sigma"), "True", ["True"])
    axes.apply(p, _axis("txt2img", "Styles"), "a,b", ["a,b"])
    axes.apply(p, _axis("txt2img", "Size"), (96, 64), [(96, 64)])
    axes.apply(p, _axis("txt2img", "Checkpoint name"), "tiny-sd1", ["tiny-sd1"])
    axes.apply(p, _axis("txt2img", "Clip skip"), 2, [2])
    axes.apply(p, _axis("txt2img", "Shift"), 3.0, [3.0])
    assert (p.prompt, p.negative_prompt) == ("a dog", "no dog")
    assert p.hires.steps == 7 and p.hires.denoising_strength == 0.3
    assert p.override_settings == {"s_churn": 0.5, "always_discard_next_to_last_sigma": True}
    assert p.styles == ["s0", "a", "b"] and (p.width, p.height) == (96, 64)
    assert p.checkpoint == "tiny-sd1" and p.clip_skip == 2 and p.shift == 3.0
    q = GenerationParams(img2img=Img2ImgParams())
    axes.apply(q, _axis("img2img", "Denoising"), 0.4, [0.4])
    axes.apply(q, _axis("img2img", "Image CFG Scale"), 1.5, [1.5])
    assert q.img2img.denoising_strength == 0.4 and q.img2img.image_cfg_scale == 1.5


def test_labels():
    assert axes.label(_axis("txt2img", "CFG Scale"), 7.0) == "CFG Scale: 7.0"
    assert axes.label(_axis("txt2img", "CFG Scale"), 0.1 + 0.2) == "CFG Scale: 0.3"
    assert axes.label(_axis("txt2img", "Seed"), 5) == "Seed: 5"
    assert axes.label(_axis("txt2img", "Sampler"), "Euler") == "Euler"
    assert axes.label(_axis("txt2img", "Prompt order"), ("a", "b")) == "a, b"
    assert axes.label(_axis("txt2img", "Checkpoint name"), "sub/model.safetensors") == "model.safetensors"
    assert axes.label(_axis("txt2img", "Nothing"), 0) == ""
    assert axes.label(_axis("txt2img", "Size"), "64x96") == "Size: 64x96"


def test_grid_infotext_params_go_before_version():
    text = "a cat\nNegative prompt: ugly\nSteps: 2, Seed: 5, Version: atelier-0.1"
    assert with_params(text, {"Script": "X/Y/Z plot", "X Values": "1, 2"}) == (
        'a cat\nNegative prompt: ugly\nSteps: 2, Seed: 5, Script: X/Y/Z plot, X Values: "1, 2", Version: atelier-0.1')
    assert with_params("p\nSteps: 2", {"X Type": "Seed"}) == "p\nSteps: 2, X Type: Seed"


def test_plot_sizes_with_and_without_legend():
    cells = [Image.new("RGB", (32, 32), (i * 30, 0, 0)) for i in range(8)]
    plain, subs = draw_plot(cells, ["", ""], [""] * 2, [""] * 2, False, 10)
    assert plain.size == (128, 64) and [s.size for s in subs] == [(64, 64)] * 2  # no labels, no margins
    one, _ = draw_plot(cells[:4], ["Seed: 1", "Seed: 2"], ["Steps: 1", "Steps: 2"], [""], True, 4)
    assert one.width == 32 * 2 + 4 + 24 and one.height > 32 * 2 + 4  # left band 3/4 of a cell, top band, margin
    nothing_y, _ = draw_plot(cells[:2], ["a", "b"], [""], [""], True, 0)
    assert nothing_y.width == 64 and nothing_y.height > 32  # no row labels: no left band
