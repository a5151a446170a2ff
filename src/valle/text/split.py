"""Long text → sentences, so each AR run stays within the lengths the model was trained on."""

from __future__ import annotations

import re

# Whitespace after sentence-ending punctuation, possibly followed by one closing quote or bracket.
_SENTENCE_END = re.compile(r"(?<=[.!?…;:])\s+|(?<=[.!?…;:][\"'”»)])\s+")


def split_sentences(text: str, max_chars: int = 200) -> list[str]:
    """Split after sentence-ending punctuation; a sentence longer than `max_chars` is split at commas,
    then at spaces. Short pieces are kept as they are (one word is a valid utterance)."""
    pieces: list[str] = []
    for sentence in (s.strip() for s in _SENTENCE_END.split(text.strip())):
        if sentence:
            pieces.extend(_split_long(sentence, max_chars))
    return pieces


def _split_long(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    for separator in (", ", " "):
        parts = sentence.split(separator)
        if len(parts) > 1:
            out, current = [], ""
            for part in parts:
                candidate = f"{current}{separator}{part}" if current else part
                if current and len(candidate) > max_chars:
                    out.append(current)
                    current = part
                else:
                    current = candidate
            return out + [current] if current else out
    return [sentence]
