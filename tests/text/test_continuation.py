"""Where a continued text picks up after its prompt's words, with espeak-ng's real readings."""

from __future__ import annotations

import pytest

from valle.text import phonemize
from valle.text.continuation import continuation_start


@pytest.mark.parametrize(
    ("said", "rest", "first"),
    [
        ("The garden gate was", "left open all night.", "l"),  # read alike alone and in the sentence
        ("I found a coin on", "the sidewalk.", "ð"),  # "on the" runs together: no boundary between them
        ("Is it going to", "be cold tomorrow?", "b"),  # "to" weakens before "be", and they run together
        ("He carried his daughter", "on his shoulders.", "ɹ"),  # the linking r between "daughter" and "on"
    ],
)
def test_the_rest_starts_on_its_own_first_sound(said, rest, first):
    whole = phonemize(f"{said} {rest}")
    start = continuation_start(whole, phonemize(said), separators={" "})
    assert whole[start] == first, (whole[:start], whole[start:])


def test_counting_the_prompts_phonemes_would_land_elsewhere():
    # the case that motivated the alignment: counted, the pointer skips "the"'s first sound
    said, rest = "I found a coin on", "the sidewalk."
    whole, alone = phonemize(f"{said} {rest}"), phonemize(said)
    assert whole[len(alone) + 1] != whole[continuation_start(whole, alone, {" "})]
    assert whole[continuation_start(whole, alone, {" "})] == "ð"


def test_ties_take_the_longer_prefix_and_an_empty_prompt_starts_at_the_beginning():
    assert continuation_start([1, 2, 3, 4], [1, 2, 9]) == 3  # "9" read as 3 (a substitution), not dropped
    assert continuation_start([1, 2, 0, 3], [1, 2], separators={0}) == 3
    assert continuation_start([1, 2, 3], []) == 0
    assert continuation_start([1, 2], [1, 2, 3, 4]) == 2  # a prompt longer than the text: all of it said
