"""Forced alignments → the codec frames each text id of an utterance says (docs/data.md, "Alignments").

A model with `model.monotonic_alignment` (VALL-E R, docs/training.md) is told, at every audio frame,
which text symbol that frame says. Training reads it from the shards (`durations.npy`: frames per text
id), which `prepare` computes from an alignment beside each audio file: a Praat TextGrid `{stem}.TextGrid`
with a "words" tier and, optionally, a "phones" tier (what the Montreal Forced Aligner writes; the
built-in corpus writes festival's own timings the same way).

The aligner's words and espeak-ng's words are matched in order. Within a word, espeak's phones share
the word's time by position: with the aligner's phones, espeak phone i of n takes the span of the
aligner's phones i·m/n .. (i+1)·m/n (linearly between their boundaries), without them an equal share.
A pause between two words goes to the punctuation after the first word when there is some (a comma's
pause), else to the word separator; the silence before the first word to `<bos>`, after the last to
`<eos>`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from difflib import SequenceMatcher

import numpy as np

from valle.text.phonemize import PUNCTUATION, WORD_SEPARATOR
from valle.utils.textgrid import Interval

# word-tier labels that mark silence rather than a word (Praat, MFA, festival, singing corpora)
SILENCE_LABELS = frozenset({"", "sil", "sp", "pau", "<sil>", "<eps>", "#", "ap", "silence"})
MARKERS_BEFORE = 2  # `<bos>`, `<lang>` come before the symbols in a text's ids; `<eos>` after them


def is_pause(symbol: str) -> bool:
    """Punctuation and the word separator: symbols that say no phone (they hold pauses)."""
    return symbol == WORD_SEPARATOR or all(char in PUNCTUATION for char in symbol)


END_TOLERANCE_S = 0.5  # how far a TextGrid's end may lie from the audio's, or END_TOLERANCE_RATIO of it
END_TOLERANCE_RATIO = 0.05
# Share of words the aligner and the transcript must have in common: aligners write numbers and
# abbreviations as words ("1963" → "nineteen sixty three"), a TextGrid of another sentence shares few.
MIN_WORD_AGREEMENT = 0.75


def alignment_mismatch(words: Sequence[Interval], transcript: str, audio_seconds: float) -> str | None:
    """Why a word tier does not belong to this audio and transcript, or None when it does.

    Checked before pairing, since `symbol_durations` pairs any words with any phones by count alone.
    """
    end = max((w.end for w in words), default=0.0)
    if abs(end - audio_seconds) > max(END_TOLERANCE_S, END_TOLERANCE_RATIO * audio_seconds):
        return f"its words end at {end:.2f} s but the audio lasts {audio_seconds:.2f} s"
    said = [x for w in words if not _silent(w) for x in _plain_words(w.text)]
    written = _plain_words(transcript)
    agreement = SequenceMatcher(None, said, written, autojunk=False).ratio()
    if agreement < MIN_WORD_AGREEMENT:
        return f"its words agree with the transcript's for {agreement:.0%} ({' '.join(said[:6])} …)"
    return None


def _plain_words(text: str) -> list[str]:
    """Lowercased words without punctuation ("Don't," → "dont"), as both sides are compared."""
    return re.sub(r"[^\w\s-]", "", text.lower()).replace("-", " ").replace("_", " ").split()


def symbol_durations(
    symbols: Sequence[str],
    words: Sequence[Interval],
    phones: Sequence[Interval] | None,
    frames: int,
    frame_rate: float,
) -> np.ndarray | None:
    """Frames per text id `[<bos>, <lang>, *symbols, <eos>]`, summing to `frames`.

    Args:
        symbols: the utterance's espeak symbols (`valle.text.phonemize`).
        words: the aligner's word tier (silences included or not).
        phones: its phone tier, or None.
        frames, frame_rate: the utterance's codec frames and frames per second.

    Returns:
        int32 [len(symbols) + 3], or None when there is nothing to pair (no words); the caller counts those.
    """
    spoken = [w for w in words if not _silent(w)]
    groups = _word_groups(symbols)
    real_phones = [p for p in phones or () if not _silent(p)]
    pairs = _match_words(groups, spoken, real_phones)
    if pairs is None:
        return None
    ends = np.zeros(len(symbols) + 3)
    ends[:MARKERS_BEFORE] = pairs[0][1].start
    for k, ((phone_ids, pause_ids), word) in enumerate(pairs):
        inside = [p for p in real_phones if word.start <= (p.start + p.end) / 2 < word.end]
        ends[[MARKERS_BEFORE + i for i in phone_ids]] = _phone_ends(word, inside, len(phone_ids))
        pause_end = pairs[k + 1][1].start if k + 1 < len(pairs) else word.end
        holders = [i for i in pause_ids if symbols[i] != WORD_SEPARATOR] or pause_ids
        ends[[MARKERS_BEFORE + i for i in pause_ids]] = word.end
        ends[[MARKERS_BEFORE + i for i in holders]] = np.linspace(word.end, pause_end, len(holders) + 1)[1:]
    first_phone = groups[0][0][0]
    ends[MARKERS_BEFORE : MARKERS_BEFORE + first_phone] = spoken[0].start  # opening quotes: no time
    boundaries = np.maximum.accumulate(np.clip(np.rint(ends * frame_rate), 0, frames)).astype(np.int64)
    boundaries[-1] = frames  # `<eos>` holds the silence after the last word, to the last frame
    return np.diff(boundaries, prepend=0).astype(np.int32)


Group = tuple[list[int], list[int]]  # a spoken word's phone symbols, and the pause symbols after it
MERGE_COST = 0.5  # per extra word or group in a match that is not one to one


def _match_words(
    groups: list[Group], words: Sequence[Interval], phones: Sequence[Interval]
) -> list[tuple[Group, Interval]] | None:
    """Pair espeak's words with the aligner's, in order, one to one where they agree.

    espeak-ng joins some words ("in the" → "ɪnðə") and may split others, so a dynamic programme also
    lets one espeak word take 2–3 aligner words (their span) and two espeak words share one aligner word
    (split by phone count), choosing the pairing whose phone counts agree best (the aligner's phones
    per word, or ~1 per letter without a phone tier). None when nothing pairs them (no words).
    """
    if not groups or not words:
        return None

    def size(word: Interval) -> float:
        inside = sum(word.start <= (p.start + p.end) / 2 < word.end for p in phones)
        return inside if phones else 0.9 * len(word.text)

    sizes = [size(w) for w in words]
    n, m = len(groups), len(words)
    cost = np.full((n + 1, m + 1), np.inf)
    move: dict[tuple[int, int], tuple[int, int]] = {}
    cost[0, 0] = 0.0
    for i in range(n + 1):
        for j in range(m + 1):
            if not np.isfinite(cost[i, j]):
                continue
            for di, dj in ((1, 1), (1, 2), (1, 3), (2, 1)):
                if i + di > n or j + dj > m:
                    continue
                said = sum(len(groups[g][0]) for g in range(i, i + di))
                step = abs(said - sum(sizes[j : j + dj])) + MERGE_COST * (di + dj - 2)
                if cost[i, j] + step < cost[i + di, j + dj]:
                    cost[i + di, j + dj] = cost[i, j] + step
                    move[(i + di, j + dj)] = (di, dj)
    if not np.isfinite(cost[n, m]):
        return None
    pairs: list[tuple[Group, Interval]] = []
    i, j = n, m
    while i or j:
        di, dj = move[(i, j)]
        span = Interval(words[j - dj].start, words[j - 1].end, "")
        if di == 1:
            pairs.append((groups[i - 1], span))
        else:  # two espeak words in one aligner word: split its time by their phone counts
            first, second = groups[i - 2], groups[i - 1]
            share = len(first[0]) / max(1, len(first[0]) + len(second[0]))
            cut = span.start + share * (span.end - span.start)
            pairs += [(second, Interval(cut, span.end, "")), (first, Interval(span.start, cut, ""))]
        i, j = i - di, j - dj
    return pairs[::-1]


def _silent(interval: Interval) -> bool:
    return interval.text.strip().lower() in SILENCE_LABELS


def _word_groups(symbols: Sequence[str]) -> list[tuple[list[int], list[int]]]:
    """Per spoken word: (its phones' indices, the pause symbols after it up to the next word's phones)."""
    groups: list[tuple[list[int], list[int]]] = []
    in_word = False
    for i, symbol in enumerate(symbols):
        if is_pause(symbol):
            in_word = in_word and symbol != WORD_SEPARATOR
            if groups:
                groups[-1][1].append(i)
        elif in_word and not groups[-1][1]:
            groups[-1][0].append(i)
        else:
            groups.append(([i], []))
            in_word = True
    return groups


def _phone_ends(word: Interval, inside: Sequence[Interval], n: int) -> np.ndarray:
    """End times of n espeak phones sharing `word`'s time, by position among the aligner's phones."""
    if not inside:
        return np.linspace(word.start, word.end, n + 1)[1:]
    edges = np.array([word.start] + [p.end for p in inside[:-1]] + [word.end])
    m = len(inside)
    return np.interp(np.arange(1, n + 1) * m / n, np.arange(m + 1), edges)


def uniform_durations(n_ids: int, frames: int) -> np.ndarray:
    """Frames per text id spread evenly: the stand-in for an utterance without an alignment."""
    return np.diff(np.rint(np.linspace(0, frames, n_ids + 1))).astype(np.int32)


def frame_symbols(durations: np.ndarray) -> np.ndarray:
    """Frames per text id → the text id index each frame says, int64 [sum(durations)]."""
    return np.repeat(np.arange(len(durations)), durations)
