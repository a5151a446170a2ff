from __future__ import annotations

import pytest
import torch

from valle.errors import ConfigError
from valle.evaluate.asr import to_int16_pcm
from valle.evaluate.text import cer, normalize, wer


def test_pcm_is_16khz_mono_int16():
    stereo_24k = torch.rand(2, 24_000) * 2 - 1
    assert len(to_int16_pcm(stereo_24k, 24_000)) == 16_000 * 2


def test_pocketsphinx_reads_the_lj_speech_fixtures(asr, fixtures):
    refs = [text for _, _, text in fixtures.values()]
    hyps = [asr.transcribe(wav, rate) for wav, rate, _ in fixtures.values()]
    # measured: WER 0.185, CER 0.093 with pocketsphinx 5.1.1's bundled en-us model
    assert wer(refs, hyps) < 0.4
    assert cer(refs, hyps) < 0.25


def test_silence_transcribes_to_a_string(asr):
    assert isinstance(asr.transcribe(torch.zeros(8_000), 16_000), str)


def test_empty_audio_says_nothing(asr):
    assert asr.transcribe(torch.zeros(0), 16_000) == ""


@pytest.fixture(scope="module")
def aligner():
    pytest.importorskip("pocketsphinx")
    from valle.evaluate.asr import PocketSphinxAligner

    return PocketSphinxAligner()


def test_aligner_times_every_word_of_the_transcript_in_order(aligner, fixtures):
    wav, rate, text = fixtures["LJ049-0124"]  # "In addition, the proposed legislation will insure." (3.4 s)
    timings = aligner.align(wav, rate, text)
    assert [t.word for t in timings] == normalize(text).split()
    assert all(t.start_seconds < t.end_seconds for t in timings)
    assert all(a.end_seconds <= b.start_seconds for a, b in zip(timings, timings[1:], strict=False))
    assert timings[-1].end_seconds <= wav.shape[-1] / rate + 0.02
    # a pause after "In addition,": measured 0.70 s to 1.09 s
    assert 0.5 < timings[1].end_seconds < 0.9 and 0.9 < timings[2].start_seconds < 1.3


def test_aligner_names_words_outside_its_dictionary(aligner, fixtures):
    wav, rate, _ = fixtures["LJ049-0124"]
    with pytest.raises(ConfigError, match="dictionary: zzxqv"):
        aligner.align(wav, rate, "in addition zzxqv")
