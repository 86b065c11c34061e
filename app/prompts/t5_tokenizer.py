"""The T5 tokenizer of FLUX.1's and SD3.5's T5-XXL text encoder, built offline from the shipped vocabulary.

Real model files (``t5xxl_fp16.safetensors``) ship no tokenizer. The tokenizer is Google's T5 SentencePiece unigram
vocabulary (32,000 pieces + ``<pad>``/``</s>``/``<unk>`` + 100 sentinels = 32,100 ids) in the ``tokenizers`` JSON
format, shipped as ``app/configs/t5_tokenizer/tokenizer.json.gz`` (Apache-2.0, see the NOTICE there), and wrapped in
a ``transformers.T5Tokenizer`` so the diffusers pipelines take it as ``tokenizer_2`` / ``tokenizer_3``.

Ids: ``<pad>`` 0, ``</s>`` 1 (appended to every sequence), ``<unk>`` 2. T5-XXL's embedding table has 32,128 rows
(padded to a multiple of 128), so any encoder with at least ``T5_VOCAB_SIZE`` rows fits this tokenizer
(``check_vocab``); the tiny test encoders of ``app.devtools`` use the same table size.
"""

from __future__ import annotations

import copy
import gzip
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

TOKENIZER_FILE = Path(__file__).resolve().parent.parent / "configs" / "t5_tokenizer" / "tokenizer.json.gz"
#: ids the tokenizer produces (0 .. 32099)
T5_VOCAB_SIZE = 32100
#: rows of T5-XXL's embedding table (``shared.weight``): the vocabulary padded to a multiple of 128
T5_EMBEDDING_ROWS = 32128
PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
_lock = threading.Lock()


class T5VocabularyError(ValueError):
    """A text encoder whose embedding table cannot hold the T5 vocabulary."""


def read_tokenizer_json(path: Path = TOKENIZER_FILE) -> str:
    """The shipped ``tokenizer.json`` text (FileNotFoundError naming the file when the installation lacks it)."""
    if not path.is_file():
        raise FileNotFoundError(f"T5 tokenizer data not found: {path} (the installation is incomplete)")
    return gzip.decompress(path.read_bytes()).decode("utf-8")


@lru_cache(maxsize=1)
def _built() -> Any:
    from tokenizers import Tokenizer
    from transformers import T5Tokenizer

    backend = Tokenizer.from_str(read_tokenizer_json())
    if backend.get_vocab_size(with_added_tokens=True) != T5_VOCAB_SIZE:
        raise ValueError(f"T5 tokenizer data is damaged: {backend.get_vocab_size()} ids, expected {T5_VOCAB_SIZE}")
    tok = T5Tokenizer(tokenizer_object=backend, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                      extra_ids=0)
    tok.model_max_length = 512
    for token, expected in (("<pad>", PAD_ID), ("</s>", EOS_ID), ("<unk>", UNK_ID)):
        got = tok.convert_tokens_to_ids(token)
        if got != expected:
            raise ValueError(f"T5 tokenizer build error: {token} has id {got}, expected {expected}")
    return tok


def t5_tokenizer() -> Any:
    """A fresh copy of the T5 tokenizer (callers may change ``model_max_length``; the built one stays intact)."""
    with _lock:
        return copy.deepcopy(_built())


def check_vocab(vocab_rows: int, source: str = "text encoder") -> None:
    """Refuse an encoder whose embedding table is smaller than the T5 vocabulary (ids would index past it)."""
    if vocab_rows < T5_VOCAB_SIZE:
        raise T5VocabularyError(
            f"{source}: its embedding table has {vocab_rows} rows but the T5 tokenizer needs {T5_VOCAB_SIZE} "
            "(is this a T5 v1.1 / T5-XXL encoder such as t5xxl_fp16.safetensors?)"
        )
