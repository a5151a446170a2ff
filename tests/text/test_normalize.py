"""Text as people type it is said as a reader would say it (valle.text.normalize, through espeak-ng)."""

from __future__ import annotations

import pytest

from valle.text import phonemize
from valle.text.normalize import normalize


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("Dr. Smith and Mr. Jones", "Doctor Smith and Mister Jones"),
        ("It costs $3.50.", "It costs 3 dollars 50 cents."),
        ("He paid $1,000, then $1.", "He paid 1,000 dollars, then 1 dollar."),
        ("Only $0.99 or €20 or £5.00.", "Only 99 cents or 20 euros or 5 pounds."),
        (
            "A $1.5 million house, a $3bn fund",
            "A 1 point 5 million dollars house, a 3 billion dollars fund",
        ),
        ("We met at 3:30 p.m. and left at 5:00.", "We met at 3 30 PM and left at 5 o'clock."),
        ("Back by 9:05, e.g. after lunch", "Back by 9 oh 5, for example after lunch"),
        ("Music of the 1990s and the 60s", "Music of the 19 nineties and the sixties"),
        ("St. Louis is on Main St.", "Saint Louis is on Main Street."),
        ("Apples, pears, etc. Then we left.", "Apples, pears, et cetera. Then we left."),
        ("No. 5 said no. Fig. 2 agrees", "Number 5 said no. Figure 2 agrees"),
        (
            "J. K. Rowling, a.k.a. Jo, left the U.S. for the U.K.",
            "J K Rowling, also known as Jo, left the US for the UK.",
        ),
        ("A Ph.D. in the U.S.A. at 9 a.m.", "A PhD in the USA at 9 AM."),
        ("Meet at 10:30am or 9pm.", "Meet at 10 30 am or 9 pm."),
        (
            "Due 12/25/2024, 25/12/24 or 2024-12-01",
            "Due December 25th 2024, December 25th 24 or December 1st 2024",
        ),
        ("From Jan. 5 to Sept. 22nd", "From January 5 to September 22nd"),
        ("Add 1/2 cup, then 3/4, open 24/7", "Add 1 half cup, then 3 quarters, open 24 7"),
        (
            "Drive 10km at 60 mph; 1 kg at 20°C",
            "Drive 10 kilometers at 60 miles per hour; 1 kilogram at 20 degrees Celsius",
        ),
        ("Our #1 fan on Park Ave. and Abbey Rd.", "Our number 1 fan on Park Avenue and Abbey Road."),
        ("She lives on Abbey Rd. The house is red.", "She lives on Abbey Road. The house is red."),
        ("She scored 9.5 points, pi is 3.14.", "She scored 9 point 5 points, pi is 3 point 1 4."),
        (
            "It rose 10.5% to 1,000.25, or .5 more.",
            "It rose 10 point 5 percent to 1,000 point 2 5, or point 5 more.",
        ),
        (
            "Version 2.0.1 or v2.10 on 25.12.2024.",
            "Version 2 point 0 point 1 or version 2 point 10 on December 25th 2024.",
        ),
        ("Email me at john.doe@example.com please.", "Email me at john dot doe at example dot com please."),
        (
            "See https://example.com/path?q=1 or www.example.co.uk/faq.",
            "See example dot com slash path question mark q equals 1 or example dot co dot uk slash faq.",
        ),
        (
            "Docs at docs.python.org/3/, mail a_b@x.io.",
            "Docs at docs dot python dot org slash 3, mail a underscore b at x dot io.",
        ),
    ],
)
def test_what_people_type_is_written_out_as_it_is_said(typed, said):
    assert normalize(typed) == said


@pytest.mark.parametrize(
    "text",
    [
        "The ratio was 3:2 at 10:30:15.",
        "Call 555 1234.",
        "It is 7:75 now.",
        "I met Jan. Then we left.",  # a name, not a month: no number after it
        "On 9/11 it was 50/50, 13/13/2024.",  # not proper fractions, not a date
    ],
)
def test_what_is_not_a_price_time_or_abbreviation_is_left_alone(text):
    assert normalize(text) == text


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("**Bold text** and _italic_, `code`, ~~gone~~", "Bold text and italic, code, gone"),
        ("# A heading\n- an item\n* another\n```python\nprint\n```", "A heading an item another print"),
        ("See [the docs](https://example.com/docs) now", "See the docs now"),
        ("I love 🍕 so much 😺! Great👍🏽job ❤️", "I love so much! Great job"),
        ("Keep snake_case, 2*3*4 and a*b", "Keep snake_case, 2*3*4 and a*b"),
        ("Wait... what. . . now....", "Wait… what… now…"),
    ],
)
def test_markup_emoji_and_dots_are_not_read_out(typed, said):
    assert normalize(typed) == said
    assert normalize(typed, "de") == said  # not English only: espeak reads "*" and emoji in every language


def test_other_languages_pass_through():
    assert normalize("Dr. Müller zahlt $5 um 3:30.", "de") == "Dr. Müller zahlt $5 um 3:30."


def test_the_phonemes_are_those_of_the_words_a_reader_says():
    typed = phonemize("Dr. Smith paid $3.50 at 3:30 p.m. in the 1990s.")
    said = phonemize(
        "Doctor Smith paid three dollars fifty cents at three thirty PM in the nineteen nineties."
    )
    assert typed == said
    assert typed.count(".") == 1  # only the sentence's own end: no stop inside it


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("She scored 9.5 points in the final game.", "She scored nine point five points in the final game."),
        ("It is 0.5 now.", "It is zero point five now."),
        ("The rate rose 10.5% this year.", "The rate rose ten point five percent this year."),
        ("Version 2.0.1 released in Q3 2024.", "Version two point zero point one released in Q3 2024."),
        ("Email me at john.doe@example.com please.", "Email me at john dot doe at example dot com please."),
        ("**Bold text** and _italic_ 🍕😺", "Bold text and italic"),
        ("Wait... what now?", "Wait… what now?"),
    ],
)
def test_a_decimal_address_markup_or_dots_keep_every_word_and_no_inner_stop(typed, said):
    # phonemizer used to cut "9.5" sentences in two, and phonemize() kept the first: "She scored nine."
    assert phonemize(typed) == phonemize(said)
    assert phonemize(typed).count(".") <= 1
