"""Z-Image (Tongyi Lab; Z-Image Turbo): a single-stream diffusion transformer with a Qwen3 text encoder and the
FLUX VAE (16 latent channels), trained with flow matching.

- Files as users have them (ComfyUI's split layout): the diffusion model in ``models/diffusion_models``, the
  Qwen3-4B text encoder in ``models/text_encoders`` and the FLUX VAE (``ae.safetensors``) in ``models/VAE``.
- Prompt: the A1111 syntax still parses (prompt editing, ``AND`` and ``BREAK`` schedule or split the text
  before it reaches the encoder), but an LLM encoder has no meaningful per-token weighting, so ``(word:1.3)``
  weights are removed from the text and the infotext says so (``Prompt weights: ignored``). Each prompt is
  wrapped in the Qwen3 chat template the model was trained with (a user turn, generation prompt, thinking
  enabled, as diffusers' ``ZImagePipeline`` does) and the second-to-last hidden state of the real
  (unpadded) tokens is the conditioning, one ``[L, D]`` tensor per prompt (no padding: the transformer takes
  captions of different lengths).
- Network: ``ZImageTransformer2DModel`` takes lists (one ``[C, 1, H, W]`` latent and one caption per image)
  and a timestep ``1 - sigma``; :class:`ZImageDenoiser` gives it the UNet call signature of our loop. The
  output sign and the timestep mapping belong to the flow model sampling (``atelier_flow_timestep`` =
  ``"1-sigma"`` in the model's scheduler config).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.families.base import Family, FamilyDefaults, LatentFormat
from app.prompts.plain import plain_text

__all__ = ["WEIGHTS_IGNORED", "ZIMAGE", "ZImageFamily", "plain_text"]

#: Linear latent -> RGB factors of the FLUX VAE's 16 channels (public values used by several UIs for previews)
_FLUX_RGB = (
    (-0.0346, 0.0244, 0.0681),
    (0.0034, 0.0210, 0.0687),
    (0.0275, -0.0668, -0.0433),
    (-0.0174, 0.0160, 0.0617),
    (0.0859, 0.0721, 0.0329),
    (0.0004, 0.0383, 0.0115),
    (0.0405, 0.0861, 0.0915),
    (-0.0236, -0.0185, -0.0259),
    (-0.0245, 0.0250, 0.1180),
    (0.1008, 0.0755, -0.0421),
    (-0.0515, 0.0201, 0.0011),
    (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749),
    (-0.1264, -0.0522, -0.1103),
    (-0.0280, -0.0881, -0.0499),
    (-0.1262, -0.0982, -0.0778),
)
_FLUX_RGB_BIAS = (-0.0329, -0.0718, -0.0851)

WEIGHTS_IGNORED = "Prompt weights"


@dataclass(frozen=True)
class ZImageFamily(Family):
    flow_matching: bool = True

    def denoiser(self, pipe: Any) -> Any:
        cached = getattr(pipe, "_atelier_denoiser", None)
        if cached is None or cached.transformer is not pipe.transformer:
            from app.families.zimage_nets import ZImageDenoiser  # torch: built in the worker only

            cached = ZImageDenoiser(pipe.transformer)
            object.__setattr__(pipe, "_atelier_denoiser", cached)
        return cached

    def prompt_encoder(self, pipe: Any, loaded_id: str, embeddings: Any, **options: Any) -> Any:
        from app.families.zimage_nets import ChatPromptEncoder

        return ChatPromptEncoder(pipe.text_encoder, pipe.tokenizer, compute_device=options.get("compute_device"))


ZIMAGE = ZImageFamily(
    id="zimage",
    label="Z-Image",
    latent=LatentFormat(16, 8, 16, _FLUX_RGB, _FLUX_RGB_BIAS),
    defaults=FamilyDefaults(steps=8, cfg_scale=1.0, sampler="Euler", schedule="Simple", width=1024, height=1024,
                            shift=3.0, size_step=16, megapixels=1.0),
    loaded_ids=("zimage",),
    prompt_weights=False,
    textual_inversion=False,
    seamless_tiling=False,
    offload_text_encoder=True,
    half_dtype="bfloat16",
    files="the diffusion model in models/diffusion_models (e.g. z_image_turbo_bf16.safetensors), the Qwen3-4B text "
    "encoder in models/text_encoders (qwen_3_4b.safetensors) and the FLUX VAE in models/VAE (ae.safetensors)",
)
