"""A GGUF SD3.5 diffusion model (city96's layout: Stability's key names, quantized linears) loads through the catalog,
keeps its linears quantized (``GGUFLinear``) and gives nearly the image of the bf16 file it was quantized from (same
seed; the text encoders and VAE come from the folders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.app_side import AppBench


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from app.devtools.tiny_sd3 import write_tiny_sd3, write_tiny_sd3_gguf

    data = Path(tmp_path_factory.mktemp("sd3-gguf"))
    write_tiny_sd3(data)
    write_tiny_sd3_gguf(data, "Q8_0")
    bench = AppBench(data, {})
    bench.test_data = data
    yield bench
    bench.close()


def _title(app, name: str) -> str:
    return next(t for t in app.catalog.checkpoint_titles() if t.startswith(name))


def _run(app, name: str):
    params = app.params(_title(app, name), "a red fox in the snow", "blurry", 6, 64, 64, 4.5, "Euler", 1234, 1)
    params.scheduler = "Simple"
    return app.run(params)


def test_gguf_q8_is_detected_listed_and_kept_quantized(app):
    from diffusers.quantizers.gguf.utils import GGUFLinear

    from app.models.load.detect import detect_file_role

    path = next(Path(app.test_data).rglob("sd3.5_medium-Q8_0.gguf"))
    role = detect_file_role(path)
    assert (role.family, role.role, role.detail["gguf_quant"]) == ("sd3", "diffusion_model", "Q8_0")
    result = _run(app, "sd3.5_medium-Q8_0")
    loaded = app.manager.get(_title(app, "sd3.5_medium-Q8_0")).loaded
    linears = [m for m in loaded.pipe.transformer.modules() if isinstance(m, GGUFLinear)]
    assert len(linears) > 20 and loaded.extra["stored_dtypes"]["diffusion_model"][0] == "gguf:Q8_0"
    assert loaded.extra["variant"] == "sd3.5-medium"
    bf16 = _run(app, "sd3.5_medium.")
    ours, theirs = (np.asarray(r.images[0], dtype=np.int16) for r in (result, bf16))
    assert ours.std() > 1
    assert np.abs(ours - theirs).max() <= 6  # Q8_0 rounding only: the same image within a few levels
