from __future__ import annotations

import pytest
import torch

from tests.evaluate.speech import SENTENCES, espeak
from valle.errors import ConfigError
from valle.evaluate.sentence_id import jsgf_grammar

pytest.importorskip("pocketsphinx")
from valle.evaluate.sentence_id import SentenceIdentifier  # noqa: E402


def test_grammar_has_one_public_rule_of_alternatives():
    grammar = jsgf_grammar(["a cat", "the dog"])
    assert grammar.count("public") == 1 and "= ( a cat ) | ( the dog ) ;" in grammar


def test_each_lj_recording_is_identified_as_its_own_transcript(fixtures):
    texts = [text for _, _, text in fixtures.values()]
    identifier = SentenceIdentifier(texts + SENTENCES[:10])  # 14 candidates: chance 7 %
    # measured: 4 of 4, ~0.1 s per decode
    assert [identifier.identify(wav, rate) for wav, rate, _ in fixtures.values()] == list(range(len(texts)))


def test_festival_speech_is_identified_among_ten_similar_sentences(synthetic):
    candidates = SENTENCES[:10]  # the four spoken ones and six more of the same style
    identifier = SentenceIdentifier(candidates)
    identified = [identifier.identify(wav, rate) for wav, rate, _ in synthetic.values()]
    assert identified == [candidates.index(text) for _, _, text in synthetic.values()]


def test_a_second_search_without_fillers_identifies_espeak_speech(tmp_path):
    # With silence and noise allowed between words, most espeak-ng renderings end off the grammar.
    candidates = SENTENCES[:40]
    clips = [espeak(text, tmp_path / f"{i}.wav") for i, text in enumerate(candidates[:8])]
    correct = {
        retry: sum(
            SentenceIdentifier(candidates, retry=retry).identify(wav, rate) == i
            for i, (wav, rate) in enumerate(clips)
        )
        for retry in (False, True)
    }
    assert correct[True] >= 5 and correct[True] >= correct[False] + 2  # measured: 6 of 8 against 2 of 8


def test_noise_silence_and_empty_audio_identify_nothing(fixtures):
    identifier = SentenceIdentifier([text for _, _, text in fixtures.values()])
    torch.manual_seed(0)
    assert identifier.identify(0.1 * torch.randn(3 * 16_000), 16_000) is None
    assert identifier.identify(torch.zeros(16_000), 16_000) is None
    assert identifier.identify(torch.zeros(0), 16_000) is None


def test_candidates_are_normalised_and_indices_follow_the_input(fixtures):
    wav, rate, text = fixtures["LJ049-0124"]  # "In addition, the proposed legislation will insure."
    identifier = SentenceIdentifier(["Four hours of steady work faced us.", text.upper(), text.lower()])
    assert identifier.sentences[1] == "in addition the proposed legislation will insure"
    assert identifier.identify(wav, rate) == 1  # a duplicate after normalisation resolves to the first


def test_a_word_outside_the_dictionary_is_named_with_its_sentence():
    with pytest.raises(ConfigError, match=r"'zzxqv' not in pocketsphinx's dictionary") as error:
        SentenceIdentifier(["The birch canoe slid.", "A zzxqv sat here."])
    assert "A zzxqv sat here." in str(error.value)
    with pytest.raises(ConfigError, match="at least one"):
        SentenceIdentifier([])
