"""The built-in sentences: words the offline instrument knows, distinct and varied, any prefix usable."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from valle.corpus.sentences import SENTENCES, all_sentences
from valle.errors import ConfigError
from valle.evaluate.text import normalize

# Function words left out when comparing two sentences for near-duplicates: sharing them means nothing.
FUNCTION_WORDS = set(
    """a an the of to in on at by for with from and or but so is was are were be been am do does did
    will would can could should have has had i you he she we they it me him her us them my your his our their
    its this that these those there here not""".split()
)


def shipped_dictionary() -> set[str]:
    """Every word of the pocketsphinx wheel's CMU dictionary (alternate pronunciations folded)."""
    pocketsphinx = pytest.importorskip("pocketsphinx")
    path = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
    with path.open(encoding="utf-8") as lines:
        return {re.sub(r"\(\d+\)$", "", line.split(maxsplit=1)[0]) for line in lines if line.strip()}


def test_there_are_enough_sentences_and_every_word_is_in_the_shipped_dictionary():
    assert len(SENTENCES) >= 480
    known = shipped_dictionary()
    unknown = sorted({word for s in SENTENCES for word in normalize(s).split() if word not in known})
    assert unknown == []


def test_sentences_are_short_plain_everyday_text():
    for sentence in SENTENCES:
        assert 5 <= len(normalize(sentence).split()) <= 12, sentence
        assert re.fullmatch(r"[A-Z][A-Za-z ,']*[a-z][.?]", sentence), (
            sentence
        )  # no digits, hyphens, names' dots
    questions = sum(s.endswith("?") for s in SENTENCES)
    assert 0.1 < questions / len(SENTENCES) < 0.3  # statements mostly, questions throughout


def test_sentences_are_distinct_and_no_two_are_near_duplicates():
    normalized = [normalize(s) for s in SENTENCES]
    assert len(set(normalized)) == len(SENTENCES)
    content = [set(s.split()) - FUNCTION_WORDS for s in normalized]
    close = [
        (SENTENCES[i], SENTENCES[j])
        for i, j in itertools.combinations(range(len(SENTENCES)), 2)
        if len(content[i] & content[j]) >= 0.5 * len(content[i] | content[j])
    ]
    assert close == []


def test_any_prefix_is_a_mixed_sample():
    # The demo holds out the last sentences of a prefix: every stretch must mix questions in.
    for start in range(0, len(SENTENCES) - 60, 20):
        window = SENTENCES[start : start + 60]
        assert sum(s.endswith("?") for s in window) >= 3, start


def test_all_sentences_returns_a_prefix_and_names_the_count_when_asked_for_too_many():
    every = all_sentences(len(SENTENCES))
    assert every == list(SENTENCES)
    for n in (0, 1, 60, 400, 460):
        assert all_sentences(n) == every[:n]
    with pytest.raises(ConfigError, match=f"there are {len(SENTENCES)} built-in sentences"):
        all_sentences(len(SENTENCES) + 1)
    with pytest.raises(ValueError):  # ConfigError is a ValueError for callers that catch those
        all_sentences(-1)


def test_a_seed_shuffles_the_same_sentences_the_same_way():
    shuffled = all_sentences(len(SENTENCES), seed=1)
    assert shuffled == all_sentences(len(SENTENCES), seed=1) != list(SENTENCES)
    assert sorted(shuffled) == sorted(SENTENCES)
    assert all_sentences(100, seed=1) == shuffled[:100]
