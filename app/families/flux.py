"""FLUX.1 (Black Forest Labs) dev, schnell and Fill: a double/single-stream diffusion transformer on the FLUX VAE's 16
latent channels, packed 2x2 into 64-channel tokens, with CLIP-L (pooled vector) and T5-XXL (token states) text
encoders, trained with flow matching.

- dev is guidance-distilled: the network takes the guidance strength as an input ("Distilled CFG Scale", Forge's
  name, default 3.5, request field ``distilled_cfg_scale``, infotext ``Distilled CFG Scale``) and real CFG stays 1
  (one network pass per step; a CFG above 1 runs the negative prompt too, as Forge does). Its shift depends on the
  resolution: ``exp(mu)`` with ``mu`` linear in the number of image tokens (0.5 at 256, 1.15 at 4096), unless the
  job sets one. schnell is timestep-distilled: 4 steps, shift 1, no guidance input.
- Prompt: T5 carries the prompt (``app.prompts.t5_encode``: A1111 weights multiply T5's hidden states, mean restored,
  as Forge does), CLIP-L gives the pooled vector of the plain text (weights do not apply to a pooled vector).
- FLUX.1 Fill (``flux-fill``) is dev with an inpainting input: ``img_in`` takes 384 values per token, the packed
  latents, masked-image latents and the 8x8 pixel mask folded into 64 channels (:meth:`FluxFamily.inpaint_channels`);
  the engine's inpainting path feeds them like SD's 9-channel UNets. Its Distilled CFG Scale defaults to 30.
- Network: :class:`FluxDenoiser` gives ``FluxTransformer2DModel`` the UNet call signature of our loop: it packs
  ``[B, 16, h, w]`` latents into ``[B, h/2 * w/2, 64]`` tokens with their (0, row, column) position ids, passes
  ``timestep / 1000`` and the pooled CLIP vector, and unpacks the velocity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from app.families.base import Family, FamilyDefaults, LatentFormat
from app.families.zimage import _FLUX_RGB, _FLUX_RGB_BIAS

if TYPE_CHECKING:
    import torch

DEFAULT_DISTILLED_CFG = 3.5
INFOTEXT_KEY = "Distilled CFG Scale"


def dynamic_shift(config: dict[str, Any], width: int, height: int) -> float:
    """FLUX dev's resolution-dependent shift ``exp(mu)``, ``mu`` linear in the image tokens ``(H/16)(W/16)``
    between (``base_image_seq_len``, ``base_shift``) and (``max_image_seq_len``, ``max_shift``) — diffusers'
    ``calculate_shift``; its exponential time shift is the constant shift ``exp(mu)``."""
    tokens = (int(height) // 16) * (int(width) // 16)
    lo, hi = float(config.get("base_image_seq_len", 256)), float(config.get("max_image_seq_len", 4096))
    b0, b1 = float(config.get("base_shift", 0.5)), float(config.get("max_shift", 1.15))
    mu = b0 + (b1 - b0) * (tokens - lo) / (hi - lo)
    return math.exp(mu)


@dataclass(frozen=True)
class FluxFamily(Family):
    #: whether the network takes a distilled guidance input (dev) or not (schnell)
    distilled_guidance: bool = True
    #: the Distilled CFG Scale of a job that sets none (dev 3.5; Fill 30, as ``FluxFillPipeline``)
    default_guidance: float = DEFAULT_DISTILLED_CFG
    flow_matching: bool = True

    @property
    def distilled_cfg(self) -> float | None:
        return self.default_guidance if self.distilled_guidance else None

    def denoiser(self, pipe: Any) -> Any:
        cached = getattr(pipe, "_atelier_denoiser", None)
        if cached is None or cached.transformer is not pipe.transformer:
            from app.families.flux_nets import FluxDenoiser  # torch: built in the worker only

            cached = FluxDenoiser(pipe.transformer, DEFAULT_DISTILLED_CFG)
            object.__setattr__(pipe, "_atelier_denoiser", cached)
        return cached

    def job_denoiser(self, plan: Any) -> Any:
        """The denoiser with the job's Distilled CFG Scale (dev), recorded in the infotext."""
        base = self.denoiser(plan.pipe)
        if not self.distilled_guidance or not base.transformer.config.guidance_embeds:
            return base
        value = getattr(plan.params, "distilled_cfg_scale", None)
        guidance = self.default_guidance if value is None else float(value)
        plan.extra[INFOTEXT_KEY] = guidance
        return base.with_guidance(guidance)

    def inpaint_channels(self, pixel_mask: torch.Tensor, masked_latents: torch.Tensor) -> torch.Tensor:
        """FLUX.1 Fill's extra input (before 2x2 packing): the 16 masked-image latent channels, then the 64 channels of
        the folded 8x8 pixel mask; packed with the latents this is ``img_in``'s 64 + 64 + 256 = 384 values per token,
        the order of ``FluxFillPipeline`` (latents, masked-image latents, mask)."""
        from app.families.flux_nets import fill_channels  # torch: built in the worker only

        return fill_channels(pixel_mask, masked_latents, self.latent.downscale)

    def prompt_encoder(self, pipe: Any, loaded_id: str, embeddings: Any, **options: Any) -> Any:
        from app.families.flux_nets import FluxPromptEncoder

        return FluxPromptEncoder(pipe.text_encoder, pipe.tokenizer, pipe.text_encoder_2, pipe.tokenizer_2,
                                 compute_device=options.get("compute_device"))

    def job_shift(self, scheduler_config: dict[str, Any], width: int, height: int) -> float | None:
        """The shift of a job that sets none: dev's resolution-dependent one; None = the config's constant."""
        if scheduler_config.get("use_dynamic_shifting"):
            return dynamic_shift(scheduler_config, width, height)
        return None


_FILES = ("the diffusion model in models/diffusion_models (e.g. {name}), the text encoders clip_l.safetensors and "
          "t5xxl_fp16.safetensors in models/text_encoders and the FLUX VAE ae.safetensors in models/VAE; or one "
          "all-in-one checkpoint in models/Stable-diffusion")
FLUX_DEV = FluxFamily(
    id="flux",
    label="FLUX.1 dev",
    latent=LatentFormat(16, 8, 16, _FLUX_RGB, _FLUX_RGB_BIAS),
    defaults=FamilyDefaults(steps=20, cfg_scale=1.0, sampler="Euler", schedule="Simple", width=1024, height=1024,
                            shift=None, size_step=16, megapixels=1.0),
    loaded_ids=("flux",),
    textual_inversion=False,
    seamless_tiling=False,
    offload_text_encoder=True,
    half_dtype="bfloat16",
    files=_FILES.format(name="flux1-dev.safetensors"),
)
FLUX_SCHNELL = FluxFamily(
    id="flux-schnell",
    label="FLUX.1 schnell",
    latent=LatentFormat(16, 8, 16, _FLUX_RGB, _FLUX_RGB_BIAS),
    defaults=FamilyDefaults(steps=4, cfg_scale=1.0, sampler="Euler", schedule="Simple", width=1024, height=1024,
                            shift=1.0, size_step=16, megapixels=1.0),
    loaded_ids=("flux-schnell",),
    textual_inversion=False,
    seamless_tiling=False,
    offload_text_encoder=True,
    half_dtype="bfloat16",
    distilled_guidance=False,
    files=_FILES.format(name="flux1-schnell.safetensors"),
)
FILL_DISTILLED_CFG = 30.0
#: dev with the inpainting input: the same defaults and memory policy, its own guidance default
FLUX_FILL = replace(FLUX_DEV, id="flux-fill", label="FLUX.1 Fill", loaded_ids=("flux-fill",),
                    default_guidance=FILL_DISTILLED_CFG, files=_FILES.format(name="flux1-fill-dev.safetensors"))
FAMILIES = (FLUX_DEV, FLUX_SCHNELL, FLUX_FILL)
