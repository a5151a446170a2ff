"""Long text → sentences, so each AR run stays within the lengths the model was trained on."""

from __future__ import annotations

import re

# Whitespace after sentence-ending punctuation, possibly followed by one closing quote or bracket.
_SENTENCE_END = re.compile(r"(?<=[.!?…;:])\s+|(?<=[.!?…;:][\"'”»)])\s+")


def split_sentences(text: str, max_chars: int = 200) -> list[str]:
    """Split after sentence-ending punctuation; a sentence longer than `max_chars` is split at commas,
    then at spaces, then anywhere. Short pieces are kept as they are (one word is a valid utterance)."""
    pieces: list[str] = []
    for sentence in (s.strip() for s in _SENTENCE_END.split(text.strip())):
        if sentence:
            pieces.extend(_split_long(sentence, max_chars))
    return pieces


def _split_long(sentence: str, max_chars: int, separators: tuple[str, ...] = (", ", " ")) -> list[str]:
    """Pieces of at most `max_chars`: at commas first, then at spaces, and a run of letters longer than
    that (no boundary left to respect) is cut every `max_chars` characters."""
    if len(sentence) <= max_chars:
        return [sentence]
    if not separators:
        return [sentence[i : i + max_chars] for i in range(0, len(sentence), max_chars)]
    pieces = []
    for part in _pack(sentence.split(separators[0]), separators[0], max_chars):
        pieces.extend(_split_long(part, max_chars, separators[1:]))
    return pieces


def _pack(parts: list[str], separator: str, max_chars: int) -> list[str]:
    """Join consecutive parts with `separator` as long as the result stays within `max_chars`."""
    out, current = [], ""
    for part in parts:
        candidate = f"{current}{separator}{part}" if current else part
        if current and len(candidate) > max_chars:
            out.append(current)
            current = part
        else:
            current = candidate
    return out + [current] if current else out
