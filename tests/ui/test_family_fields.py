"""Per-family generation fields (``app.ui.family_fields``): the family of a checkpoint from its header through the
catalog, without torch; which fields show; which defaults follow a model switch; the table agrees with
``app.families``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.ui import family_fields as FF

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from app.devtools.tiny_flux import write_tiny_flux
    from app.devtools.tiny_models import write_tiny_models

    data = Path(tmp_path_factory.mktemp("family-fields"))
    write_tiny_models(data, families=["sd1"])
    for variant in ("dev", "schnell", "fill"):
        write_tiny_flux(data, variant)
    return data


_PROBE = """
import json, sys
from pathlib import Path
from types import SimpleNamespace
from app.models.catalog.index import Catalog
from app.paths import Paths
from app.ui.family_fields import checkpoint_family
catalog = Catalog(Paths.from_data_dir(Path(sys.argv[1])))
ctx = SimpleNamespace(catalog=catalog, settings={}, runtime=None, checkpoint_titles=lambda: [])
out = {c.title: checkpoint_family(ctx, c.title) for c in catalog.checkpoints()}
print(json.dumps({"families": out, "torch": "torch" in sys.modules}))
"""


def test_family_from_the_header_without_torch(data_dir: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE, str(data_dir)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=True)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["torch"] is False  # the server process knows a file's family without torch
    families = {title.split(".")[0]: family for title, family in got["families"].items()}
    assert families == {"tiny-sd1": "sd1", "flux1-dev": "flux", "flux1-dev-aio": "flux", "flux1-schnell": "flux-schnell",
                        "flux1-schnell-aio": "flux-schnell", "flux1-fill-dev": "flux-fill",
                        "flux1-fill-dev-aio": "flux-fill"}


def test_unknown_checkpoint_is_sd1(data_dir: Path) -> None:
    from app.models.catalog.index import Catalog
    from app.paths import Paths

    ctx = SimpleNamespace(catalog=Catalog(Paths.from_data_dir(data_dir)), settings={}, runtime=None,
                          checkpoint_titles=lambda: [])
    assert FF.checkpoint_family(ctx, "no-such-model.safetensors") == "sd1"


def _visible(update: dict) -> bool:
    return bool(update["visible"])


@pytest.mark.parametrize(("family", "distilled", "shift", "slg"), [
    ("sd1", False, False, False), ("sdxl", False, False, False), ("zimage", False, True, False),
    ("flux", True, True, False), ("flux-schnell", False, True, False), ("flux-fill", True, True, False),
    ("sd3", False, True, True), ("some-new-family", True, True, True),
])
def test_which_fields_show(family: str, distilled: bool, shift: bool, slg: bool) -> None:
    d, s, _, row = FF.updates(family, [3.5, 7.0], switched=False)
    assert (_visible(d), _visible(s), _visible(row)) == (distilled, shift, slg)
    if family == "flux-fill":
        assert "default 30" in d["info"]


def test_defaults_follow_a_switch_but_user_values_stay() -> None:
    d, _, c, _ = FF.updates("flux-fill", [3.5, 7.0], switched=True)
    assert d["value"] == 30.0 and c["value"] == 1.0  # dev's guidance -> Fill's; SD's CFG -> FLUX's
    d, _, c, _ = FF.updates("flux", [30.0, 1.0], switched=True)
    assert d["value"] == 3.5 and "value" not in c
    d, _, c, _ = FF.updates("flux", [5.0, 4.0], switched=True)
    assert "value" not in d and "value" not in c  # chosen by the user: kept
    _, _, c, _ = FF.updates("sd1", [3.5, 1.0], switched=True)
    assert c["value"] == 7.0
    d, _, c, _ = FF.updates("flux-fill", [3.5, 7.0], switched=False)  # page load: guidance follows, CFG is kept
    assert d["value"] == 30.0 and "value" not in c


def test_table_agrees_with_the_families() -> None:
    from app.families import families

    for family in families():
        fields = FF.FIELDS.get(family.id)
        assert fields is not None, f"app.ui.family_fields.FIELDS lacks the family {family.id!r}"
        assert fields.cfg_scale == family.defaults.cfg_scale, family.id
        distilled = getattr(family, "default_guidance", None) if getattr(family, "distilled_guidance", False) else None
        assert fields.distilled_cfg == distilled, family.id
        assert fields.label == family.label, family.id
        assert fields.skip_layers == (family.id == "sd3"), family.id  # SD3Denoiser takes skip_layers
