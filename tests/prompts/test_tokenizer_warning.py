"""A prompt over 75 tokens is chunked by us, so transformers' "sequence length is longer than the specified maximum"
warning must not appear for our tokenization; the tokenizer's own warnings elsewhere stay untouched."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

LONG_PROMPT = ", ".join(["a photo of a cat on a red sofa"] * 20)  # about 180 tokens
TOO_LONG = "Token indices sequence length is longer than the specified maximum"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def transformers_log() -> Iterator[_Records]:
    """Records of transformers' tokenizer logger (it does not propagate to the root logger, so caplog misses it)."""
    logger = logging.getLogger("transformers.tokenization_utils_base")
    handler = _Records()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _fresh_tokenizer():
    """A new tokenizer object: transformers warns once per object, so a cached one could hide the warning."""
    from transformers import CLIPTokenizer

    from app.prompts.tokenizer import ensure_tokenizer_files

    return CLIPTokenizer.from_pretrained(str(ensure_tokenizer_files()), local_files_only=True)


def test_long_prompt_tokenizes_without_the_length_warning(transformers_log: _Records) -> None:
    from app.prompts.chunks import token_count
    from app.prompts.tokenizer import tokenize

    tok = _fresh_tokenizer()
    ids = tokenize(LONG_PROMPT, tok)
    assert len(ids) > 150  # really over the 77-token model maximum
    tokens, limit = token_count(LONG_PROMPT, tok)
    assert tokens > 150 and limit == 225  # three 75-token chunks: the chunking handles the length
    assert not [m for m in transformers_log.messages if TOO_LONG in m]


def test_other_tokenizer_warnings_are_not_hidden(transformers_log: _Records) -> None:
    """The logger and its level are left alone: the same call without our fix still warns (so the test above
    would catch a regression), and transformers' verbosity is unchanged."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    tok = _fresh_tokenizer()
    tok(LONG_PROMPT, add_special_tokens=False, truncation=False)
    assert [m for m in transformers_log.messages if TOO_LONG in m]
    assert hf_logging.get_verbosity() == level
