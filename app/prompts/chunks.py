"""Packing a prompt into 75-token CLIP chunks with per-token weights (A1111 semantics, spec §1.4, §1.6).

Pure Python (no torch): the output is token ids, multipliers and the positions where textual-inversion
embeddings go. ``app.prompts.encode`` turns chunks into tensors.

Rules (spec §1.6):
1. The prompt is parsed into ``[text, weight]`` runs (emphasis "None" skips the parser: one run at 1.0).
2. Each run is tokenized on its own (cleaned, lower-cased, no BOS/EOS) and its tokens are appended with
   the run's weight; ``["BREAK", -1]`` closes the current chunk.
3. A full chunk (75 tokens) is closed; if the last comma is at most ``comma_padding_backtrack`` tokens
   from the end, the tokens after it move to the next chunk.
4. Embedding names are matched on token ids (longest first); an embedding never straddles chunks and
   occupies ``vectors`` placeholder slots (id 0) with the run's weight.
5. Closed chunks are padded with EOS to 75 and wrapped ``BOS … EOS`` (77 tokens, weight 1.0 on all padding).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.prompts.tokenizer import BOS_ID, COMMA_ID, EOS_ID, clip_tokenizer, tokenize

CHUNK_LENGTH = 75
EMBEDDING_PLACEHOLDER_ID = 0
EMPHASIS_MODES = ("Original", "No norm", "Ignore", "None")
DEFAULT_COMMA_BACKTRACK = 20

ParseFn = Callable[[str], list]


class HasVectors(Protocol):
    """Anything the chunker can place: it only needs the number of vectors it occupies."""

    vectors: int


@dataclass
class EmbeddingFix:
    """Embedding ``embedding`` occupies ``embedding.vectors`` slots starting at ``offset`` (index in the 77 tokens)."""

    offset: int
    embedding: Any


@dataclass
class PromptChunk:
    """One CLIP window: 77 token ids, 77 multipliers and the embeddings to substitute."""

    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)
    fixes: list[EmbeddingFix] = field(default_factory=list)


def empty_chunk() -> PromptChunk:
    """The all-padding chunk used for empty prompts and to even out batch chunk counts."""
    return PromptChunk([BOS_ID] + [EOS_ID] * (CHUNK_LENGTH + 1), [1.0] * (CHUNK_LENGTH + 2), [])


class EmbeddingIndex:
    """Token-id lookup of embedding names: keyed by the first id, candidates sorted longest first."""

    def __init__(self, entries: Iterable[tuple[Sequence[int], Any]] = ()) -> None:
        self._by_first: dict[int, list[tuple[tuple[int, ...], Any]]] = {}
        for ids, embedding in entries:
            ids = tuple(ids)
            if not ids:
                continue
            self._by_first.setdefault(ids[0], []).append((ids, embedding))
        for candidates in self._by_first.values():
            candidates.sort(key=lambda item: len(item[0]), reverse=True)

    @classmethod
    def build(cls, embeddings: Mapping[str, Any], tokenizer: Any = None) -> EmbeddingIndex:
        """Index ``{name: embedding}``; each name is tokenized with *tokenizer* like prompt text."""
        tok = tokenizer or clip_tokenizer()
        return cls((tokenize(name, tok), emb) for name, emb in embeddings.items())

    def __len__(self) -> int:
        return sum(len(c) for c in self._by_first.values())

    def find_at(self, tokens: Sequence[int], position: int) -> tuple[Any, int]:
        """The longest embedding whose ids start at ``tokens[position]``, and how many ids it spans."""
        for ids, embedding in self._by_first.get(tokens[position], ()):
            if tuple(tokens[position : position + len(ids)]) == ids:
                return embedding, len(ids)
        return None, 0


def parse_runs(text: str, emphasis: str = "Original", parse: ParseFn | None = None) -> list[list]:
    """``[text, weight]`` runs of *text*; emphasis "None" takes the line literally at weight 1.0."""
    if emphasis not in EMPHASIS_MODES:
        raise ValueError(f"unknown emphasis mode {emphasis!r}; valid: {', '.join(EMPHASIS_MODES)}")
    if emphasis == "None":
        return [[text, 1.0]]
    if parse is None:
        from app.prompts.syntax import parse_prompt_attention as parse
    return parse(text)


class _Packer:
    """State machine that fills chunks (A1111's tokenize_line loop)."""

    def __init__(self, backtrack: int) -> None:
        self.backtrack = backtrack
        self.chunks: list[PromptChunk] = []
        self.chunk = PromptChunk()
        self.last_comma = -1
        self.token_count = 0

    def close(self, is_last: bool = False) -> None:
        chunk = self.chunk
        self.token_count += len(chunk.tokens) if is_last else CHUNK_LENGTH
        missing = CHUNK_LENGTH - len(chunk.tokens)
        if missing > 0:
            chunk.tokens += [EOS_ID] * missing
            chunk.multipliers += [1.0] * missing
        chunk.tokens = [BOS_ID] + chunk.tokens + [EOS_ID]
        chunk.multipliers = [1.0] + chunk.multipliers + [1.0]
        for fix in chunk.fixes:
            fix.offset += 1  # account for BOS
        self.chunks.append(chunk)
        self.chunk = PromptChunk()
        self.last_comma = -1

    def _maybe_backtrack(self) -> None:
        chunk = self.chunk
        if not (self.backtrack and len(chunk.tokens) == CHUNK_LENGTH and self.last_comma != -1):
            return
        if len(chunk.tokens) - self.last_comma > self.backtrack:
            return
        cut = self.last_comma + 1
        moved_tokens, moved_mults = chunk.tokens[cut:], chunk.multipliers[cut:]
        moved_fixes = [f for f in chunk.fixes if f.offset >= cut]
        chunk.tokens, chunk.multipliers = chunk.tokens[:cut], chunk.multipliers[:cut]
        chunk.fixes = [f for f in chunk.fixes if f.offset < cut]
        self.close()
        self.chunk.tokens, self.chunk.multipliers = moved_tokens, moved_mults
        self.chunk.fixes = [EmbeddingFix(f.offset - cut, f.embedding) for f in moved_fixes]

    def add_run(self, tokens: Sequence[int], weight: float, index: EmbeddingIndex | None) -> None:
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == COMMA_ID:
                self.last_comma = len(self.chunk.tokens)
            else:
                self._maybe_backtrack()
            if len(self.chunk.tokens) == CHUNK_LENGTH:
                self.close()
            embedding, span = index.find_at(tokens, position) if index is not None else (None, 0)
            if embedding is None:
                self.chunk.tokens.append(token)
                self.chunk.multipliers.append(weight)
                position += 1
                continue
            n_vectors = int(embedding.vectors)
            if len(self.chunk.tokens) + n_vectors > CHUNK_LENGTH:
                self.close()
            self.chunk.fixes.append(EmbeddingFix(len(self.chunk.tokens), embedding))
            self.chunk.tokens += [EMBEDDING_PLACEHOLDER_ID] * n_vectors
            self.chunk.multipliers += [weight] * n_vectors
            position += span

    def finish(self) -> tuple[list[PromptChunk], int]:
        if self.chunk.tokens or not self.chunks:
            self.close(is_last=True)
        return self.chunks, self.token_count


def chunk_runs(
    runs: Sequence[Sequence],
    tokenizer: Any = None,
    *,
    comma_padding_backtrack: int = DEFAULT_COMMA_BACKTRACK,
    embeddings: EmbeddingIndex | None = None,
) -> tuple[list[PromptChunk], int]:
    """Pack parsed ``[text, weight]`` runs into chunks; returns ``(chunks, token_count)``."""
    tok = tokenizer or clip_tokenizer()
    packer = _Packer(comma_padding_backtrack)
    for text, weight in runs:
        if text == "BREAK" and weight == -1:
            packer.close()
            continue
        packer.add_run(tokenize(text, tok) if text else [], float(weight), embeddings)
    return packer.finish()


def chunk_prompt(
    text: str,
    tokenizer: Any = None,
    *,
    emphasis: str = "Original",
    comma_padding_backtrack: int = DEFAULT_COMMA_BACKTRACK,
    embeddings: EmbeddingIndex | None = None,
    parse: ParseFn | None = None,
) -> tuple[list[PromptChunk], int]:
    """Parse and pack one prompt text; returns ``(chunks, token_count)`` (spec §1.6)."""
    runs = parse_runs(text, emphasis, parse)
    return chunk_runs(runs, tokenizer, comma_padding_backtrack=comma_padding_backtrack, embeddings=embeddings)


def target_token_count(tokens: int) -> int:
    """The counter's limit: ``ceil(max(tokens, 1) / 75) * 75`` (spec §1.4)."""
    return math.ceil(max(tokens, 1) / CHUNK_LENGTH) * CHUNK_LENGTH


def _counter_texts(text: str, steps: int, is_negative: bool) -> list[str]:
    """Every text the counter measures: AND sub-prompts × schedule texts, extra-network tags removed."""
    try:
        from app.prompts import syntax

        if hasattr(syntax, "token_counter_texts"):
            return syntax.token_counter_texts(text, steps, not is_negative) or [text]
        text, _ = syntax.parse_extra_networks(text)
        flat = [text] if is_negative else syntax.get_multicond_prompt_list([text])[1]
        schedules = syntax.get_learned_conditioning_prompt_schedules(flat, steps)
    except Exception:  # A1111 falls back to the raw text on any parse problem
        schedules = [[[steps, text]]]
    return [t for schedule in schedules for _, t in schedule] or [text]


def token_count(
    text: str,
    tokenizer: Any = None,
    *,
    steps: int = 20,
    is_negative: bool = False,
    emphasis: str = "Original",
    comma_padding_backtrack: int = DEFAULT_COMMA_BACKTRACK,
    embeddings: EmbeddingIndex | None = None,
    parse: ParseFn | None = None,
) -> tuple[int, int]:
    """UI token counter ``(tokens, limit)``: the max over AND parts and schedule texts (spec §1.4)."""
    best = 0
    for variant in _counter_texts(text, max(int(steps), 1), is_negative):
        _, count = chunk_prompt(
            variant,
            tokenizer,
            emphasis=emphasis,
            comma_padding_backtrack=comma_padding_backtrack,
            embeddings=embeddings,
            parse=parse,
        )
        best = max(best, count)
    return best, target_token_count(best)
