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

import contextlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from app.families.base import Family, FamilyDefaults, LatentFormat, TransformerDenoiser

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

MAX_TOKENS = 512  # ZImagePipeline's max_sequence_length
WEIGHTS_IGNORED = "Prompt weights"


class ZImageDenoiser(TransformerDenoiser):
    """``ZImageTransformer2DModel`` with the UNet call signature of :func:`app.engine.denoise.sample`.

    ``encoder_hidden_states`` is a list of ``[L_i, D]`` captions (``ragged_conds``: the loop passes the
    conditioning unpadded). Returns the raw network output ``[B, C, H, W]`` in fp32; the flow model sampling
    turns it into the sampler's input.
    """

    ragged_conds = True

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        encoder_hidden_states: Any = None,
        added_cond_kwargs: Any = None,
        return_dict: bool = False,
        **_: Any,
    ) -> tuple[torch.Tensor]:
        batch = x.shape[0]
        t = torch.as_tensor(t, device=x.device, dtype=torch.float32)
        t = t.reshape(-1).expand(batch) if t.numel() == 1 else t.reshape(batch)
        captions = encoder_hidden_states
        if isinstance(captions, torch.Tensor):
            captions = list(captions.unbind(0))
        dtype = self.dtype
        latents = list(x.to(dtype).unsqueeze(2).unbind(0))
        caps = [c.to(x.device, dtype) for c in captions]
        out = self.transformer(latents, t, caps, return_dict=False)[0]
        return (torch.stack([o.float() for o in out], dim=0).squeeze(2),)


@dataclass
class TextConditioning:
    """Encoded prompts of an LLM encoder: one ``[L_i, D]`` tensor per text (no padding, no pooled vector)."""

    cond: list[torch.Tensor]
    pooled: None = None
    used_embeddings: dict[str, Any] = field(default_factory=dict)
    token_counts: list[int] = field(default_factory=list)
    weights_ignored: bool = False


def plain_text(prompt: str) -> tuple[str, bool]:
    """The prompt without A1111 emphasis markup (weights dropped, ``BREAK`` a space) and whether any weight
    other than 1 was dropped. Escaped brackets stay literal, as in A1111."""
    from app.prompts.syntax import parse_prompt_attention

    parts: list[str] = []
    dropped = False
    for text, weight in parse_prompt_attention(prompt):
        if text == "BREAK" and weight == -1:
            parts.append(" ")
            continue
        if weight != 1.0:
            dropped = True
        parts.append(text)
    text = re.sub(r"(?<=\S) {2,}(?=\S)", " ", "".join(parts))
    return text.strip(), dropped


class ChatPromptEncoder:
    """Prompts -> Qwen3 hidden states (second-to-last layer) with the model's chat template; cached per text.

    The ``encode`` signature is the CLIP encoder's (``clip_skip`` and ``emphasis`` do not apply to an LLM
    encoder and are ignored)."""

    def __init__(self, text_encoder: Any, tokenizer: Any, max_tokens: int = MAX_TOKENS, cache_size: int = 64,
                 compute_device: Any = None) -> None:
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        #: where to encode when the text encoder is parked in CPU memory (a GPU); None = where it is
        self.compute_device = compute_device
        self.max_tokens = max_tokens
        self._cache: OrderedDict[str, tuple[torch.Tensor, int, bool]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def template(self, text: str) -> str:
        return str(
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True, enable_thinking=True
            )
        )

    def token_ids(self, prompt: str) -> list[int]:
        text, _ = plain_text(prompt)
        ids = self.tokenizer(self.template(text), truncation=True, max_length=self.max_tokens)["input_ids"]
        return list(ids)

    def count_tokens(self, prompt: str) -> int:
        """Tokens of the prompt itself (without the chat template around it), for the UI counter."""
        text, _ = plain_text(prompt)
        return len(self.tokenizer(text)["input_ids"]) if text else 0

    def _on_compute_device(self) -> contextlib.AbstractContextManager[Any]:
        """The text encoder's device for one encoding (a parked encoder visits the compute device)."""
        from app.devices import visiting

        return visiting(self.text_encoder, self.compute_device)

    def encode(self, texts: list[str], clip_skip: int = 1, emphasis: str = "Original", is_negative: bool = False,
               **_: Any) -> TextConditioning:
        rows: list[torch.Tensor] = []
        counts: list[int] = []
        ignored = False
        for prompt in texts:
            with self._lock:
                hit = self._cache.get(prompt)
                if hit is not None:
                    self._cache.move_to_end(prompt)
            if hit is None:
                with self._on_compute_device() as device:
                    ids = self.token_ids(prompt)
                    with torch.inference_mode():
                        out = self.text_encoder(
                            input_ids=torch.tensor([ids], dtype=torch.long, device=device),
                            attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=device),
                            output_hidden_states=True,
                        )
                    hidden = out.hidden_states[-2][0].float().cpu()
                hit = (hidden, self.count_tokens(prompt), plain_text(prompt)[1])
                with self._lock:
                    self._cache[prompt] = hit
                    while len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
            rows.append(hit[0])
            counts.append(hit[1])
            ignored = ignored or hit[2]
        return TextConditioning(rows, None, {}, counts, ignored)


@dataclass(frozen=True)
class ZImageFamily(Family):
    def denoiser(self, pipe: Any) -> Any:
        cached = getattr(pipe, "_atelier_denoiser", None)
        if cached is None or cached.transformer is not pipe.transformer:
            cached = ZImageDenoiser(pipe.transformer)
            object.__setattr__(pipe, "_atelier_denoiser", cached)
        return cached

    def prompt_encoder(self, pipe: Any, loaded_id: str, embeddings: Any, **options: Any) -> Any:
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
