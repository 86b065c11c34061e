"""The X/Y/Z plot's Paste ↙️: an X/Y/Z grid's infotext selects the script and fills each axis's type and values
(a choice axis's values go to its dropdown); any other infotext changes nothing."""

from __future__ import annotations

from app.engine.scripts.xyz_axes import axes_for
from app.ui.xyz import paste_xyz

GRID = ('a boat\nSteps: 2, Sampler: Euler, Seed: 3, Script: X/Y/Z plot, X Type: Seed, X Values: "3, 4", '
        'Fixed X Values: "3, 4", Y Type: Sampler, Y Values: "Euler,DPM++ 2M,Nope", Z Type: Steps, Z Values: 1-2, '
        'Version: atelier-0.1.0')


def test_paste_fills_the_axes():
    lists = {"samplers": ["Euler", "Euler a", "DPM++ 2M"]}.get
    updates = paste_xyz(GRID, axes_for("txt2img"), lists)
    assert updates[0]["value"] == "X/Y/Z plot"
    assert [updates[1]["value"], updates[2]["value"], updates[3]["value"]] == ["Seed", "3, 4", []]
    assert updates[4]["value"] == "Sampler" and updates[5]["value"] == ""
    assert updates[6]["value"] == ["Euler", "DPM++ 2M"] and updates[6]["choices"] == ["Euler", "Euler a", "DPM++ 2M"]
    assert [updates[7]["value"], updates[8]["value"]] == ["Steps", "1-2"]


def test_other_infotexts_change_nothing():
    updates = paste_xyz("a cat\nSteps: 20, Seed: 1", axes_for("img2img"), lambda name: [])
    assert len(updates) == 10 and all("value" not in u for u in updates)
