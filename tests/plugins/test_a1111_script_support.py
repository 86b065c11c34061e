"""What A1111's own scripts (prompt_matrix.py, prompts_from_file.py, loopback.py) need from the compat layer:
per-image prompt/seed lists set on p before process_images, a script's extra_generation_params in the infotext
of that job, modules.errors, and the colour-correction helpers."""

from __future__ import annotations

import logging

import pytest
from PIL import Image

from app.params import GenerationParams
from app.plugins import hooks
from app.plugins.compat import errors
from app.plugins.compat import processing as compat_processing
from app.plugins.compat.processing import StableDiffusionProcessing
from tests.plugins.test_plugins import fake_plan


def _job_params(p: StableDiffusionProcessing) -> GenerationParams:
    """What process_images(p) submits (without running it)."""
    params = p.to_params().copy()
    if p.extra_generation_params:
        params.extras[hooks.CARRIED_EXTRA] = dict(p.extra_generation_params)
    compat_processing.carry_per_image_lists(params)
    return params


def test_per_image_prompts_and_seeds_reach_the_job() -> None:
    p = StableDiffusionProcessing(prompt="a car", n_iter=4)
    p.prompt = ["a car", "a car, red", "a car, fast", "a car, red, fast"]  # Prompt matrix
    p.seed = [7, 7, 8, 9]
    p.extra_generation_params["Matrix"] = "2x2"
    params = _job_params(p)
    assert params.prompt == "a car" and params.seed.seed == 7  # the job itself gets plain values
    plan = fake_plan(params)
    hooks.job_started(plan)
    assert plan.all_prompts == ["a car", "a car, red", "a car, fast", "a car, red, fast"]
    assert plan.seeds == [7, 7, 8, 9] and plan.extra["Matrix"] == "2x2"


def test_a_short_list_repeats_over_the_images() -> None:
    p = StableDiffusionProcessing(prompt="x", batch_size=3)
    p.negative_prompt = ["ugly", "blurry"]
    plan = fake_plan(_job_params(p))
    hooks.job_started(plan)
    assert plan.all_negative_prompts == ["ugly", "blurry", "ugly"] and plan.all_prompts == ["x"] * 3


def test_modules_errors_logs_instead_of_printing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="modules.errors")
    errors.print_error("bad line")
    try:
        raise ValueError("boom")
    except ValueError as exc:
        errors.display_once(exc, "parsing")
        errors.display_once(exc, "parsing")
    errors.run(lambda: 1 / 0, "dividing")
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "bad line"
    assert messages.count("parsing: ValueError: boom") == 1 and "dividing: ZeroDivisionError: division by zero" in messages
    assert errors.get_exceptions()[0]["exception"].startswith("ZeroDivisionError")


def test_color_correction_helpers() -> None:
    target = compat_processing.setup_color_correction(Image.new("RGB", (8, 8), (200, 40, 40)))
    out = compat_processing.apply_color_correction(target, Image.new("RGB", (8, 8), (40, 40, 200)))
    r, g, b = out.convert("RGB").getpixel((0, 0))
    assert r > b  # pulled towards the red original


def test_prompt_matrix_grid_is_labelled() -> None:
    from app.plugins.compat import images

    cells = [Image.new("RGB", (64, 64), (i * 60, 90, 90)) for i in range(4)]
    assert images.check_grid_size(cells) and not images.check_grid_size([]) and not images.check_grid_size([None])
    grid = Image.new("RGB", (128, 128), (10, 200, 10))
    labelled = images.draw_prompt_matrix(grid, 64, 64, ["a car", "red", "fast"])
    assert labelled.width > 128 and labelled.height > 128  # bands for the row and column labels
    assert labelled.getpixel((labelled.width - 1, labelled.height - 1)) == (10, 200, 10)  # the grid itself is kept
    band = labelled.crop((labelled.width - 128, 0, labelled.width, labelled.height - 128)).convert("L")
    assert band.getextrema()[0] < 100  # dark label text above the columns
    # a label that is off is grey (struck through), one that is on is black
    on = images.draw_grid_annotations(grid, 64, 64, [[images.GridAnnotation("red", True)]] * 2, [])
    off = images.draw_grid_annotations(grid, 64, 64, [[images.GridAnnotation("red", False)]] * 2, [])
    assert on.convert("L").getextrema()[0] < off.convert("L").getextrema()[0]


def test_opts_answers_a1111_options_atelier_does_not_have() -> None:
    from app.plugins.compat import shared

    assert shared.opts.return_grid is True
    with pytest.raises(AttributeError, match="no setting 'no_such_option'"):
        _ = shared.opts.no_such_option
