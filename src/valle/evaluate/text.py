"""Text normalisation for scoring, and corpus-level WER / CER.

Both the reference transcript and the ASR hypothesis go through `normalize` before scoring, so
casing, punctuation and digit spelling do not count as errors. Numbers are spelled out as English
cardinals ("42" → "forty two"); years, ordinals and currency are not special-cased, which costs a
word or two on text full of dates but keeps the rule simple and identical on both sides.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jiwer

from valle.errors import ConfigError

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))


def number_to_words(n: int) -> str:
    """A non-negative integer as English cardinal words: 1905 → 'one thousand nine hundred five'."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for scale, name in _SCALES:
        if n >= scale:
            head, rest = divmod(n, scale)
            return f"{number_to_words(head)} {name}" + ("" if rest == 0 else " " + number_to_words(rest))
    raise AssertionError("unreachable")


def _spell_numbers(text: str) -> str:
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 1,000 → 1000
    text = re.sub(r"(\d+)\.(\d+)", lambda m: f"{m[1]} point {' '.join(m[2])}", text)
    return re.sub(r"\d+", lambda m: f" {number_to_words(int(m[0]))} ", text)


def normalize(text: str) -> str:
    """Text as scored: lowercase, digits spelled out, punctuation gone, single spaces.

    Apostrophes inside words stay ("don't" remains one word, as ASR vocabularies spell it);
    hyphens and every other punctuation mark become spaces.
    """
    text = _spell_numbers(text.lower().replace("’", "'"))
    text = re.sub(r"[^\w\s']|_", " ", text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)  # quotes, not apostrophes
    return " ".join(text.split())


def _normalized(refs: Sequence[str], hyps: Sequence[str]) -> tuple[list[str], list[str]]:
    if len(refs) != len(hyps):
        raise ConfigError(f"{len(refs)} references but {len(hyps)} hypotheses; pass one of each per item")
    if not refs:
        raise ConfigError("no references to score")
    refs_n = [normalize(r) for r in refs]
    if not all(refs_n):
        raise ConfigError("a reference transcript is empty after normalisation; check the .txt files")
    return refs_n, [normalize(h) for h in hyps]


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus-level word error rate: total edits over total reference words (a fraction, not %)."""
    refs_n, hyps_n = _normalized(refs, hyps)
    return float(jiwer.wer(refs_n, hyps_n))


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus-level character error rate (spaces count as characters), as a fraction."""
    refs_n, hyps_n = _normalized(refs, hyps)
    return float(jiwer.cer(refs_n, hyps_n))
