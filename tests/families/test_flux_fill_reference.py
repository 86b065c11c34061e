"""FLUX.1 Fill (inpainting) on the same tiny files as diffusers' own ``FluxFillPipeline``: the app's whole img2img /
inpaint job (catalog, loader, Fill's 384-channel input: packed latents, masked-image latents and the 8x8 pixel mask
folded into channels; distilled guidance 30 by default; dynamic shift; Euler + Simple) against
``FluxFillPipeline.__call__`` on the very modules the app loaded, same seed and start noise.

Two things the pipeline does differently, so the comparison accounts for them:

- It encodes images by *sampling* the VAE posterior; the app (as A1111) takes its mean. The reference pipeline holds
  the same VAE weights in a subclass whose posterior is deterministic (its mean); everything else (masked image,
  mask binarising, 8x8 folding, packing) is the pipeline's own code. Its start noise is the app's (the seed's first
  ``randn``, given as ``latents``).
- A1111 / Forge / ComfyUI blend the noised original back outside the mask after every step (``FluxInpaintPipeline``
  does the same) and paste the original over the unmasked pixels at the end; ``FluxFillPipeline`` does neither. The
  reference adds the blend through ``callback_on_step_end`` (``FluxInpaintPipeline``'s formula), and the images are
  compared on the masked region; outside it the app's result is the original picture, pixel for pixel.

With no mask (plain img2img on a Fill model) the app masks the whole picture, as A1111 does for inpainting models:
then nothing is blended or pasted and the whole image equals ``FluxFillPipeline`` with an all-white mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.families.flux_nets import pack
from app.params import Img2ImgParams
from bench.app_side import AppBench

PROMPT = "a red fox in the snow"
SIZE = 64
SEED = 1234


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from app.devtools.tiny_flux import write_tiny_flux

    data = Path(tmp_path_factory.mktemp("flux-fill-ref"))
    write_tiny_flux(data, "fill")
    write_tiny_flux(data, "dev")  # for its kohya LoRA (dev LoRAs patch Fill's modules too, as in Forge and ComfyUI)
    bench = AppBench(data, {})
    yield bench
    bench.close()


def _ckpt(app, aio: bool = False) -> str:  # the Fill files (the dev ones are in the catalog too)
    return next(t for t in app.catalog.checkpoint_titles() if "flux1-fill-dev" in t and ("aio" in t) == aio)


def _init_image() -> Image.Image:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    rgb = np.stack([xx * 4, yy * 4, 255 - (xx + yy) * 2], axis=-1)
    rgb += np.random.default_rng(0).normal(0, 12, rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def _mask() -> Image.Image:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[16:48, 8:40] = 255  # aligned to 8-pixel blocks: every resize of it to the latent grid agrees
    return Image.fromarray(mask, "L")


def _app_job(app, steps: int, mask: Image.Image | None, aio: bool = False, **extra):
    params = app.params(_ckpt(app, aio), PROMPT, "", steps, SIZE, SIZE, 1.0, "Euler", SEED, 1)
    params.scheduler = "Simple"
    params.img2img = Img2ImgParams(init_images=[_init_image()], denoising_strength=1.0, mask=mask, mask_blur_x=0,
                                   mask_blur_y=0)
    for key, value in extra.items():
        setattr(params, key, value)
    return app.service.submit(params, kind="img2img").wait(600)


def _latents(pipe, image: Image.Image) -> torch.Tensor:
    """The VAE posterior's mean, shifted and scaled (what the app encodes), ``[1, 16, h, w]``."""
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        mean = pipe.vae.encode(x.to(pipe.vae.dtype)).latent_dist.mean.float()
    return (mean - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor


def _mean_encoding(vae):
    """The same VAE whose ``encode`` gives a deterministic posterior (its mean), so that the pipeline's sampling
    encode takes the mean as the app does (a subclass holding the same weights; nothing is patched)."""
    from diffusers import AutoencoderKL
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
    from diffusers.models.modeling_outputs import AutoencoderKLOutput

    class MeanEncodingVAE(AutoencoderKL):
        def encode(self, x, return_dict=True):
            dist = super().encode(x).latent_dist
            return AutoencoderKLOutput(latent_dist=DiagonalGaussianDistribution(dist.parameters, deterministic=True))

    twin = MeanEncodingVAE.from_config(vae.config)
    twin.load_state_dict(vae.state_dict())
    return twin.eval()  # fp32, as the loaded tiny VAE on the CPU


def _reference(app, steps: int, mask: Image.Image, guidance: float = 30.0, blend: bool = True) -> Image.Image:
    from diffusers import FluxFillPipeline

    loaded = app.manager.get(_ckpt(app)).loaded.pipe
    assert type(loaded).__name__ == "FluxFillPipeline"
    pipe = FluxFillPipeline(**{**loaded.components, "vae": _mean_encoding(loaded.vae)})
    pipe.set_progress_bar_config(disable=True)
    h = w = SIZE // 8
    image = _init_image()
    noise = pack(torch.randn((1, 16, h, w), generator=torch.Generator("cpu").manual_seed(SEED)))
    init = pack(_latents(pipe, image))
    m = torch.from_numpy(np.asarray(mask, dtype=np.float32) / 255.0)[None, None]
    keep = pack((1 - torch.nn.functional.interpolate(m, size=(h, w))).expand(1, 16, h, w))

    def blend_outside(p, i, t, kwargs):  # FluxInpaintPipeline's per-step blend
        sigma = p.scheduler.sigmas[i + 1]
        proper = sigma * noise + (1 - sigma) * init
        return {"latents": (keep * proper + (1 - keep) * kwargs["latents"]).to(kwargs["latents"].dtype)}

    out = pipe(prompt=PROMPT, image=image, mask_image=mask, height=SIZE, width=SIZE, num_inference_steps=steps,
               guidance_scale=guidance, latents=noise.to(pipe.transformer.dtype), max_sequence_length=256,
               strength=1.0, callback_on_step_end=blend_outside if blend else None)
    return out.images[0]


def _masked_diff(a: Image.Image, b: Image.Image, mask: Image.Image) -> int:
    sel = np.asarray(mask) > 0
    d = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
    return int(d[sel].max())


@pytest.mark.parametrize("steps", [4, 12])
def test_inpaint_matches_flux_fill_pipeline_on_the_masked_region(app, steps):
    mask = _mask()
    result = _app_job(app, steps, mask)
    ours = result.images[0]
    theirs = _reference(app, steps, mask)
    assert ours.size == theirs.size == (SIZE, SIZE)
    assert np.asarray(ours)[np.asarray(mask) > 0].std() > 1  # a real image in the hole, not a constant
    assert _masked_diff(ours, theirs, mask) <= 2
    outside = np.asarray(mask) == 0
    assert (np.asarray(ours)[outside] == np.asarray(_init_image())[outside]).all()  # A1111's overlay: the original
    info = result.infotexts[0]
    assert "Distilled CFG Scale: 30.0" in info and "Denoising strength: 1.0" in info


def test_distilled_cfg_scale_reaches_fill(app):
    mask = _mask()
    ours = _app_job(app, 4, mask, distilled_cfg_scale=10.0)
    assert _masked_diff(ours.images[0], _reference(app, 4, mask, guidance=10.0), mask) <= 2
    assert "Distilled CFG Scale: 10.0" in ours.infotexts[0]
    assert _masked_diff(ours.images[0], _app_job(app, 4, mask).images[0], mask) > 2


def test_plain_img2img_masks_the_whole_picture(app):
    full = Image.new("L", (SIZE, SIZE), 255)
    ours = _app_job(app, 6, None).images[0]
    theirs = _reference(app, 6, full, blend=False)
    assert _masked_diff(ours, theirs, full) <= 2


def test_all_in_one_file_equals_split_files(app):
    mask = _mask()
    split = _app_job(app, 4, mask).images[0]
    whole = _app_job(app, 4, mask, aio=True).images[0]
    assert whole.tobytes() == split.tobytes()
    loaded = app.manager.get(_ckpt(app, aio=True)).loaded
    assert loaded.family == "flux-fill" and loaded.is_inpainting and loaded.extra["all_in_one"]


def test_txt2img_on_fill_masks_the_whole_picture(app):
    # A1111's txt2img on an inpainting model: everything masked, a grey masked image (no init image matters)
    params = app.params(_ckpt(app), PROMPT, "", 6, SIZE, SIZE, 1.0, "Euler", SEED, 1)
    params.scheduler = "Simple"
    result = app.run(params)
    full = Image.new("L", (SIZE, SIZE), 255)
    assert _masked_diff(result.images[0], _reference(app, 6, full, blend=False), full) <= 2
    assert "Distilled CFG Scale: 30.0" in result.infotexts[0]


def test_a_flux_dev_lora_applies_to_fill_and_is_restored(app):
    from safetensors.torch import load_file

    from app.models.lora.apply import apply_networks, restore_networks
    from app.models.lora.network import network_from_state_dict

    pipe = app.manager.get(_ckpt(app)).loaded.pipe
    before = {k: v.detach().clone() for k, v in pipe.transformer.state_dict().items()}
    lora = load_file(str(app.paths.models_dir / "Lora" / "tiny-flux-lora.safetensors"))
    result = apply_networks(pipe, [(network_from_state_dict(lora, "tiny-flux-lora"), 0.8, 0.8)])
    assert result.applied and not result.refused  # a dev LoRA patches Fill's modules (same names and shapes)
    changed = [k for k, v in pipe.transformer.state_dict().items() if not torch.equal(v, before[k])]
    assert any("single_transformer_blocks.0.attn.to_q" in k for k in changed)
    restore_networks(pipe)
    assert all(torch.equal(v, before[k]) for k, v in pipe.transformer.state_dict().items())
