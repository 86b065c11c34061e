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
- Network: :class:`SD3Denoiser` gives ``SD3Transformer2DModel`` the UNet call signature of our loop (it patches the
  latents itself; the timestep is ``1000 * s``, as the pipeline passes it).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch

from app.families.base import Family, FamilyDefaults, LatentFormat, TransformerDenoiser

DEFAULT_CFG = 4.5
T5_TOKENS = 256
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


class SD3Denoiser(TransformerDenoiser):
    """``SD3Transformer2DModel`` with the UNet call signature of :func:`app.engine.denoise.sample`:
    ``added_cond_kwargs["text_embeds"]`` is the pooled vector per row; returns the velocity ``[B, 16, h, w]`` in fp32."""

    def check_size(self, h: int, w: int) -> None:
        """SD3's position grid is fixed (192 patches a side for large, 384 for medium): a larger latent is refused
        in pixels, before the transformer's own message in patches."""
        cfg = self.transformer.config
        grid = cfg.pos_embed_max_size
        if grid and max(h, w) > grid * cfg.patch_size:
            limit = grid * cfg.patch_size * 8
            raise ValueError(f"this SD3 model renders at most {limit}x{limit} pixels (its position grid); "
                             f"asked for {w * 8}x{h * 8}")

    def forward(self, x: torch.Tensor, t: torch.Tensor, encoder_hidden_states: Any = None,
                added_cond_kwargs: Any = None, return_dict: bool = False, **_: Any) -> tuple[torch.Tensor]:
        batch = x.shape[0]
        self.check_size(x.shape[-2], x.shape[-1])
        dtype = self.dtype
        t = torch.as_tensor(t, device=x.device, dtype=torch.float32)
        t = t.reshape(-1).expand(batch) if t.numel() == 1 else t.reshape(batch)
        pooled = (added_cond_kwargs or {}).get("text_embeds")
        if pooled is None:
            raise ValueError("SD3 needs the pooled CLIP-L + CLIP-G vector (added_cond_kwargs['text_embeds'])")
        out = self.transformer(
            hidden_states=x.to(dtype),
            encoder_hidden_states=encoder_hidden_states.to(x.device, dtype),
            pooled_projections=pooled.to(x.device, dtype),
            timestep=t,
            return_dict=False,
        )[0]
        return (out.float(),)


@dataclass
class SD3Conditioning:
    """Encoded prompts: one ``[77k + L, D_t5]`` tensor and one ``[2048]`` pooled vector per text."""

    cond: list[torch.Tensor]
    pooled: list[torch.Tensor]
    used_embeddings: dict[str, Any] = field(default_factory=dict)
    token_counts: list[int] = field(default_factory=list)
    weights_ignored: bool = False


class SD3PromptEncoder:
    """Prompts -> (CLIP-L ++ CLIP-G features padded to T5's width, then T5's tokens; pooled CLIP-L ++ CLIP-G); the
    CLIP encoder's ``encode`` signature."""

    def __init__(self, pipe: Any, compute_device: Any = None) -> None:
        from app.prompts.encode import PromptEncoder
        from app.prompts.t5_encode import T5PromptEncoder

        self.clips = (pipe.text_encoder, pipe.text_encoder_2)
        self.clip = PromptEncoder(list(self.clips), [pipe.tokenizer], "sd3")
        t5 = getattr(pipe, "text_encoder_3", None)
        self.t5 = None if t5 is None else T5PromptEncoder(t5, pipe.tokenizer_3, compute_device=compute_device)
        self.width = int(pipe.transformer.config.joint_attention_dim)
        self.compute_device = compute_device

    @property
    def state_key(self) -> Any:
        """The CLIP encoder's cache key part (a LoRA on CLIP-L / CLIP-G sets it, so cached prompts are re-encoded)."""
        return self.clip.state_key

    @state_key.setter
    def state_key(self, value: Any) -> None:
        self.clip.state_key = value

    def count_tokens(self, prompt: str) -> int:
        return self.t5.count_tokens(prompt) if self.t5 is not None else self.clip.token_count(prompt)[0]

    def _t5(self, prompt: str, emphasis: str) -> torch.Tensor:
        """T5's ``[L, D]`` states; without a T5 file ``T5_TOKENS`` zero tokens (``StableDiffusion3Pipeline``'s fallback)."""
        if self.t5 is None:
            return torch.zeros(T5_TOKENS, self.width)
        return self.t5.hidden_states(prompt, emphasis)[0]

    def token_count(self, text: str, steps: int = 20, is_negative: bool = False,
                    emphasis: str = "Original") -> tuple[int, int]:
        return self.clip.token_count(text, steps, is_negative, emphasis)

    def _clip(self, texts: list[str], clip_skip: int, emphasis: str) -> Any:
        from app.devices import visiting

        with contextlib.ExitStack() as stack:
            for model in self.clips:  # parked encoders visit the compute device for one encoding
                stack.enter_context(visiting(model, self.compute_device))
            return self.clip.encode(texts, clip_skip, emphasis)

    def encode(self, texts: list[str], clip_skip: int = 1, emphasis: str = "Original", is_negative: bool = False,
               **_: Any) -> SD3Conditioning:
        clip = self._clip(list(texts), clip_skip, emphasis)
        conds, pooled, counts = [], [], []
        for i, prompt in enumerate(texts):
            features = clip.cond[i].float().cpu()
            if features.shape[-1] > self.width:
                raise ValueError(f"SD3: CLIP features are {features.shape[-1]} wide, more than T5's {self.width}")
            features = torch.nn.functional.pad(features, (0, self.width - features.shape[-1]))
            hidden = self._t5(prompt, emphasis)
            conds.append(torch.cat([features, hidden], dim=0))
            pooled.append(clip.pooled[i].float().cpu())
            counts.append(clip.token_counts[i] if i < len(clip.token_counts) else 0)
        return SD3Conditioning(conds, pooled, dict(clip.used_embeddings), counts)


@dataclass(frozen=True)
class SD3Family(Family):
    def denoiser(self, pipe: Any) -> Any:
        cached = getattr(pipe, "_atelier_denoiser", None)
        if cached is None or cached.transformer is not pipe.transformer:
            cached = SD3Denoiser(pipe.transformer)
            object.__setattr__(pipe, "_atelier_denoiser", cached)
        return cached

    def prompt_encoder(self, pipe: Any, loaded_id: str, embeddings: Any, **options: Any) -> Any:
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
