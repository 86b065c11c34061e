"""The A1111 X/Y/Z plot module extensions extend (``app.plugins.compat.xyz_grid``), without a model: found in
``scripts.scripts_data`` as real extensions look for it, each load's ``axis_options`` starting from the built-in
axes, and an axis's ``apply`` carried into a cell's params."""

from __future__ import annotations

import shutil
from pathlib import Path

from app.params import GenerationParams
from app.plugins import hooks, load_extensions
from app.plugins.compat import current as compat_current
from app.xyz.axes import AXES, axes_for, find_axis, from_options, label

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "extensions" / "xyz-axis"


def _load(tmp_path: Path):
    folder = tmp_path / "extensions"
    if not folder.exists():
        shutil.copytree(FIXTURE, folder / "xyz-axis")
    return load_extensions(None, extensions_dir=folder, make_current=False)


def test_axes_join_after_ours_once_per_load(tmp_path):
    previous = compat_current.current()
    try:
        first, second = _load(tmp_path), _load(tmp_path)
    finally:
        compat_current.set_current(previous)
    assert not [e.errors for e in second.extensions if e.errors]
    for registry in (first, second):  # each load has its own list: no duplicates from the earlier load
        assert [o.label for o in registry.xyz_axis_options[:len(AXES)]] == [a.label for a in AXES]
        assert [o.label for o in hooks.xyz_axis_options(registry)] == [
            "[XyzExt] Note", "[XyzExt] Mood", "[XyzExt] CFG", "[XyzExt] Greeting"]
    extra = from_options(hooks.xyz_axis_options(second))
    txt = axes_for("txt2img", extra)
    assert txt[:len(axes_for("txt2img"))] == axes_for("txt2img")  # A1111's indices (and Shift's) unchanged
    assert find_axis("txt2img", len(axes_for("txt2img")) + 2, "X", extra).label == "[XyzExt] CFG"
    assert find_axis("img2img", "[xyzext] mood", "Y", extra).ext.choice_list() == ["calm", "loud"]
    assert [a.label for a in axes_for("img2img", extra)][-1] == "[XyzExt] CFG"  # Greeting is txt2img-only
    cfg, greeting = extra[2], extra[3]
    assert (cfg.kind, label(cfg, 4.5), label(greeting, "hi")) == ("float", "[XyzExt] CFG: 4.5", "hi")


def test_apply_carries_attributes_fields_and_script_args(tmp_path):
    previous = compat_current.current()
    try:
        registry = _load(tmp_path)
        note, _mood, cfg, greeting = from_options(hooks.xyz_axis_options(registry))
        params = GenerationParams(prompt="x", extras={"alwayson_scripts": {"xyzext": [True]}})
        note.ext.apply_to_params(params, "alpha", ["alpha", "beta"])
        cfg.ext.apply_to_params(params, 3.5, [3.5])
        greeting.ext.apply_to_params(params, "yo", ["yo"])
    finally:
        compat_current.set_current(previous)
    assert params.cfg_scale == 3.5  # an A1111 field: straight into the cell's params
    assert params.extras["a1111_p_attributes"] == {"_xyzext": {"note": "alpha"}}  # kept over later axes
    assert params.extras["alwayson_scripts"] == {"xyzext": {"args": [True, "plain", "yo"]}}  # its own slot


def test_ui_lists_and_offers_extension_axes(tmp_path):
    from types import SimpleNamespace

    from app.ui.xyz import AxisHandlers, tab_axes

    previous = compat_current.current()
    try:
        registry = _load(tmp_path)
    finally:
        compat_current.set_current(previous)
    ctx = SimpleNamespace(runtime=SimpleNamespace(plugins=registry))
    axes = tab_axes(ctx, "txt2img")  # type: ignore[arg-type]
    labels = [a.label for a in axes]
    assert labels[-4:] == ["[XyzExt] Note", "[XyzExt] Mood", "[XyzExt] CFG", "[XyzExt] Greeting"]
    fill, text, drop = AxisHandlers(axes, lambda name: []).select(labels.index("[XyzExt] Mood"), "", [], False)
    assert fill["visible"] and drop["choices"] == ["calm", "loud"]  # its choices() in the values dropdown
    assert AxisHandlers(axes, lambda name: []).select(labels.index("[XyzExt] Note"), "", [], False)[2]["visible"] is False
