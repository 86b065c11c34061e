"""The Checkpoint Merger tab's checks before a job is queued (app.ui.merger.merge_options)."""

from __future__ import annotations

import pytest

from app.ui.merger import merge_options


def test_options_for_the_job() -> None:
    assert merge_options("a [1]", "b [2]", None, "Weighted sum", "0.25", True, None, False, " mix ") == {
        "primary": "a [1]", "secondary": "b [2]", "tertiary": "", "method": "Weighted sum", "multiplier": 0.25,
        "half": True, "vae": "None", "save_metadata": False, "custom_name": "mix", "config_source": 0,
        "discard_weights": ""}
    options = merge_options("a", "b", None, "Weighted sum", 0.3, False, None, True, "", 3, r"^model_ema\.")
    assert options["config_source"] == 3 and options["discard_weights"] == r"^model_ema\."
    assert merge_options("a", None, None, "No interpolation", 0.3, False, "v.pt", True, "")["vae"] == "v.pt"


def test_a_bad_discard_expression_is_refused_before_queueing() -> None:
    with pytest.raises(ValueError, match="not a valid regular expression"):
        merge_options("a", "b", None, "Weighted sum", 0.3, False, None, True, "", 0, "([")


@pytest.mark.parametrize(("args", "message"), [
    ((None, "b", None, "Weighted sum"), "choose a primary model"),
    (("a", None, None, "Weighted sum"), "Weighted sum needs a secondary model"),
    (("a", "b", None, "Add difference"), "Add difference needs a tertiary model"),
    (("a", "b", "c", "Average"), "unknown method"),
])
def test_bad_choices_are_refused(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        merge_options(*args, 0.3, False, None, True, "")
