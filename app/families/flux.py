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
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from app.families.base import Family, FamilyDefaults, LatentFormat, TransformerDenoiser
from app.families.zimage import _FLUX_RGB, _FLUX_RGB_BIAS

DEFAULT_DISTILLED_CFG = 3.5
CLIP_TOKENS = 77
INFOTEXT_KEY = "Distilled CFG Scale"


def pack(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, h, w]`` latents -> ``[B, h/2 * w/2, 4C]`` tokens (2x2 patches, row-major), as ``FluxPipeline``."""
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse of :func:`pack` for latents of ``h`` x ``w``."""
    b, _, d = tokens.shape
    c = d // 4
    return tokens.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def image_ids(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Position ids ``[h/2 * w/2, 3]``: (0, row, column) per token."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = torch.arange(h // 2)[:, None]
    ids[..., 2] = torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


class FluxDenoiser(TransformerDenoiser):
    """``FluxTransformer2DModel`` with the UNet call signature of :func:`app.engine.denoise.sample`.

    ``added_cond_kwargs["text_embeds"]`` is the pooled CLIP vector per row; ``guidance`` the distilled guidance
    strength (used when the model has a guidance input, i.e. dev). Returns the velocity ``[B, 16, h, w]`` in fp32."""

    ragged_conds = False

    def __init__(self, transformer: Any, guidance: float = DEFAULT_DISTILLED_CFG) -> None:
        super().__init__(transformer)
        self.guidance = float(guidance)

    def with_guidance(self, guidance: float) -> FluxDenoiser:
        """A view of the same transformer with another distilled guidance (one per job; nothing shared changes)."""
        return FluxDenoiser(self.transformer, guidance)

    def forward(self, x: torch.Tensor, t: torch.Tensor, encoder_hidden_states: Any = None,
                added_cond_kwargs: Any = None, return_dict: bool = False, **_: Any) -> tuple[torch.Tensor]:
        batch, _, h, w = x.shape
        dtype = self.dtype
        t = torch.as_tensor(t, device=x.device, dtype=torch.float32)
        t = t.reshape(-1).expand(batch) if t.numel() == 1 else t.reshape(batch)
        pooled = (added_cond_kwargs or {}).get("text_embeds")
        if pooled is None:
            raise ValueError("FLUX needs the pooled CLIP-L vector (added_cond_kwargs['text_embeds'])")
        text = encoder_hidden_states.to(x.device, dtype)
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = torch.full((batch,), self.guidance, device=x.device, dtype=torch.float32)
        out = self.transformer(
            hidden_states=pack(x.to(dtype)),
            encoder_hidden_states=text,
            pooled_projections=pooled.to(x.device, dtype),
            timestep=(t / 1000).to(dtype),
            img_ids=image_ids(h, w, x.device, dtype),
            txt_ids=torch.zeros(text.shape[1], 3, device=x.device, dtype=dtype),
            guidance=guidance,
            return_dict=False,
        )[0]
        return (unpack(out.float(), h, w),)


@dataclass
class FluxConditioning:
    """Encoded prompts: one ``[L, 4096]`` T5 tensor and one ``[768]`` pooled CLIP-L vector per text."""

    cond: list[torch.Tensor]
    pooled: list[torch.Tensor]
    used_embeddings: dict[str, Any] = field(default_factory=dict)
    token_counts: list[int] = field(default_factory=list)
    weights_ignored: bool = False


class FluxPromptEncoder:
    """Prompts -> (T5 states with emphasis, pooled CLIP-L of the plain text); the CLIP encoder's ``encode``
    signature (``clip_skip`` does not apply)."""

    def __init__(self, clip: Any, clip_tokenizer: Any, t5: Any, t5_tokenizer: Any, compute_device: Any = None,
                 cache_size: int = 32) -> None:
        from app.prompts.t5_encode import T5PromptEncoder

        self.clip = clip
        self.clip_tokenizer = clip_tokenizer
        self.t5 = T5PromptEncoder(t5, t5_tokenizer, compute_device=compute_device)
        self.compute_device = compute_device
        self._pooled: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def count_tokens(self, prompt: str) -> int:
        return self.t5.count_tokens(prompt)

    def pooled(self, prompt: str) -> torch.Tensor:
        """The pooled CLIP-L output (``[768]``, fp32, CPU) of the prompt without emphasis markup, as FluxPipeline."""
        from app.devices import execution_device
        from app.families.zimage import plain_text

        text, _ = plain_text(prompt)
        with self._lock:
            hit = self._pooled.get(text)
        if hit is not None:
            return hit
        ids = self.clip_tokenizer(text, padding="max_length", max_length=CLIP_TOKENS, truncation=True)["input_ids"]
        device = execution_device(self.clip)
        target = self.compute_device
        moved = target is not None and device.type == "cpu" and torch.device(target).type != "cpu"
        if moved:
            self.clip.to(target)
            device = torch.device(target)
        try:
            with torch.inference_mode():
                out = self.clip(torch.tensor([ids], device=device), output_hidden_states=False)
            hit = out.pooler_output[0].float().cpu()
        finally:
            if moved:
                self.clip.to("cpu")
        with self._lock:
            self._pooled[text] = hit
            while len(self._pooled) > self._cache_size:
                self._pooled.popitem(last=False)
        return hit

    def encode(self, texts: list[str], clip_skip: int = 1, emphasis: str = "Original", is_negative: bool = False,
               **_: Any) -> FluxConditioning:
        conds, pooled, counts = [], [], []
        for prompt in texts:
            hidden, count = self.t5.hidden_states(prompt, emphasis)
            conds.append(hidden)
            counts.append(count)
            pooled.append(self.pooled(prompt))
        return FluxConditioning(conds, pooled, {}, counts)


def dynamic_shift(config: dict[str, Any], width: int, height: int) -> float:
    """FLUX dev's resolution-dependent shift ``exp(mu)``, ``mu`` linear in the image tokens ``(H/16)(W/16)``
    between (``base_image_seq_len``, ``base_shift``) and (``max_image_seq_len``, ``max_shift``) — diffusers'
    ``calculate_shift``; its exponential time shift is the constant shift ``exp(mu)``."""
    tokens = (int(height) // 16) * (int(width) // 16)
    lo, hi = float(config.get("base_image_seq_len", 256)), float(config.get("max_image_seq_len", 4096))
    b0, b1 = float(config.get("base_shift", 0.5)), float(config.get("max_shift", 1.15))
    mu = b0 + (b1 - b0) * (tokens - lo) / (hi - lo)
    return math.exp(mu)


def fold_mask(pixel_mask: torch.Tensor, downscale: int = 8) -> torch.Tensor:
    """``[B, 1, H, W]`` pixel mask -> ``[B, downscale², H/downscale, W/downscale]``: each latent pixel carries its
    8x8 block of mask values as channels (row-major within the block), FLUX.1 Fill's mask input
    (``FluxFillPipeline.prepare_mask_latents``); packing then makes it 256 values per token."""
    b, _, hh, ww = pixel_mask.shape
    h, w = hh // downscale, ww // downscale
    m = pixel_mask[:, 0].reshape(b, h, downscale, w, downscale).permute(0, 2, 4, 1, 3)
    return m.reshape(b, downscale * downscale, h, w)


@dataclass(frozen=True)
class FluxFamily(Family):
    #: whether the network takes a distilled guidance input (dev) or not (schnell)
    distilled_guidance: bool = True
    #: the Distilled CFG Scale of a job that sets none (dev 3.5; Fill 30, as ``FluxFillPipeline``)
    default_guidance: float = DEFAULT_DISTILLED_CFG

    def denoiser(self, pipe: Any) -> Any:
        cached = getattr(pipe, "_atelier_denoiser", None)
        if cached is None or cached.transformer is not pipe.transformer:
            cached = FluxDenoiser(pipe.transformer)
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
        h, w = masked_latents.shape[-2:]
        down = self.latent.downscale
        mask = pixel_mask.float()
        if tuple(mask.shape[-2:]) != (h * down, w * down):
            mask = torch.nn.functional.interpolate(mask, size=(h * down, w * down))
        return torch.cat([masked_latents, fold_mask(mask, down).to(masked_latents)], dim=1)

    def prompt_encoder(self, pipe: Any, loaded_id: str, embeddings: Any, **options: Any) -> Any:
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
FLUX_FILL = FluxFamily(
    id="flux-fill",
    label="FLUX.1 Fill",
    latent=LatentFormat(16, 8, 16, _FLUX_RGB, _FLUX_RGB_BIAS),
    defaults=FamilyDefaults(steps=20, cfg_scale=1.0, sampler="Euler", schedule="Simple", width=1024, height=1024,
                            shift=None, size_step=16, megapixels=1.0),
    loaded_ids=("flux-fill",),
    textual_inversion=False,
    seamless_tiling=False,
    offload_text_encoder=True,
    half_dtype="bfloat16",
    default_guidance=FILL_DISTILLED_CFG,
    files=_FILES.format(name="flux1-fill-dev.safetensors"),
)
FAMILIES = (FLUX_DEV, FLUX_SCHNELL, FLUX_FILL)
