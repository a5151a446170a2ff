"""Per-item edit counts, from which every corpus-level error rate (WER, CER, PER) is computed.

A corpus-level rate is total edits over total reference tokens. Keeping the counts per item lets the
bootstrap (`valle.evaluate.stats`) recompute that ratio of sums on each resample. The edit distance is
jiwer's, as in `valle.evaluate.text.wer` / `cer`: one implementation, so the figures agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jiwer

from valle.errors import ConfigError


@dataclass(frozen=True)
class EditCount:
    """Levenshtein edits (substitutions + deletions + insertions) of one hypothesis against its reference."""

    edits: int
    length: int  # reference tokens (words, characters or phones)


def word_edits(reference: str, hypothesis: str) -> EditCount:
    """Edits between two space-separated token strings (words, or phones joined by spaces).

    Raises:
        ConfigError: the reference has no tokens (a rate over nothing is undefined).
    """
    if not reference.split():
        raise ConfigError("an empty reference cannot be scored; check the transcript")
    out = jiwer.process_words(reference, hypothesis)
    return EditCount(out.substitutions + out.deletions + out.insertions, len(reference.split()))


def char_edits(reference: str, hypothesis: str) -> EditCount:
    """Edits between two strings, character by character (spaces count, as in `text.cer`)."""
    if not reference:
        raise ConfigError("an empty reference cannot be scored; check the transcript")
    out = jiwer.process_characters(reference, hypothesis)
    return EditCount(out.substitutions + out.deletions + out.insertions, len(reference))


def error_rate(counts: Sequence[EditCount]) -> float:
    """Total edits / total reference tokens, as a fraction (may exceed 1 with many insertions)."""
    length = sum(c.length for c in counts)
    if length == 0:
        raise ConfigError("no reference tokens to score")
    return sum(c.edits for c in counts) / length
