"""Optional compel prompt syntax (setting ``prompt_syntax = "compel"``): ``cat++``, ``(cat)1.3``, ``.and()``, ``.blend()``.

Builds the same ``Conditioning`` as ``PromptEncoder`` from the same text encoders, through the ``compel``
package (works with transformers 5 for the layers used here). Limits: textual-inversion embeddings and
A1111 emphasis modes do not apply; clip skip on SD1 supports 1 (last layer) and ≥ 2 (penultimate + final
norm, compel has no deeper skip); SD2 and SDXL use their fixed layers like the A1111 route.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from app.prompts.encode import Conditioning, family_base
from app.prompts.tokenizer import clip_tokenizer


class _WithTextModel(torch.nn.Module):
    """Adapter: compel reads ``text_encoder.text_model.final_layer_norm``, which transformers ≥ 5.6 CLIPTextModel lacks."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.inner = model
        self.text_model = model

    @property
    def device(self) -> torch.device:
        return self.inner.device

    @property
    def dtype(self) -> torch.dtype:
        return self.inner.dtype

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner(*args, **kwargs)


class CompelPromptEncoder:
    """``encode(texts, clip_skip)`` / ``encode_pair`` with compel syntax for sd1, sd2 and sdxl."""

    def __init__(self, text_encoders: Sequence[Any], tokenizers: Sequence[Any] | None, family: str) -> None:
        from compel import Compel
        from compel import ReturnedEmbeddingsType as R

        self.family = family_base(family)
        tok = (tokenizers[0] if tokenizers else None) or clip_tokenizer()
        self._compels: dict[int, list[Any]] = {}

        def make(te: Any, tokenizer: Any, kind: Any, pooled: bool = False) -> Any:
            return Compel(
                tokenizer=tokenizer,
                text_encoder=te,
                returned_embeddings_type=kind,
                truncate_long_prompts=False,
                requires_pooled=pooled,
            )

        if self.family == "sdxl":
            te1, te2 = text_encoders
            tok2 = (tokenizers[1] if tokenizers and len(tokenizers) > 1 else None) or clip_tokenizer("!")
            pair = [
                make(te1, tok, R.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED),
                make(te2, tok2, R.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED, True),
            ]
            self._compels = {1: pair, 2: pair}
        else:
            te = text_encoders[0]
            last = [make(te, tok, R.LAST_HIDDEN_STATES_NORMALIZED)]
            skip = (
                [make(_WithTextModel(te), tok, R.PENULTIMATE_HIDDEN_STATES_NORMALIZED)]
                if self.family == "sd1"
                else last
            )
            self._compels = {1: last, 2: skip}

    @classmethod
    def from_pipe(cls, pipe: Any, family: str) -> CompelPromptEncoder:
        if family_base(family) == "sdxl-refiner":
            raise ValueError("the compel prompt syntax is not available for the SDXL refiner (OpenCLIP bigG alone); "
                             "set Settings > Stable Diffusion > Prompt syntax to a1111")
        encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if family_base(family) == "sdxl" else [])
        tokenizers = [getattr(pipe, "tokenizer", None), getattr(pipe, "tokenizer_2", None)]
        return cls(encoders, tokenizers, family)

    def encode(self, texts: Sequence[str], clip_skip: int = 1) -> Conditioning:
        """Encode a batch; prompts of different lengths are padded with empty-prompt chunks (compel's way)."""
        compels = self._compels[2 if int(clip_skip or 1) >= 2 else 1]
        texts = [str(t) for t in texts]
        with torch.no_grad():
            if self.family != "sdxl":
                return Conditioning(self._batch(compels[0], texts))
            left = self._batch(compels[0], texts)
            right, pooled = self._batch(compels[1], texts, pooled=True)
            left, right = self._even(left, right, compels)
            return Conditioning(torch.cat([left, right], dim=-1), pooled)

    def encode_pair(
        self, prompts: Sequence[str], negatives: Sequence[str], clip_skip: int = 1
    ) -> tuple[Conditioning, Conditioning]:
        cond, uncond = self.encode(prompts, clip_skip), self.encode(negatives, clip_skip)
        compel = self._compels[2 if int(clip_skip or 1) >= 2 else 1][0]
        if cond.cond.shape[1] != uncond.cond.shape[1]:
            empty = self.encode([""], clip_skip).cond
            a, b = compel._pad_conditioning_tensors_to_same_length([cond.cond, uncond.cond], empty[0])
            cond, uncond = Conditioning(a, cond.pooled), Conditioning(b, uncond.pooled)
        return cond, uncond

    @staticmethod
    def _batch(compel: Any, texts: list[str], pooled: bool = False) -> Any:
        outs = [compel.build_conditioning_tensor(t) for t in texts]
        conds = [o[0] if pooled else o for o in outs]
        if len({c.shape[1] for c in conds}) > 1:
            conds = compel.pad_conditioning_tensors_to_same_length(conds)
        cond = torch.cat(conds, dim=0)
        if pooled:
            return cond, torch.cat([o[1] for o in outs], dim=0)
        return cond

    @staticmethod
    def _even(left: torch.Tensor, right: torch.Tensor, compels: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad CLIP-L / OpenCLIP-G features to the same token length with their empty-prompt chunk."""
        while left.shape[1] < right.shape[1]:
            left = torch.cat([left, compels[0].build_conditioning_tensor("").expand(left.shape[0], -1, -1)], dim=1)
        while right.shape[1] < left.shape[1]:
            right = torch.cat(
                [right, compels[1].build_conditioning_tensor("")[0].expand(right.shape[0], -1, -1)], dim=1
            )
        return left, right
