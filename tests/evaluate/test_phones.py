from __future__ import annotations

import pytest
import torch

from valle.errors import ConfigError

pytest.importorskip("pocketsphinx")
from valle.evaluate.phones import oov_words, per, pronunciations, text_to_phones  # noqa: E402


def test_reference_phones_come_from_the_cmu_dictionary_without_stress():
    assert text_to_phones("speech") == ["S", "P", "IY", "CH"]
    assert text_to_phones("Speech, 2 cats!") == ["S", "P", "IY", "CH", "T", "UW", "K", "AE", "T", "S"]
    assert text_to_phones("read") == ["R", "EH", "D"]  # the first pronunciation; "read(2)" is not a word
    assert "read(2)" not in pronunciations()
    assert not any(ch.isdigit() for phones in pronunciations().values() for p in phones for ch in p)


def test_a_word_outside_the_dictionary_is_named():
    assert oov_words("the zzxqv and qqzv sat") == ["zzxqv", "qqzv"]
    with pytest.raises(ConfigError, match="'zzxqv' not in pocketsphinx's cmudict-en-us.dict"):
        text_to_phones("the zzxqv sat")
    with pytest.raises(ConfigError, match="no words"):
        text_to_phones("...")


def test_per_is_corpus_level_phone_edits_over_reference_phones():
    # one substitution over 4 phones, one deletion + one insertion over 2 phones
    assert per([["S", "P", "IY", "CH"], ["AE", "T"]], [["S", "P", "IH", "CH"], ["T", "S"]]) == pytest.approx(
        3 / 6
    )
    assert per([["AE"]], [[]]) == 1.0
    with pytest.raises(ConfigError, match="2 references but 1 hypotheses"):
        per([["AE"], ["T"]], [["AE"]])


def test_recognized_phones_are_arpabet_without_silence(phone_recognizer, fixtures):
    wav, rate, _ = fixtures["LJ049-0124"]
    phones = phone_recognizer.recognize(wav, rate)
    arpabet = {p for phones in pronunciations().values() for p in phones}
    assert len(phones) > 15 and set(phones) <= arpabet  # no SIL, no +NSN+ fillers
    assert phone_recognizer.recognize(torch.zeros(0), 16_000) == []


def test_clean_speech_has_far_lower_per_than_noise_or_another_sentence(phone_recognizer, fixtures):
    wavs = [(wav, rate) for wav, rate, _ in fixtures.values()]
    refs = [text_to_phones(text) for _, _, text in fixtures.values()]
    hyps = [phone_recognizer.recognize(wav, rate) for wav, rate in wavs]
    torch.manual_seed(0)
    noise = [phone_recognizer.recognize(0.1 * torch.randn(3 * 16_000), 16_000) for _ in wavs]
    own, other = per(refs, hyps), per(refs, hyps[1:] + hyps[:1])  # each recording against another's text
    # measured: own 0.505, another sentence's audio 0.98, noise 1.0 (it decodes to silence and fillers)
    assert own < 0.65
    assert other > own + 0.2 and per(refs, noise) > own + 0.3


def test_festival_speech_reads_as_its_phones(phone_recognizer, synthetic):
    refs = [text_to_phones(text) for _, _, text in synthetic.values()]
    hyps = [phone_recognizer.recognize(wav, rate) for wav, rate, _ in synthetic.values()]
    assert per(refs, hyps) < 0.55  # measured on eight sentences: kal 0.37, slt 0.39
    assert per(refs, hyps[1:] + hyps[:1]) > per(refs, hyps) + 0.2
