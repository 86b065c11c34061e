"""Chunked CLIP prompt encoding with A1111 weights, clip skip and textual inversion (spec §1.6–§1.8, §2).

``PromptEncoder(text_encoders, tokenizers, family, embeddings)`` turns a batch of prompt texts (one
schedule/AND text each; the caller has already split those) into a ``Conditioning``:
1. each text is parsed and packed into 77-token chunks (``app.prompts.chunks``); the batch is evened out
   with empty chunks;
2. chunk i of the whole batch goes through every text encoder at once; embedding vectors replace the
   placeholder slots through a forward hook on the token-embedding module (a torch seam: transformers'
   ``CLIPTextModel.forward`` takes only ``input_ids``);
3. the layer is chosen by ``clip_skip_layer`` and the emphasis multipliers are applied per encoder;
4. chunk outputs are concatenated along the token axis; SDXL concatenates CLIP-L and OpenCLIP-G features
   and takes the pooled vector from G's projection of the first chunk.

Family choices (spec §1.8): SD1 honours clip skip (``hidden_states[-n]`` + final LayerNorm). SD2 ignores it:
the diffusers SD2 text encoder already has the last OpenCLIP block removed (23 layers), so its
``last_hidden_state`` is A1111's "penultimate + ln_final". SDXL uses ``hidden_states[-2]`` without a norm
for both encoders; only with ``sdxl_clip_l_skip`` does CLIP-L use ``hidden_states[-n]``. An SDXL negative
batch of empty strings gives all-zero cond and pooled (A1111 ``force_zero_embeddings``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from app.devices import execution_device
from app.prompts.chunks import (
    DEFAULT_COMMA_BACKTRACK,
    EmbeddingIndex,
    ParseFn,
    PromptChunk,
    chunk_prompt,
    empty_chunk,
    token_count,
)
from app.prompts.tokenizer import EOS_ID, clip_tokenizer

CACHE_SIZE = 64
PAD_MODES = ("repeat_last", "empty", "none")
_FAMILY_BASE = {
    "sd1": "sd1",
    "sd1-inpaint": "sd1",
    "sd2": "sd2",
    "sd2v": "sd2",
    "sd2-inpaint": "sd2",
    "sdxl": "sdxl",
    "sdxl-inpaint": "sdxl",
    "sdxl-refiner": "sdxl-refiner",
    "sd3": "sd3",
}
# per family: (embedding part, layer mode, pad id, pooled) for each text encoder
_SLOTS = {
    "sd1": [("clip_l", "sd1", EOS_ID, False)],
    "sd2": [("clip_h", "last", 0, False)],
    "sdxl": [("clip_l", "sdxl_l", EOS_ID, False), ("clip_g", "sdxl_g", 0, True)],
    "sdxl-refiner": [("clip_g", "sdxl_g", 0, True)],  # OpenCLIP bigG alone (A1111's refiner conditioner)
    # SD3: the same two CLIPs and layers as SDXL; the pooled vector is CLIP-L's and CLIP-G's, concatenated
    "sd3": [("clip_l", "sdxl_l", EOS_ID, True), ("clip_g", "sdxl_g", 0, True)],
}


@dataclass
class Conditioning:
    """Encoded prompts: ``cond`` ``[B, 77*k, D]``; ``pooled`` ``[B, D_pool]`` (SDXL) or None.

    ``used_embeddings`` (name → Embedding, first use first) feeds the ``TI hashes`` infotext;
    ``token_counts`` is A1111's token count per text.
    """

    cond: torch.Tensor
    pooled: torch.Tensor | None = None
    used_embeddings: dict[str, Any] = field(default_factory=dict)
    token_counts: list[int] = field(default_factory=list)

    @property
    def chunks(self) -> int:
        return self.cond.shape[1] // 77


@dataclass
class _Slot:
    model: Any
    part: str
    layer: str
    pad_id: int
    pooled: bool


def family_base(family: str) -> str:
    try:
        return _FAMILY_BASE[str(family)]
    except KeyError:
        raise ValueError(
            f"prompt encoder: unsupported model family {family!r}; known: {', '.join(_FAMILY_BASE)}"
        ) from None


def _text_model(model: Any) -> Any:
    """The module holding ``final_layer_norm`` (``CLIPTextModelWithProjection`` keeps a ``text_model``)."""
    return getattr(model, "text_model", model)


def clip_skip_layer(
    output: Any, final_layer_norm: Any, clip_skip: int, mode: str = "sd1", sdxl_clip_l_skip: bool = False
) -> torch.Tensor:
    """Pick the text-encoder features A1111 uses (spec §1.8).

    ``mode`` "sd1": clip_skip ≤ 1 → ``last_hidden_state``; n > 1 → ``final_layer_norm(hidden_states[-n])``.
    "last" (SD2): ``last_hidden_state`` always. "sdxl_g": ``hidden_states[-2]``. "sdxl_l": ``hidden_states[-2]``,
    or ``hidden_states[-n]`` (no norm) when ``sdxl_clip_l_skip`` is on. n is clamped to the available layers.
    """
    hidden = output.hidden_states
    n = max(1, min(int(clip_skip or 1), len(hidden) - 1 if hidden else 1))
    if mode == "sd1":
        return output.last_hidden_state if n <= 1 else final_layer_norm(hidden[-n])
    if mode == "last":
        return output.last_hidden_state
    if mode == "sdxl_l" and sdxl_clip_l_skip:
        return hidden[-n]
    if mode in ("sdxl_l", "sdxl_g"):
        return hidden[-2]
    raise ValueError(f"unknown clip skip mode {mode!r}")


def apply_emphasis(z: torch.Tensor, multipliers: torch.Tensor, emphasis: str) -> torch.Tensor:
    """Weights on ``z`` ``[B, 77, C]`` (spec §1.7): Original restores the global mean; No norm only multiplies."""
    if emphasis in ("Ignore", "None"):
        return z
    work = torch.promote_types(z.dtype, torch.float32)
    zf = z.to(work)
    weighted = zf * multipliers.to(zf.device, work).unsqueeze(-1)
    if emphasis == "No norm":
        return weighted.to(z.dtype)
    if emphasis == "Original":
        new_mean = weighted.mean()
        if new_mean == 0:  # degenerate (all-zero features): nothing to restore
            return weighted.to(z.dtype)
        return (weighted * (zf.mean() / new_mean)).to(z.dtype)
    raise ValueError(f"unknown emphasis mode {emphasis!r}")


def adapter_state(model: Any) -> tuple:
    """Fingerprint of peft LoRA layers in a text encoder (scales, active adapters, merged/disabled flags).

    Part of the cache key, so applying, re-weighting or removing a LoRA re-encodes the prompt.
    """
    state = []
    for name, module in model.named_modules():
        scaling = getattr(module, "scaling", None)
        if isinstance(scaling, dict) and scaling:
            active = getattr(module, "active_adapters", ()) or ()
            flags = (bool(getattr(module, "disable_adapters", False)), bool(getattr(module, "merged", False)))
            state.append((name, tuple(sorted(scaling.items())), tuple(active), flags))
    return tuple(state)


def _stack_pad(a: torch.Tensor, length: int, filler: torch.Tensor | None) -> torch.Tensor:
    missing = length - a.shape[1]
    if missing <= 0:
        return a
    if filler is None:  # repeat the last vector (A1111 stack_conds)
        return torch.cat([a, a[:, -1:].expand(a.shape[0], missing, a.shape[2])], dim=1)
    reps = filler.to(a.device, a.dtype).expand(a.shape[0], -1, -1).repeat(1, missing // filler.shape[1] + 1, 1)
    return torch.cat([a, reps[:, :missing]], dim=1)


class PromptEncoder:
    """Encode prompts for one loaded model (see module docstring). Results are LRU-cached."""

    def __init__(
        self,
        text_encoders: Sequence[Any],
        tokenizers: Sequence[Any] | None,
        family: str,
        embeddings: Any = None,
        *,
        comma_padding_backtrack: int = DEFAULT_COMMA_BACKTRACK,
        cache_size: int = CACHE_SIZE,
        parse: ParseFn | None = None,
    ) -> None:
        self.family = family_base(family)
        specs = _SLOTS[self.family]
        if len(text_encoders) != len(specs) or any(te is None for te in text_encoders):
            raise ValueError(
                f"prompt encoder: family {family!r} needs {len(specs)} text encoder(s), got {len(text_encoders)}"
            )
        self.slots = [_Slot(te, *spec) for te, spec in zip(text_encoders, specs, strict=True)]
        self.tokenizer = (tokenizers[0] if tokenizers else None) or clip_tokenizer()
        self.embeddings = embeddings
        self.comma_padding_backtrack = comma_padding_backtrack
        self.parse = parse  # attention parser; None = app.prompts.syntax.parse_prompt_attention
        # part of the cache key: set it when text-encoder weights change in a way adapter_state can't see
        # (e.g. a LoRA fused into the weights by hand); peft LoRA layers are detected automatically
        self.state_key: Any = None
        self._cache: OrderedDict[tuple, Conditioning] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.RLock()
        self._index: tuple[Any, EmbeddingIndex] | None = None

    @classmethod
    def from_pipe(cls, pipe: Any, family: str, embeddings: Any = None, **kw: Any) -> PromptEncoder:
        """Build from a diffusers pipeline (``text_encoder``/``tokenizer`` [+ ``text_encoder_2``])."""
        if family_base(family) == "sdxl-refiner":
            return cls([pipe.text_encoder_2], [getattr(pipe, "tokenizer_2", None)], family, embeddings, **kw)
        encoders = [pipe.text_encoder]
        if family_base(family) == "sdxl":
            encoders.append(getattr(pipe, "text_encoder_2", None))
        return cls(encoders, [getattr(pipe, "tokenizer", None)], family, embeddings, **kw)

    def embedding_dims(self) -> dict[str, int]:
        """Token-embedding width per part, for ``EmbeddingDatabase.set_model`` (e.g. ``{"clip_l": 768}``)."""
        return {slot.part: int(slot.model.get_input_embeddings().weight.shape[1]) for slot in self.slots}

    # ---- embeddings
    def _embedding_map(self) -> tuple[Any, Mapping[str, Any]]:
        emb = self.embeddings
        if emb is None:
            return None, {}
        if isinstance(emb, Mapping):
            return tuple(sorted((k, id(v)) for k, v in emb.items())), emb
        return ("db", id(emb), emb.version), emb.embeddings

    def embedding_index(self) -> EmbeddingIndex | None:
        version, mapping = self._embedding_map()
        if not mapping:
            return None
        if self._index is None or self._index[0] != version:
            self._index = (version, EmbeddingIndex.build(mapping, self.tokenizer))
        return self._index[1]

    # ---- public API
    def token_count(
        self, text: str, steps: int = 20, is_negative: bool = False, emphasis: str = "Original"
    ) -> tuple[int, int]:
        """UI counter ``(tokens, limit)`` with this model's embeddings (spec §1.4)."""
        return token_count(
            text,
            self.tokenizer,
            steps=steps,
            is_negative=is_negative,
            emphasis=emphasis,
            comma_padding_backtrack=self.comma_padding_backtrack,
            embeddings=self.embedding_index(),
            parse=self.parse,
        )

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def encode(
        self,
        texts: Sequence[str],
        clip_skip: int = 1,
        emphasis: str = "Original",
        *,
        is_negative: bool = False,
        sdxl_clip_l_skip: bool = False,
    ) -> Conditioning:
        """Encode a batch of prompt texts (spec §1.6): ``cond`` ``[B, 77*k, D]`` in the encoder dtype."""
        texts = [str(t) for t in texts]
        if not texts:
            raise ValueError("prompt encoder: empty batch (need at least one text)")
        key = (
            self.state_key,
            tuple(adapter_state(slot.model) for slot in self.slots),
            tuple(texts),
            int(clip_skip or 1),
            emphasis,
            self.comma_padding_backtrack,
            self._embedding_map()[0],
            bool(is_negative),
            bool(sdxl_clip_l_skip),
        )
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            result = self._encode(texts, int(clip_skip or 1), emphasis, is_negative, sdxl_clip_l_skip)
            self._cache[key] = result
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return result

    def encode_pair(
        self,
        prompts: Sequence[str],
        negatives: Sequence[str],
        clip_skip: int = 1,
        emphasis: str = "Original",
        *,
        pad: str = "repeat_last",
        sdxl_clip_l_skip: bool = False,
    ) -> tuple[Conditioning, Conditioning]:
        """``(cond, uncond)`` with equal token lengths.

        ``pad``: "repeat_last" repeats the shorter one's last vector (A1111 ``stack_conds``, spec §1.6);
        "empty" appends empty-prompt chunk encodings (A1111 option "Pad prompt/negative prompt");
        "none" leaves the lengths alone (A1111's default CFG then runs cond and uncond in separate passes).
        """
        if pad not in PAD_MODES:
            raise ValueError(f"unknown pad mode {pad!r}; valid: {', '.join(PAD_MODES)}")
        cond = self.encode(prompts, clip_skip, emphasis, sdxl_clip_l_skip=sdxl_clip_l_skip)
        uncond = self.encode(negatives, clip_skip, emphasis, is_negative=True, sdxl_clip_l_skip=sdxl_clip_l_skip)
        length = max(cond.cond.shape[1], uncond.cond.shape[1])
        if pad == "none" or cond.cond.shape[1] == uncond.cond.shape[1]:
            return cond, uncond
        filler = (
            self.encode([""], clip_skip, emphasis, sdxl_clip_l_skip=sdxl_clip_l_skip).cond if pad == "empty" else None
        )

        def padded(c: Conditioning) -> Conditioning:
            return Conditioning(_stack_pad(c.cond, length, filler), c.pooled, c.used_embeddings, c.token_counts)

        return padded(cond), padded(uncond)

    # ---- internals
    def _encode(self, texts: list[str], clip_skip: int, emphasis: str, is_negative: bool, l_skip: bool) -> Conditioning:
        index = self.embedding_index()
        per_text: dict[str, tuple[list[PromptChunk], int]] = {}
        for text in texts:
            if text not in per_text:
                per_text[text] = chunk_prompt(
                    text,
                    self.tokenizer,
                    emphasis=emphasis,
                    comma_padding_backtrack=self.comma_padding_backtrack,
                    embeddings=index,
                    parse=self.parse,
                )
        batch = [per_text[t][0] for t in texts]
        used: dict[str, Any] = {}
        for chunks in batch:
            for chunk in chunks:
                for fix in chunk.fixes:
                    used.setdefault(fix.embedding.name, fix.embedding)
        n_chunks = max(len(c) for c in batch)
        zs, pools = [], []
        with torch.no_grad():
            for i in range(n_chunks):
                row = [chunks[i] if i < len(chunks) else empty_chunk() for chunks in batch]
                feats = []
                for slot in self.slots:
                    z, pool = self._run_slot(slot, row, clip_skip, l_skip)
                    mult = torch.tensor([c.multipliers for c in row], dtype=torch.float32)
                    feats.append(apply_emphasis(z, mult, emphasis))
                    if i == 0 and pool is not None:
                        pools.append(pool)
                zs.append(torch.cat(feats, dim=-1) if len(feats) > 1 else feats[0])
        cond = torch.cat(zs, dim=1)
        pooled = torch.cat(pools, dim=-1) if pools else None
        if self.family in ("sdxl", "sdxl-refiner") and is_negative and all(t == "" for t in texts):
            cond = torch.zeros_like(cond)
            pooled = torch.zeros_like(pooled) if pooled is not None else None
        return Conditioning(cond, pooled, used, [per_text[t][1] for t in texts])

    def _run_slot(self, slot: _Slot, row: list[PromptChunk], clip_skip: int, l_skip: bool) -> tuple[torch.Tensor, Any]:
        model = slot.model
        device = execution_device(model)
        dtype = getattr(model, "dtype", None) or next(model.parameters()).dtype
        ids = torch.tensor([c.tokens for c in row], dtype=torch.long)
        if slot.pad_id != EOS_ID:  # OpenCLIP: everything after the first EOS becomes the pad id
            for b in range(ids.shape[0]):
                first = int((ids[b] == EOS_ID).nonzero()[0])
                ids[b, first + 1 :] = slot.pad_id
        fixes = [(b, f) for b, c in enumerate(row) for f in c.fixes]
        handle = None
        if fixes:

            def substitute(_module: Any, _args: Any, out: torch.Tensor) -> torch.Tensor:
                out = out.clone()
                for b, fix in fixes:
                    vec = fix.embedding.vectors_for(slot.part).to(out.device, out.dtype)
                    n = min(vec.shape[0], out.shape[1] - fix.offset - 1)
                    out[b, fix.offset : fix.offset + n] = vec[:n]
                return out

            handle = model.get_input_embeddings().register_forward_hook(substitute)
        try:
            output = model(input_ids=ids.to(device), output_hidden_states=True)
        finally:
            if handle is not None:
                handle.remove()
        z = clip_skip_layer(output, _text_model(model).final_layer_norm, clip_skip, slot.layer, l_skip)
        pooled = output.text_embeds if slot.pooled else None
        return z.to(dtype), pooled
