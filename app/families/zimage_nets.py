"""Z-Image's torch parts: the transformer with the UNet call signature (:class:`ZImageDenoiser`) and the Qwen3
chat-template prompt encoder (:class:`ChatPromptEncoder`). The family descriptor (:mod:`app.families.zimage`) builds
them in the worker; see there for the model."""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from app.families.transformer import TransformerDenoiser
from app.prompts.plain import plain_text

MAX_TOKENS = 512  # ZImagePipeline's max_sequence_length


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
