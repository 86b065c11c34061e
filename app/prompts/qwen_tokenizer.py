"""The Qwen3 tokenizer of Z-Image's text encoder, built offline, and the tiny byte-level one of the test models.

Real model files ship no tokenizer. The real one is built from ``app/configs/qwen3_tokenizer/merges.txt.gz`` (the Qwen
BPE merges, Apache-2.0, see the NOTICE there): the regular vocabulary is the 256 byte symbols followed by one token per
merge, in order (ids 0-151642), then the special tokens of ``SPECIAL_TOKENS`` (ids 151643-151668), exactly as in the
Qwen2.5/Qwen3 ``tokenizer.json``. Both tokenizers are ``transformers.Qwen2Tokenizer`` objects carrying
``CHAT_TEMPLATE``, a Qwen3-style chat template that accepts ``enable_thinking`` (diffusers' ``ZImagePipeline`` calls
``apply_chat_template(..., add_generation_prompt=True, enable_thinking=True)``).

Which tokenizer a text encoder gets is decided by its embedding table only (``tokenizer_for_vocab``): at least
``QWEN_VOCAB_SIZE`` rows (the real 151,936-row table) -> the real tokenizer; exactly ``TINY_VOCAB_SIZE`` rows -> the
tiny byte-level tokenizer of ``app.devtools.tiny_models`` (256 byte symbols + 5 special tokens, no merges); anything
else is refused with a clear error, since ids would mean nothing to the model.
"""

from __future__ import annotations

import copy
import gzip
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.prompts.tokenizer import _bytes_to_unicode

MERGES_FILE = Path(__file__).resolve().parent.parent / "configs" / "qwen3_tokenizer" / "merges.txt.gz"
N_REGULAR = 151643
#: the special tokens after the regular vocabulary, in id order (151643 ...), as in Qwen2.5/Qwen3
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
    "<think>", "</think>",
)
#: special tokens that are *not* split off as control tokens (Qwen marks them ``special: false``)
_PLAIN_ADDED = frozenset(SPECIAL_TOKENS[14:])
#: the smallest embedding table that the real tokenizer fits (Qwen3-4B has 151,936 rows, padded)
QWEN_VOCAB_SIZE = N_REGULAR + len(SPECIAL_TOKENS)
TINY_SPECIAL_TOKENS: tuple[str, ...] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")
TINY_VOCAB_SIZE = 256 + len(TINY_SPECIAL_TOKENS)
PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"

#: Qwen3's chat template for text messages (written for Atelier): no default system prompt; with
#: ``add_generation_prompt`` the assistant turn is opened, and ``enable_thinking=False`` adds the empty think block.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)
_lock = threading.Lock()


class TokenizerMismatchError(ValueError):
    """A text encoder whose vocabulary size fits no tokenizer we have."""


def _byte_symbols() -> list[str]:
    """The 256 byte symbols in Qwen's id order (GPT-2's printable-first order: ids 0-255)."""
    return list(_bytes_to_unicode().values())


def read_merges(path: Path = MERGES_FILE) -> list[str]:
    """The merge lines (``"a b"``) of the shipped file, without the version header."""
    if not path.is_file():
        raise FileNotFoundError(f"Qwen tokenizer data not found: {path} (the installation is incomplete)")
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    return [ln for ln in lines if ln and not ln.startswith("#version")]


def qwen_vocab(merges: list[str]) -> dict[str, int]:
    """The regular vocabulary: byte symbols, then each merge's result in merge order."""
    vocab = {sym: i for i, sym in enumerate(_byte_symbols())}
    for line in merges:
        left, right = line.split(" ", 1)
        vocab[left + right] = len(vocab)
    if len(vocab) != N_REGULAR:
        raise ValueError(f"Qwen tokenizer data is damaged: {len(vocab)} regular tokens, expected {N_REGULAR}")
    return vocab


def _build(vocab: dict[str, int], merges: list[str], specials: tuple[str, ...]) -> Any:
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    pairs = [tuple(m.split(" ", 1)) for m in merges]
    full = dict(vocab)
    full.update({t: len(vocab) + i for i, t in enumerate(specials)})  # fixed ids, whatever order they get added in
    tok = Qwen2Tokenizer(vocab=full, merges=pairs, unk_token=None, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN,
                         bos_token=None, add_prefix_space=False)
    added = [AddedToken(t, special=t not in _PLAIN_ADDED, normalized=False) for t in specials]
    tok.add_tokens(added)
    control = [t for t in specials if t not in _PLAIN_ADDED and t not in (PAD_TOKEN, EOS_TOKEN)]
    tok.add_special_tokens({"additional_special_tokens": control})
    tok.model_max_length = 131072
    tok.chat_template = CHAT_TEMPLATE
    for i, t in enumerate(specials):
        got = tok.convert_tokens_to_ids(t)
        if got != len(vocab) + i:
            raise ValueError(f"tokenizer build error: {t} has id {got}, expected {len(vocab) + i}")
    return tok


@lru_cache(maxsize=1)
def _real() -> Any:
    merges = read_merges()
    return _build(qwen_vocab(merges), merges, SPECIAL_TOKENS)


@lru_cache(maxsize=1)
def _tiny() -> Any:
    vocab = {sym: i for i, sym in enumerate(_byte_symbols())}
    return _build(vocab, [], TINY_SPECIAL_TOKENS)


def qwen3_tokenizer() -> Any:
    """A private copy of the real Qwen3 tokenizer (built once per process, about a second)."""
    with _lock:
        return copy.deepcopy(_real())


def tiny_qwen_tokenizer() -> Any:
    """A private copy of the tiny byte-level tokenizer of the test models (``TINY_VOCAB_SIZE`` tokens)."""
    with _lock:
        return copy.deepcopy(_tiny())


def tokenizer_for_vocab(vocab_size: int, source: str = "text encoder") -> Any:
    """The tokenizer for a Qwen3 text encoder with *vocab_size* embedding rows (see the module doc for the rule)."""
    if vocab_size >= QWEN_VOCAB_SIZE:
        return qwen3_tokenizer()
    if vocab_size == TINY_VOCAB_SIZE:
        return tiny_qwen_tokenizer()
    raise TokenizerMismatchError(
        f"{source}: a vocabulary of {vocab_size} tokens matches no known tokenizer (the Qwen3 text encoder has "
        f"{QWEN_VOCAB_SIZE} or more, e.g. 151936; the tiny test encoder {TINY_VOCAB_SIZE})"
    )
