"""The size picker's arithmetic."""

from __future__ import annotations

import pytest

from app.families import families
from app.families.sizes import ASPECT_RATIOS, size_for


@pytest.mark.parametrize(
    ("ratio", "mp", "step", "expected"),
    [
        ("1:1", 1.0, 64, (1024, 1024)),
        ("1:1", 1.0, 16, (1024, 1024)),
        ("16:9", 1.0, 64, (1344, 768)),
        ("9:16", 1.0, 64, (768, 1344)),
        ("4:3", 0.5, 16, (832, 624)),
        ("21:9", 2.0, 16, (2208, 944)),
        ("1:1", 0.25, 64, (512, 512)),
    ],
)
def test_size_for(ratio, mp, step, expected):
    assert size_for(ratio, mp, step) == expected


def test_every_ratio_keeps_the_budget_and_the_step():
    for fam in families():
        for ratio in ASPECT_RATIOS:
            for mp in (0.5, 1.0, 2.0):
                w, h = size_for(ratio, mp, fam.defaults.size_step)
                assert w % fam.latent.multiple == 0 and h % fam.latent.multiple == 0
                assert w % fam.defaults.size_step == 0 and h % fam.defaults.size_step == 0
                assert abs(w * h / (mp * 1024 * 1024) - 1) < 0.12


@pytest.mark.parametrize("bad", ["16x9", "0:1", "a:b", ""])
def test_bad_ratio_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="aspect ratio"):
        size_for(bad, 1.0)


def test_ui_size_picker_uses_the_current_family():
    from types import SimpleNamespace

    from app.families import get_family
    from app.ui.generation import picked_size

    z = SimpleNamespace(current_family=lambda: get_family("zimage"))
    sd = SimpleNamespace(current_family=lambda: get_family("sd1"))
    assert picked_size(z, "4:3", "0.5") == (832, 624)
    assert picked_size(sd, "4:3", "0.5") == (832, 640)
    import gradio as gr

    with pytest.raises(gr.Error, match="aspect ratio"):
        picked_size(sd, "4x3", "1.0")


def test_token_counter_counts_qwen_tokens_for_an_llm_encoder():
    from app.ui.common import llm_token_count, token_counter_text

    n = llm_token_count("a (red:1.3) fox BREAK in the snow")
    assert n == llm_token_count("a red fox in the snow") and 3 <= n <= 12
    assert token_counter_text("a red fox", llm=True) == f"{llm_token_count('a red fox')}/512"
    assert token_counter_text("a red fox").endswith("/75")
