"""The sampling core wired into a job: a Plan whose model is a flow model gets the flow model sampling with the
job's shift (request field, else setting flow_shift, else the model's), and "Unconditional first steps" on the
tiny SD1 model (a conditioning schedule entry for the empty prompt)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from app.engine.denoise import StepConds
from app.engine.plan import EffectiveSettings, Plan
from app.engine.sampling import setup
from app.engine.sampling.model_sampling import FlowModelSampling
from app.engine.sampling.schedulers import resolve_sampler
from app.params import GenerationParams, SeedParams
from app.settings import Settings
from tests.engine.test_flow_sampling import MU, TAU, ZIMAGE, GaussianFlowNet


class _Net(GaussianFlowNet):
    device = torch.device("cpu")
    config = SimpleNamespace(out_channels=4)


def _flow_plan(shift: float | None = None, overrides: dict | None = None, sampler: str = "Euler",
               schedule: str = "Simple") -> Plan:
    net = _Net()
    loaded = SimpleNamespace(prediction_type="flow", scheduler_config=dict(ZIMAGE), pipe=SimpleNamespace(unet=net),
                             is_sdxl=False)
    info, sch = resolve_sampler(sampler, schedule)
    return Plan(
        params=GenerationParams(steps=8, cfg_scale=1.0, shift=shift, seed=SeedParams(seed=1)),
        settings=EffectiveSettings(Settings(None), overrides), ctx=None,
        model=SimpleNamespace(loaded=loaded, offload="none"), encoder=None, sampler=info, schedule=sch,  # type: ignore[arg-type]
        clip_skip=1, emphasis="Original", seeds=[1], subseeds=[1], all_prompts=[""], all_negative_prompts=[""],
    )


@pytest.mark.parametrize(("shift", "overrides", "expected"), [
    (None, None, 3.0), (5.0, None, 5.0), (None, {"flow_shift": 2.0}, 2.0), (6.0, {"flow_shift": 2.0}, 6.0),
    (0.0, {"flow_shift": 0}, 3.0),
])
def test_plan_gets_flow_model_sampling_with_the_job_shift(shift, overrides, expected):
    plan = _flow_plan(shift, overrides)
    sampling = setup.plan_model_sampling(plan)
    assert isinstance(sampling, FlowModelSampling) and sampling.shift == expected
    assert plan.extra["Shift"] == expected  # infotext, flow models only


def test_sd_plan_has_no_model_sampling_and_no_shift_infotext():
    plan = _flow_plan()
    plan.model.loaded.prediction_type = "epsilon"
    assert setup.plan_model_sampling(plan) is None and "Shift" not in plan.extra


@pytest.mark.parametrize("sampler", ["Euler", "res_multistep", "DPM++ 2M", "Euler a"])
def test_run_sampler_drives_a_flow_network(sampler):
    """build_scheduler / steps_info / run_sampler of the job: the network gets flow inputs and 1 - s timesteps,
    and the result has the data's statistics."""
    plan = _flow_plan(sampler=sampler)
    noise = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    scheduler = setup.build_scheduler(plan, [1, 2])
    conds = StepConds.simple(torch.zeros(2, 3, 8), torch.zeros(2, 3, 8))
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    result = setup.run_sampler(plan, scheduler, noise, conds, setup.steps_info(plan, 30), gens)
    net = plan.pipe.unet
    ts = [t for _, t in net.calls]
    assert ts[0] == pytest.approx(1 / 4097, rel=1e-3) and all(0 < t < 1 for t in ts)  # t = 1 - s, s from ~1 down
    assert abs(result.latents.mean().item() - MU) < 0.06
    assert abs(result.latents.std().item() / (TAU * noise.std().item()) - 1) < 0.15


# -------------------------------------------------------------------------------- unconditional first steps (SD1)
@pytest.fixture(scope="module")
def env(tiny_data_dir):
    from app.models.catalog.index import Catalog
    from app.models.embeddings import EmbeddingDatabase
    from app.models.manager import ModelManager
    from app.paths import Paths

    paths = Paths.from_data_dir(tiny_data_dir)
    settings = Settings(None)
    manager = ModelManager(Catalog(paths), settings, None, embeddings=EmbeddingDatabase(paths.embeddings_dirs), paths=paths)
    return manager, settings


def _gen(env, **kw):
    from app.engine.modes.txt2img import run_txt2img

    manager, settings = env
    base = dict(prompt="a photo of a cat", negative_prompt="blurry", steps=4, width=64, height=64, cfg_scale=7.0,
                sampler_name="Euler", checkpoint="tiny-sd1", save_images=False, save_grid=False)
    base.update(kw)
    return run_txt2img(manager, GenerationParams(seed=SeedParams(seed=99), **base), settings)


@pytest.mark.slow
@pytest.mark.parametrize(("sampler", "edit_end"), [("Euler", 1), ("Heun", 3)])
def test_unconditional_first_steps_is_an_empty_prompt_schedule(env, sampler, edit_end):
    """N unconditional steps == the prompt edit [:prompt:k] that ends the empty prompt after N sampler steps
    (k counts model evaluations for second-order samplers, as A1111's prompt schedules do)."""
    ours = _gen(env, unconditional_first_steps=2, sampler_name=sampler)
    edited = _gen(env, prompt=f"[:a photo of a cat:{edit_end}]", sampler_name=sampler)
    plain = _gen(env, sampler_name=sampler)
    a, b, c = (np.asarray(r.images[0], dtype=np.int16) for r in (ours, edited, plain))
    assert np.abs(a - b).max() <= 2  # the empty prompt encoded alone vs in a batch: float rounding only
    assert not np.array_equal(a, c)
    assert "Unconditional first steps: 2" in ours.infotexts[0]
    assert "Unconditional first steps" not in plain.infotexts[0] and "Shift:" not in plain.infotexts[0]
