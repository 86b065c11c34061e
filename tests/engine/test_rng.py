"""Seeds and noise (spec §6.3): seed rules, per-image generators, variation seed, resize seed, NV, img2img steps."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from app.engine.rng import (
    ImageRNG,
    PhiloxGenerator,
    all_seeds,
    generators_for,
    img2img_schedule,
    img2img_steps,
    make_noise,
    resolve_seed,
    slerp,
)

SHAPE = (4, 8, 8)


def cpu_randn(seed: int, shape, draws: int = 1) -> torch.Tensor:
    g = torch.Generator("cpu").manual_seed(seed)
    for _ in range(draws - 1):
        torch.randn(shape, generator=g)
    return torch.randn(shape, generator=g)


# ---------------------------------------------------------------- seeds
@pytest.mark.parametrize("value", [-1, None, "", "abc", "-1", float("nan"), [1], True])
def test_resolve_seed_random(value):
    seed = resolve_seed(value, random.Random(3))
    assert 0 <= seed < 4294967294
    assert seed == random.Random(3).randrange(4294967294)


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (42, 42), ("42", 42), (" 7 ", 7), (12.0, 12), ("5.0", 5)])
def test_resolve_seed_fixed(value, expected):
    assert resolve_seed(value) == expected


def test_random_seeds_differ():
    assert len({resolve_seed(-1) for _ in range(5)}) > 1


@pytest.mark.parametrize(
    ("seed", "subseed", "strength", "n", "seeds", "subseeds"),
    [
        (10, 20, 0.0, 3, [10, 11, 12], [20, 21, 22]),
        (10, 20, 0.5, 3, [10, 10, 10], [20, 21, 22]),
        (5, 0, 0.0, 1, [5], [0]),
        ([3, 9], [1, 2], 0.0, 2, [3, 9], [1, 2]),
    ],
)
def test_all_seeds(seed, subseed, strength, n, seeds, subseeds):
    assert all_seeds(seed, subseed, strength, n) == (seeds, subseeds)


def test_all_seeds_resolves_random_once():
    seeds, subseeds = all_seeds(-1, -1, 0.0, 4, random.Random(1))
    assert seeds == [seeds[0] + i for i in range(4)]
    assert subseeds == [subseeds[0] + i for i in range(4)]


# ---------------------------------------------------------------- initial noise
def test_cpu_noise_is_torch_randn_of_the_seed():
    noise = make_noise([1234], shape_chw=SHAPE)
    assert noise.shape == (1, *SHAPE) and noise.dtype == torch.float32
    assert torch.equal(noise[0], cpu_randn(1234, SHAPE))
    # the same as the diffusers pipeline's randn_tensor with a seeded CPU generator
    from diffusers.utils.torch_utils import randn_tensor

    assert torch.equal(noise, randn_tensor((1, *SHAPE), generator=torch.Generator("cpu").manual_seed(1234)))


def test_noise_is_deterministic():
    assert torch.equal(make_noise([7, 8], shape_chw=SHAPE), make_noise([7, 8], shape_chw=SHAPE))
    assert not torch.equal(make_noise([7], shape_chw=SHAPE), make_noise([8], shape_chw=SHAPE))


def test_batch_image_equals_single_image():
    batch = make_noise([100, 101, 102], [5, 6, 7], 0.3, SHAPE)
    single = make_noise([101], [6], 0.3, SHAPE)
    assert torch.equal(batch[1], single[0])


def test_gpu_source_on_cpu_equals_cpu():
    assert torch.equal(make_noise([9], shape_chw=SHAPE, source="GPU"), make_noise([9], shape_chw=SHAPE, source="CPU"))


def test_bad_source_rejected():
    with pytest.raises(ValueError, match="randn source"):
        make_noise([1], shape_chw=SHAPE, source="TPU")


# ---------------------------------------------------------------- variation seed
def test_variation_strength_zero_is_pure_seed():
    assert torch.equal(make_noise([11], [99], 0.0, SHAPE)[0], cpu_randn(11, SHAPE))


def test_variation_strength_one_is_pure_subseed():
    noise = make_noise([11], [99], 1.0, SHAPE)[0]
    assert torch.allclose(noise, cpu_randn(99, SHAPE), atol=1e-5)


def test_variation_half_is_a_slerp_between_both():
    a, b = cpu_randn(11, SHAPE), cpu_randn(99, SHAPE)
    noise = make_noise([11], [99], 0.5, SHAPE)[0]
    assert torch.allclose(noise, slerp(0.5, a, b))
    assert not torch.allclose(noise, (a + b) / 2, atol=1e-3)  # spherical, not linear


def test_slerp_norm_axis_is_dim1():
    """The norms are taken along dim 1 (H) of (C,H,W): columns are interpolated independently."""
    a, b = cpu_randn(1, SHAPE), cpu_randn(2, SHAPE)
    out = slerp(0.3, a, b)
    col = slerp(0.3, a[:, :, 2:3], b[:, :, 2:3])
    assert torch.allclose(out[:, :, 2:3], col, atol=1e-6)


def test_slerp_parallel_fallback_quirk():
    """Near-parallel inputs: A1111 returns low*val + high*(1-val) (the inverted weighting)."""
    low = torch.rand(SHAPE) + 0.5
    high = 2 * low
    out = slerp(0.25, low, high)
    assert torch.allclose(out, 0.25 * low + 0.75 * high)
    assert torch.allclose(out, 1.75 * low)


# ---------------------------------------------------------------- resize seed from
def test_resize_seed_smaller_is_pasted_centered():
    noise = make_noise([5], shape_chw=SHAPE, seed_resize_from=(32, 32))[0]  # 4x4 latent
    full, small = cpu_randn(5, SHAPE), cpu_randn(5, (4, 4, 4))
    expected = full.clone()
    expected[:, 2:6, 2:6] = small
    assert torch.equal(noise, expected)


def test_resize_seed_larger_is_center_cropped():
    noise = make_noise([5], shape_chw=SHAPE, seed_resize_from=(128, 96))[0]  # 4x12x16 latent
    big = cpu_randn(5, (4, 12, 16))
    assert torch.equal(noise, big[:, 2:10, 4:12])


def test_resize_seed_mixed_axes():
    noise = make_noise([5], shape_chw=SHAPE, seed_resize_from=(128, 32))[0]  # h 4 (paste), w 16 (crop)
    full, small = cpu_randn(5, SHAPE), cpu_randn(5, (4, 4, 16))
    expected = full.clone()
    expected[:, 2:6, :] = small[:, :, 4:12]
    assert torch.equal(noise, expected)


def test_resize_seed_with_variation():
    noise = make_noise([5], [6], 1.0, SHAPE, seed_resize_from=(32, 32))[0]
    assert torch.allclose(noise[:, 2:6, 2:6], cpu_randn(6, (4, 4, 4)), atol=1e-5)
    assert torch.equal(noise[:, 0], cpu_randn(5, SHAPE)[:, 0])


# ---------------------------------------------------------------- per-step noise and ENSD
def test_next_without_ensd_continues_the_seed_generator():
    rng = ImageRNG(SHAPE, [3, 4])
    first, second = rng.next(), rng.next()
    assert torch.equal(first[1], cpu_randn(4, SHAPE))
    assert torch.equal(second[1], cpu_randn(4, SHAPE, draws=2))


def test_ensd_reseeds_after_the_initial_noise():
    rng = ImageRNG(SHAPE, [3, 4], ensd=31337)
    first, second, third = rng.next(), rng.next(), rng.next()
    assert torch.equal(first[0], cpu_randn(3, SHAPE))
    assert torch.equal(second[0], cpu_randn(3 + 31337, SHAPE))
    assert torch.equal(third[1], cpu_randn(4 + 31337, SHAPE, draws=2))


def test_step_noise_batch_equals_single():
    batch, single = ImageRNG(SHAPE, [10, 11, 12], ensd=5), ImageRNG(SHAPE, [11], ensd=5)
    for _ in range(3):
        assert torch.equal(batch.next()[1], single.next()[0])


def test_randn_like_checks_shape():
    rng = ImageRNG(SHAPE, [1, 2])
    assert rng.randn_like(torch.zeros(2, *SHAPE, dtype=torch.float16)).dtype == torch.float16
    with pytest.raises(ValueError, match="expected shape"):
        rng.randn_like(torch.zeros(3, *SHAPE))


def test_generators_for_seed_plus_ensd():
    gens = generators_for([7, 8], ensd=100)
    assert torch.equal(torch.randn(SHAPE, generator=gens[1]), cpu_randn(108, SHAPE))


def test_scheduler_generator_list_gives_per_image_noise():
    """EulerAncestral.step with a list of per-image generators: image 1 of a batch == single image."""
    from diffusers import EulerAncestralDiscreteScheduler

    cfg = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)

    def run(seeds):
        sch = EulerAncestralDiscreteScheduler(**cfg)
        sch.set_timesteps(3)
        rng = ImageRNG(SHAPE, seeds, ensd=0)
        lat = rng.first() * sch.init_noise_sigma
        gens = rng.torch_generators()
        for t in sch.timesteps:
            eps = 0.1 * sch.scale_model_input(lat, t)
            lat = sch.step(eps, t, lat, generator=gens, return_dict=False)[0]
        return lat

    assert torch.allclose(run([20, 21, 22])[1], run([21])[0], atol=1e-6)


# ---------------------------------------------------------------- NV source
NV_SEED0_3x4 = [
    [-0.92466259, -0.42534415, -2.6438457, 0.14518388],
    [-0.12086647, -0.57972564, -0.62285122, -0.32838709],
    [-1.07454231, -0.36314407, -1.67105067, 2.26550497],
]


def test_philox_vector():
    out = PhiloxGenerator(0).randn((3, 4))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, NV_SEED0_3x4, atol=1e-6)


def test_philox_offsets_and_seeds():
    g = PhiloxGenerator(0)
    a, b = g.randn((3, 4)), g.randn((3, 4))
    assert not np.allclose(a, b)  # each call uses a new offset
    assert not np.allclose(a, PhiloxGenerator(1).randn((3, 4)))
    big = PhiloxGenerator(123).randn((4, 32, 32))
    assert abs(float(big.mean())) < 0.05 and abs(float(big.std()) - 1) < 0.05


def test_nv_source_noise():
    noise = make_noise([0], shape_chw=(1, 3, 4), source="NV")
    np.testing.assert_allclose(noise[0, 0].numpy(), NV_SEED0_3x4, atol=1e-6)
    rng = ImageRNG((1, 3, 4), [0], source="NV")
    rng.next()
    np.testing.assert_array_equal(
        rng.next()[0].numpy(), (lambda g: (g.randn((1, 3, 4)), g.randn((1, 3, 4)))[1])(PhiloxGenerator(0))
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nv_matches_cuda_randn_and_gpu_source_uses_cuda():
    cuda = torch.device("cuda")
    expected = torch.randn((4, 8, 8), generator=torch.Generator(cuda).manual_seed(1234), device=cuda)
    np.testing.assert_allclose(PhiloxGenerator(1234).randn((4, 8, 8)), expected.cpu().numpy(), atol=1e-5)
    gpu = make_noise([1234], shape_chw=(4, 8, 8), source="GPU", device=cuda)
    assert gpu.device.type == "cuda" and torch.equal(gpu[0], expected)


# ---------------------------------------------------------------- img2img steps
@pytest.mark.parametrize(
    ("steps", "denoise", "fix", "run"),
    [(20, 0.75, False, 16), (20, 1.0, False, 20), (20, 0.5, False, 11), (30, 0.3, False, 10), (20, 0.75, True, 20)],
)
def test_img2img_steps(steps, denoise, fix, run):
    assert img2img_steps(steps, denoise, fix) == run


@pytest.mark.parametrize(
    ("steps", "denoise", "fix", "expected"),
    [
        (20, 0.75, False, (20, 15, 16, 4)),
        (20, 1.0, False, (20, 19, 20, 0)),
        (20, 0.75, True, (26, 19, 20, 6)),
        (10, 0.5, True, (20, 9, 10, 10)),
        (20, 0.0, False, (20, 0, 1, 19)),
    ],
)
def test_img2img_schedule(steps, denoise, fix, expected):
    assert tuple(img2img_schedule(steps, denoise, fix)) == expected


@pytest.mark.parametrize(("steps", "denoise"), [(0, 0.5), (20, 1.5), (20, -0.1)])
def test_img2img_bad_input(steps, denoise):
    with pytest.raises(ValueError):
        img2img_schedule(steps, denoise)
