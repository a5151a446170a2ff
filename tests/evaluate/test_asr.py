from __future__ import annotations

import torch

from valle.evaluate.asr import to_int16_pcm
from valle.evaluate.text import cer, wer


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
