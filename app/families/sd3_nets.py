"""SD3.5's networks and prompt encoder (torch; worker side): the family descriptor is ``app.families.sd3``."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch

from app.families.transformer import TransformerDenoiser

#: T5 tokens of the conditioning when the model has no T5 (``StableDiffusion3Pipeline`` pads with this many zeros)
T5_TOKENS = 256


class SD3Denoiser(TransformerDenoiser):
    """``SD3Transformer2DModel`` with the UNet call signature of :func:`app.engine.denoise.sample`:
    ``added_cond_kwargs["text_embeds"]`` is the pooled vector per row; returns the velocity ``[B, 16, h, w]`` in fp32.
    ``skip_layers`` leaves those joint blocks out (skip-layer guidance, ``app.engine.sampling.skip_layers``)."""

    @property
    def skip_layer_blocks(self) -> int:
        """How many joint blocks skip-layer guidance can choose from (24 on SD3.5 medium, 38 on large)."""
        return len(self.transformer.transformer_blocks)

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
                added_cond_kwargs: Any = None, return_dict: bool = False, skip_layers: list[int] | None = None,
                **_: Any) -> tuple[torch.Tensor]:
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
            skip_layers=skip_layers,
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
        if self.t5 is not None:  # T5's cache too (a LoRA may patch it)
            self.t5.state_key = value

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
