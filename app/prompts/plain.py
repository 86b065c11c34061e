"""A prompt without A1111 emphasis markup, for encoders that take plain text (an LLM encoder, FLUX's pooled
CLIP vector); pure, so the UI can show what such a model reads."""

from __future__ import annotations

import re


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
