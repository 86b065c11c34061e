"""FLUX.1's torch parts: latent packing, the transformer with the UNet call signature (:class:`FluxDenoiser`) and
the T5 + CLIP-L prompt encoder (:class:`FluxPromptEncoder`). The family descriptor (:mod:`app.families.flux`) builds
them in the worker; see there for the model."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from app.families.transformer import TransformerDenoiser
from app.prompts.plain import plain_text

CLIP_TOKENS = 77


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

    def __init__(self, transformer: Any, guidance: float) -> None:
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
        self._pooled: OrderedDict[tuple[Any, str], torch.Tensor] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._state_key: Any = None

    @property
    def state_key(self) -> Any:
        """Part of both caches' keys: a LoRA on CLIP-L or T5 sets it (``app.models.lora.handler``), so prompts encoded
        before are encoded again with the patched weights, and again after it is removed."""
        return self._state_key

    @state_key.setter
    def state_key(self, value: Any) -> None:
        self._state_key = value
        self.t5.state_key = value

    def count_tokens(self, prompt: str) -> int:
        return self.t5.count_tokens(prompt)

    def pooled(self, prompt: str) -> torch.Tensor:
        """The pooled CLIP-L output (``[768]``, fp32, CPU) of the prompt without emphasis markup, as FluxPipeline."""
        from app.devices import execution_device

        text, _ = plain_text(prompt)
        key = (self._state_key, text)
        with self._lock:
            hit = self._pooled.get(key)
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
            self._pooled[key] = hit
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


def fold_mask(pixel_mask: torch.Tensor, downscale: int = 8) -> torch.Tensor:
    """``[B, 1, H, W]`` pixel mask -> ``[B, downscale², H/downscale, W/downscale]``: each latent pixel carries its
    8x8 block of mask values as channels (row-major within the block), FLUX.1 Fill's mask input
    (``FluxFillPipeline.prepare_mask_latents``); packing then makes it 256 values per token."""
    b, _, hh, ww = pixel_mask.shape
    h, w = hh // downscale, ww // downscale
    m = pixel_mask[:, 0].reshape(b, h, downscale, w, downscale).permute(0, 2, 4, 1, 3)
    return m.reshape(b, downscale * downscale, h, w)


def fill_channels(pixel_mask: torch.Tensor, masked_latents: torch.Tensor, downscale: int = 8) -> torch.Tensor:
    """FLUX.1 Fill's extra input before 2x2 packing (``FluxFamily.inpaint_channels``): the masked-image latents, then
    the folded 8x8 pixel mask (the mask resized to the latents' pixel size first when it differs)."""
    h, w = masked_latents.shape[-2:]
    mask = pixel_mask.float()
    if tuple(mask.shape[-2:]) != (h * downscale, w * downscale):
        mask = torch.nn.functional.interpolate(mask, size=(h * downscale, w * downscale))
    return torch.cat([masked_latents, fold_mask(mask, downscale).to(masked_latents)], dim=1)
