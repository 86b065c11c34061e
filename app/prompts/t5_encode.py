"""Prompts -> T5 encoder hidden states, with A1111 emphasis as Forge applies it to T5 (FLUX.1, SD3.5).

Tokens: the prompt is split by the A1111 attention syntax (``parse_prompt_attention``); each fragment is tokenized
without special tokens and every token carries its fragment's weight; ``BREAK`` is a space (T5 has no 75-token
chunks). ``</s>`` ends the sequence and ``<pad>`` fills it to ``min_length`` (256) tokens; a longer prompt is padded
to ``max_length`` (512) and cut there. The encoder sees the whole padded sequence without an attention mask, as
diffusers' ``FluxPipeline`` / ``StableDiffusion3Pipeline`` and Forge run it, so a prompt without weights gives exactly
their conditioning (with ``max_sequence_length`` = the padded length).

Emphasis (Forge's T5 engine, A1111's modes): the weights multiply the encoder's output hidden states token by token;
"Original" then rescales the whole ``[L, D]`` tensor so its mean is the unweighted mean again ("No norm" skips the
rescale, "None"/"Ignore" drop the weights). ``(word:1.3)`` therefore strengthens ``word`` on FLUX as on SD; the
infotext keeps the prompt as written.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from typing import Any

import torch

from app.prompts.encode import apply_emphasis
from app.prompts.t5_tokenizer import EOS_ID, PAD_ID

MIN_LENGTH = 256
MAX_LENGTH = 512


def weighted_tokens(tokenizer: Any, prompt: str, min_length: int = MIN_LENGTH,
                    max_length: int = MAX_LENGTH) -> tuple[list[int], list[float], int]:
    """(token ids, per-token weights, number of prompt tokens before ``</s>``) of *prompt*, padded as the module
    doc says."""
    from app.prompts.syntax import parse_prompt_attention

    ids: list[int] = []
    weights: list[float] = []
    for text, weight in parse_prompt_attention(prompt):
        if text == "BREAK" and weight == -1:
            text, weight = " ", 1.0
        if not text.strip():
            continue
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.extend(piece)
        weights.extend([float(weight)] * len(piece))
    ids, weights = ids[: max_length - 1], weights[: max_length - 1]
    count = len(ids)
    ids.append(EOS_ID)
    weights.append(1.0)
    target = min_length if len(ids) <= min_length else max_length
    ids.extend([PAD_ID] * (target - len(ids)))
    weights.extend([1.0] * (target - len(weights)))
    return ids, weights, count


class T5PromptEncoder:
    """Prompts -> ``[L, D]`` T5 hidden states (fp32, on the CPU), cached per (prompt, emphasis).

    ``compute_device``: where to encode when the encoder is parked in CPU memory on a GPU machine (it visits the
    device for one encoding and goes back); None = where it is."""

    def __init__(self, text_encoder: Any, tokenizer: Any, min_length: int = MIN_LENGTH, max_length: int = MAX_LENGTH,
                 compute_device: Any = None, cache_size: int = 32) -> None:
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.min_length = min_length
        self.max_length = max_length
        self.compute_device = compute_device
        self._cache: OrderedDict[tuple[Any, str, str], tuple[torch.Tensor, int]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        #: part of the cache key: a LoRA that patches the encoder sets it (``app.models.lora.handler``), so a prompt
        #: encoded before is encoded again with the patched weights
        self.state_key: Any = None

    def count_tokens(self, prompt: str) -> int:
        return weighted_tokens(self.tokenizer, prompt, self.min_length, self.max_length)[2]

    def _on_compute_device(self) -> contextlib.AbstractContextManager[Any]:
        """The text encoder's device for one encoding (a parked encoder visits the compute device)."""
        from app.devices import visiting

        return visiting(self.text_encoder, self.compute_device)

    def hidden_states(self, prompt: str, emphasis: str = "Original") -> tuple[torch.Tensor, int]:
        """(``[L, D]`` fp32 hidden states with the prompt's weights applied, prompt token count)."""
        key = (self.state_key, prompt, emphasis)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        ids, weights, count = weighted_tokens(self.tokenizer, prompt, self.min_length, self.max_length)
        with self._on_compute_device() as device, torch.inference_mode():
            out = self.text_encoder(input_ids=torch.tensor([ids], dtype=torch.long, device=device),
                                    output_hidden_states=False)
            z = out[0] if isinstance(out, tuple) else out.last_hidden_state
            if any(w != 1.0 for w in weights):
                z = apply_emphasis(z, torch.tensor([weights], dtype=torch.float32), emphasis)
            hidden = z[0].float().cpu()
        hit = (hidden, count)
        with self._lock:
            self._cache[key] = hit
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return hit
