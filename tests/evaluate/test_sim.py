from __future__ import annotations

import pytest
import torch

from tests.evaluate.speech import espeak


def test_same_speaker_is_more_similar_than_espeak(encoder, fixtures, tmp_path):
    a_wav, a_rate, _ = fixtures["LJ049-0124"]
    b_wav, b_rate, b_text = fixtures["LJ049-0185"]
    a = encoder.embed(a_wav, a_rate)
    b = encoder.embed(b_wav, b_rate)
    synthetic = encoder.embed(*espeak(b_text, tmp_path / "espeak.wav"))
    assert a.shape == (256,) and a.dtype == torch.float32
    assert float(a.norm()) == pytest.approx(1.0, abs=1e-4)
    same, other = encoder.similarity(a, b), encoder.similarity(a, synthetic)
    # measured: same speaker 0.868, espeak-ng 0.515
    assert same > 0.8
    assert same > other + 0.2


def test_silence_is_refused(encoder):
    with pytest.raises(ValueError, match="silent"):
        encoder.embed(torch.zeros(16_000), 16_000)
