"""The tokenizers of the server process (the UI's token counters: CLIP, and Qwen3 for Z-Image), built with the
``tokenizers`` library alone: no transformers, no torch.

It is the same pipeline transformers' ``CLIPTokenizer`` runs (``app.prompts.tokenizer.clip_tokenizer``, used by the
prompt encoder on the generation side): NFC, whitespace collapsed, lowercase; CLIP's split pattern, byte-level
symbols; BPE with ``</w>`` word ends over the same vocabulary files (written once by
``app.prompts.tokenizer.ensure_tokenizer_files``). ``tests/prompts/test_count_tokenizers.py`` checks that both give the
same ids; the Qwen3 one is the pipeline of ``app.prompts.qwen_tokenizer`` (NFC, Qwen's split pattern, byte-level
BPE over the shipped merges, its special tokens) and is checked the same way. Calls look like the transformers tokenizer's where ``app.prompts.tokenizer.tokenize`` uses it:
``tok(text, add_special_tokens=False, ...).input_ids``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

#: CLIP's pre-tokenizer pattern (open_clip / transformers), special tokens first
SPLIT_PATTERN = (r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+")
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
#: Qwen2/Qwen3's pre-tokenizer pattern
QWEN_SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                      r"\s*[\r\n]+|\s+(?!\S)|\s+")


@dataclass(frozen=True)
class Encoded:
    """What a call returns (the field ``app.prompts.tokenizer.tokenize`` reads)."""

    input_ids: list[int]


class ClipCounterTokenizer:
    """CLIP token ids of a text, without BOS/EOS unless ``add_special_tokens``."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers

        bpe = models.BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt"), unk_token=EOS,
                                   continuing_subword_prefix="", end_of_word_suffix="</w>", fuse_unk=False)
        tok = Tokenizer(bpe)
        tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                               normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ])
        tok.add_special_tokens([AddedToken(BOS, normalized=False, special=True),
                                AddedToken(EOS, normalized=False, special=True)])
        self._tok = tok
        self.bos_token_id = int(tok.token_to_id(BOS))
        self.eos_token_id = int(tok.token_to_id(EOS))

    def __call__(self, text: str, add_special_tokens: bool = False, **_: Any) -> Encoded:
        ids = list(self._tok.encode(text, add_special_tokens=False).ids)
        if add_special_tokens:
            ids = [self.bos_token_id, *ids, self.eos_token_id]
        return Encoded(ids)


@lru_cache(maxsize=1)
def clip_counter_tokenizer() -> ClipCounterTokenizer:
    """The shared instance (the vocabulary files are written on first use)."""
    from app.prompts.tokenizer import ensure_tokenizer_files

    return ClipCounterTokenizer(ensure_tokenizer_files())


class QwenCounterTokenizer:
    """Qwen3 token ids of a text (what the Z-Image encoder's tokenizer gives, without a chat template)."""

    def __init__(self) -> None:
        from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers

        from app.prompts.qwen_tokenizer import _PLAIN_ADDED, SPECIAL_TOKENS, qwen_vocab, read_merges

        merges = read_merges()
        vocab = qwen_vocab(merges)
        vocab.update({t: len(vocab) + i for i, t in enumerate(SPECIAL_TOKENS)})
        pairs = [tuple(m.split(" ", 1)) for m in merges]
        tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, continuing_subword_prefix="", end_of_word_suffix="",
                                   fuse_unk=False, byte_fallback=False))
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ])
        tok.add_tokens([AddedToken(t, special=t not in _PLAIN_ADDED, normalized=False) for t in SPECIAL_TOKENS])
        self._tok = tok

    def __call__(self, text: str, **_: Any) -> Encoded:
        return Encoded(list(self._tok.encode(text, add_special_tokens=False).ids))


@lru_cache(maxsize=1)
def qwen_counter_tokenizer() -> QwenCounterTokenizer:
    """The shared instance (built from the shipped merges on first use, about a second)."""
    return QwenCounterTokenizer()
