"""Text as people paste it (lists, headings, chat, addresses) is cut into the sentences a reader says."""

from __future__ import annotations

import pytest

from valle.text.normalize import normalize
from valle.text.split import split_sentences


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("1. First step\n2. Second step", ["First step", "Second step"]),
        ("Steps:\n1) Mix it. Then wait.\n2) Bake.", ["Steps:", "Mix it.", "Then wait.", "Bake."]),
        ("1. First step\n\n2. Second step", ["First step", "Second step"]),
        ("Buy:\n- milk\n* eggs\n• bread", ["Buy:", "- milk", "* eggs", "• bread"]),
        ("# Title\nSome text here\nthat wraps.", ["# Title", "Some text here\nthat wraps."]),
    ],
)
def test_a_line_starting_a_list_item_or_heading_starts_a_sentence_and_its_number_is_not_said(text, sentences):
    assert split_sentences(text) == sentences


def test_bullets_and_headings_left_in_a_sentence_are_not_said():
    said = [normalize(s) for s in split_sentences("# Title\n- milk\n* eggs\n• bread")]
    assert said == ["Title", "milk", "eggs", "bread"]


def test_a_number_alone_is_not_a_list():
    assert split_sentences("We won 3 to 1.\n2. That was the score.") == [
        "We won 3 to 1.",
        "2.",
        "That was the score.",
    ]


def test_dots_and_question_marks_inside_an_address_do_not_end_a_sentence():
    text = "Go to https://example.com/path?q=1 now. Mail john.doe@example.com please."
    assert split_sentences(text) == [
        "Go to https://example.com/path?q=1 now.",
        "Mail john.doe@example.com please.",
    ]


def test_a_piece_with_nothing_to_say_joins_the_sentence_before_it():
    # phonemize refuses a text with no letters: a chat message ending in emoji must still be spoken
    assert split_sentences("Great job! 🎉🎉") == ["Great job! 🎉🎉"]
    assert split_sentences("Hello. ... Bye.") == ["Hello. ...", "Bye."]
    assert split_sentences("Wait... What now?") == ["Wait...", "What now?"]
