"""Stable Diffusion 3.5 (large, medium; SD3 medium loads too): an MMDiT on SD3's 16-channel VAE latents, patched
2x2 inside the transformer, with CLIP-L, CLIP-G and T5-XXL text encoders, trained with flow matching.

- Guidance: real classifier-free guidance (default CFG 4.5 as ComfyUI's and Forge's SD3.5 workflows; the negative
  prompt is active), constant flow shift 3.0 (the Shift field / ``shift`` / ``flow_shift`` override it).
- Prompt (``SD3PromptEncoder``, diffusers' ``StableDiffusion3Pipeline.encode_prompt`` with A1111 weights): CLIP-L and
  CLIP-G run as on SDXL (75-token chunks, A1111 emphasis, ``hidden_states[-2]`` without the final norm) and their
  features are concatenated on channels (768 + 1280), zero-padded to T5's width (4096) and followed by T5's tokens
  (``app.prompts.t5_encode``: Forge-style emphasis, 256 tokens, 512 for longer prompts; without a T5 file, 256 zero
  tokens as ``StableDiffusion3Pipeline`` does, and a job warning). The pooled vector is CLIP-L's pooled output ++
  CLIP-G's projected one (2048), of the first chunk.
- Network: ``SD3Denoiser`` (``app.families.sd3_nets``, torch, worker side) gives ``SD3Transformer2DModel`` the UNet call signature of our loop (it patches the
  latents itself; the timestep is ``1000 * s``, as the pipeline passes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.families.base import Family, FamilyDefaults, LatentFormat

DEFAULT_CFG = 4.5
NO_T5_WARNING = ("SD3.5 without a T5 text encoder (none inside the checkpoint or in models/text_encoders): the prompt "
                 "reaches the model through CLIP-L and CLIP-G only; add t5xxl_fp16.safetensors for full prompt adherence")

# SD3 latent -> RGB for the cheap live preview (the linear fit ComfyUI publishes for SD3's VAE)
_SD3_RGB = (
    (-0.0922, -0.0175, 0.0749), (0.0311, 0.0633, 0.0954), (0.1994, 0.0927, 0.0458), (0.0856, 0.0339, 0.0902),
    (0.0587, 0.0272, -0.0496), (-0.0006, 0.1104, 0.0309), (0.0978, 0.0306, 0.0427), (-0.0042, 0.1038, 0.1358),
    (-0.0194, 0.0020, 0.0669), (-0.0488, 0.0130, -0.0268), (0.0922, 0.0988, 0.0951), (-0.0278, 0.0524, -0.0542),
    (0.0332, 0.0456, 0.0895), (-0.0069, -0.0030, -0.0810), (-0.0596, -0.0465, -0.0293), (-0.1448, -0.1463, -0.1189),
)
_SD3_RGB_BIAS = (0.2394, 0.2135, 0.1925)


@dataclass(frozen=True)
class SD3Family(Family):
    flow_matching: bool = True
    skip_layer_guidance: bool = True

    def denoiser(self, pipe: Any) -> Any:
        cached = getattr(pipe, "_atelier_denoiser", None)
        if cached is None or cached.transformer is not pipe.transformer:
            from app.families.sd3_nets import SD3Denoiser  # torch: built in the worker only

            cached = SD3Denoiser(pipe.transformer)
            object.__setattr__(pipe, "_atelier_denoiser", cached)
        return cached

    def prompt_encoder(self, pipe: Any, loaded_id: str, embeddings: Any, **options: Any) -> Any:
        from app.families.sd3_nets import SD3PromptEncoder

        return SD3PromptEncoder(pipe, compute_device=options.get("compute_device"))

    def job_denoiser(self, plan: Any) -> Any:
        """The denoiser; a job on a model loaded without T5 says so in a warning."""
        if getattr(plan.pipe, "text_encoder_3", None) is None:
            plan.warn(NO_T5_WARNING)
        return self.denoiser(plan.pipe)


SD3 = SD3Family(
    id="sd3",
    label="Stable Diffusion 3.5",
    latent=LatentFormat(16, 8, 16, _SD3_RGB, _SD3_RGB_BIAS),
    defaults=FamilyDefaults(steps=28, cfg_scale=DEFAULT_CFG, sampler="Euler", schedule="Simple", width=1024,
                            height=1024, shift=3.0, size_step=16, megapixels=1.0),
    loaded_ids=("sd3",),
    textual_inversion=False,
    seamless_tiling=False,
    offload_text_encoder=True,
    half_dtype="bfloat16",
    files=("one checkpoint in models/Stable-diffusion (sd3.5_large.safetensors / sd3.5_medium.safetensors; text "
           "encoders inside or clip_l.safetensors, clip_g.safetensors and t5xxl_fp16.safetensors in "
           "models/text_encoders); or the diffusion model in models/diffusion_models with those text encoders and the "
           "SD3 VAE in models/VAE"),
)
