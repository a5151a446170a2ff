"""Where a continued text picks up after its prompt's words.

A prompt with its transcript is continued (VALL-E's continuation mode): the model is given the whole
text, prompt words first, and its text pointer (monotonic alignment) starts on the first symbol the prompt
did not say. Counting the prompt's own phonemes is not enough: espeak-ng reads words differently in the
whole sentence than alone ("better after" links an r, "on the" and "to be" run together, "to" weakens),
so the count lands a symbol early or late on one continuation in twelve of the demo's. The prompt's
phonemes are aligned instead to the whole text's by edit distance, and the pointer starts after the
prefix they match best.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence


def continuation_start(whole: Sequence[int], said: Sequence[int], separators: Collection[int] = ()) -> int:
    """The index in `whole` of the first symbol after the prefix that `said` matches best.

    Args:
        whole: the whole text's symbol ids (the prompt's words, then the rest).
        said: the prompt's words' symbol ids, read on their own.
        separators: ids skipped where the match ends (word boundaries: the rest starts on its first sound).

    Returns:
        an index into `whole`: the prefix `whole[:index]` has the least edit distance to `said`, the
        longest such prefix on a tie, then any separators after it are skipped.
    """
    # row[j]: edit distance of the part of `said` read so far against whole[:j]
    row = list(range(len(whole) + 1))
    for symbol in said:
        previous, row = row, [row[0] + 1]
        for j, other in enumerate(whole):
            row.append(min(previous[j] + (symbol != other), previous[j + 1] + 1, row[j] + 1))
    best = min(row)
    end = max(j for j, distance in enumerate(row) if distance == best)
    while end < len(whole) and whole[end] in separators:
        end += 1
    return end
