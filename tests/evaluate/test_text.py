from __future__ import annotations

import pytest

from valle.evaluate.text import cer, normalize, number_to_words, wer


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Hello,   World!", "hello world"),
        ("It's the \"Commission's\" co-operative report.", "it's the commission's co operative report"),
        ("‘Quoted’ words — and dashes…", "quoted words and dashes"),
        (
            "In 1963, 42 men paid $1,250.",
            "in one thousand nine hundred sixty three forty two men paid one thousand two hundred fifty",
        ),
        ("pi is 3.14", "pi is three point one four"),
        ("  \n ", ""),
    ],
)
def test_normalize_lowercases_spells_numbers_and_drops_punctuation(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (13, "thirteen"),
        (40, "forty"),
        (99, "ninety nine"),
        (100, "one hundred"),
        (2005, "two thousand five"),
        (1_000_001, "one million one"),
    ],
)
def test_number_to_words(n, words):
    assert number_to_words(n) == words


def test_wer_is_corpus_level_edits_over_reference_words():
    # one insertion ("down") + one deletion ("the") over 6 reference words
    assert wer(["The cat sat.", "On the mat!"], ["the cat sat down", "on mat"]) == pytest.approx(2 / 6)


def test_cer_is_corpus_level_edits_over_reference_characters():
    # "abcd" → "abxd": one substitution; "ef" → "e": one deletion; 6 reference characters
    assert cer(["abcd", "ef"], ["abxd", "e"]) == pytest.approx(2 / 6)
    assert cer(["a b"], ["ab"]) == pytest.approx(1 / 3)  # the space counts


def test_casing_punctuation_and_digits_are_not_errors():
    assert wer(["Hello, World! 42"], ["hello world forty two"]) == 0.0
    assert cer(["Hello, World! 42"], ["hello world forty two"]) == 0.0


def test_an_empty_hypothesis_deletes_every_word():
    assert wer(["one two three"], [""]) == 1.0


def test_mismatched_or_empty_inputs_are_refused():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        wer(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty after normalisation"):
        cer(["..."], ["a"])
