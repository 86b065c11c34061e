"""Extra-network tags ``<type:args>`` and LoRA multipliers (spec §3.1)."""

from __future__ import annotations

import pytest

from app.prompts.extra_networks import format_extra_network_tag
from app.prompts.syntax import (
    ExtraNetworkParams,
    first_prompt_extra_networks,
    lora_weights,
    parse_extra_networks,
    parse_extra_networks_batch,
)


def only_lora(tag: str) -> ExtraNetworkParams:
    text, data = parse_extra_networks(tag)
    assert text == ""
    assert list(data) == ["lora"] and len(data["lora"]) == 1
    return data["lora"][0]


SPEC_WEIGHTS = [
    ("<lora:n>", (1.0, 1.0, None)),
    ("<lora:n:0.8>", (0.8, 0.8, None)),
    ("<lora:n:0.8:0.5>", (0.8, 0.5, None)),
    ("<lora:n:1:0.5:16>", (1.0, 0.5, 16)),
    ("<lora:n:unet=0.3>", (1.0, 0.3, None)),
    ("<lora:n:0.6:te=0.2>", (0.2, 0.2, None)),
    # more
    ("<lora:n:unet=0.3:te=0.5>", (0.5, 0.3, None)),
    ("<lora:n:te=0.5>", (0.5, 0.5, None)),
    ("<lora:n:dyn=8>", (1.0, 1.0, 8)),
    ("<lora:n:1:1:16:dyn=4>", (1.0, 1.0, 4)),
    ("<lora:n:-1>", (-1.0, -1.0, None)),
    ("<lora:n:0.7:unet=0>", (0.7, 0.0, None)),
]


@pytest.mark.parametrize(("tag", "weights"), SPEC_WEIGHTS)
def test_lora_weights(tag: str, weights: tuple) -> None:
    params = only_lora(tag)
    assert params.positional[0] == "n"
    assert lora_weights(params) == weights


def test_spec_prompt_removal() -> None:
    text, data = parse_extra_networks("a cat <lora:add_detail:0.8>, best")
    assert text == "a cat , best"
    assert [p.items for p in data["lora"]] == [["add_detail", "0.8"]]


def test_name_with_spaces() -> None:
    params = only_lora("<lora:my lora:1>")
    assert params.positional == ["my lora", "1"]


def test_named_and_positional_split() -> None:
    params = only_lora("<lora:n:0.5:unet=0.3:te=0.2:a=b=c>")
    assert params.items == ["n", "0.5", "unet=0.3", "te=0.2", "a=b=c"]
    assert params.positional == ["n", "0.5", "a=b=c"]  # more than one "=" is positional
    assert params.named == {"unet": "0.3", "te": "0.2"}


def test_types_are_kept_as_written_and_grouped() -> None:
    text, data = parse_extra_networks("x <lora:a:1> y <lyco:b:0.5><hypernet:h:0.3> <lora:c> <foo:bar>")
    assert text == "x  y   "
    assert [p.items for p in data["lora"]] == [["a", "1"], ["c"]]
    assert [p.items for p in data["lyco"]] == [["b", "0.5"]]
    assert [p.items for p in data["hypernet"]] == [["h", "0.3"]]
    assert [p.items for p in data["foo"]] == [["bar"]]


@pytest.mark.parametrize("text", ["<lora>", "<lora:>", "<a b:c>", "a < b > c", "<:x>", "<lora-x:1>", "no tags"])
def test_non_tags_stay_text(text: str) -> None:
    assert parse_extra_networks(text) == (text, {})


def test_args_stop_at_first_closing_angle() -> None:
    text, data = parse_extra_networks("<lora:a:1>>")
    assert text == ">"
    assert data["lora"][0].items == ["a", "1"]


def test_empty_args_between_colons() -> None:
    params = only_lora("<lora:n::0.5>")
    assert params.positional == ["n", "", "0.5"]
    with pytest.raises(ValueError, match="te multiplier"):
        lora_weights(params)


@pytest.mark.parametrize("tag", ["<lora:n:abc>", "<lora:n:1:x>", "<lora:n:1:1:1.5>", "<lora:n:te=zz>"])
def test_bad_numbers_raise_clear_errors(tag: str) -> None:
    with pytest.raises(ValueError, match="extra network tag"):
        lora_weights(only_lora(tag))


def test_batch_uses_the_first_prompt_only() -> None:
    prompts = ["a <lora:x:0.5>", "b <lora:y:1>", "c"]
    cleaned, data = parse_extra_networks_batch(prompts)
    assert cleaned == ["a ", "b ", "c"]
    assert [p.items for p in data["lora"]] == [["x", "0.5"]]
    assert first_prompt_extra_networks(prompts) == data
    assert parse_extra_networks_batch([]) == ([], {})
    assert parse_extra_networks_batch(["plain", "<lora:z>"]) == (["plain", ""], {})


def test_params_equality_and_construction() -> None:
    a = ExtraNetworkParams(items=["n", "te=1"])
    assert a.positional == ["n"] and a.named == {"te": "1"}
    assert a == ExtraNetworkParams.from_items(["n", "te=1"])
    assert a != ExtraNetworkParams(items=["n"])


def test_format_tag() -> None:
    assert format_extra_network_tag("lora", "add detail", 1.0) == "<lora:add detail:1.0>"
    assert format_extra_network_tag("lora", "x") == "<lora:x>"
    text, data = parse_extra_networks(format_extra_network_tag("lora", "x", 0.7))
    assert lora_weights(data["lora"][0]) == (0.7, 0.7, None)


def test_extra_network_registry_register_get_unregister():
    from app.prompts.extra_networks import ExtraNetworkRegistry

    a, b = ExtraNetworkRegistry(), ExtraNetworkRegistry()
    handler = object()
    a.register("lora", handler)
    assert a.get("lora") is handler and "lora" in a and list(a) == ["lora"]
    assert b.get("lora") is None and "lora" not in b  # each registry is its own
    assert a.unregister("lora") is handler and a.unregister("lora") is None
