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


def test_wavlm_verifier_loads_a_local_folder_and_never_a_name(fixtures, tmp_path):
    """The real transformers WavLM x-vector architecture, small and at random init (no weights offline)."""
    transformers = pytest.importorskip("transformers")
    from valle.evaluate.sim import WavLMVerifier

    config = transformers.WavLMConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=16,
        tdnn_dim=(32, 32),
        tdnn_kernel=(5, 3),
        tdnn_dilation=(1, 2),
        xvector_output_dim=24,
    )
    torch.manual_seed(0)
    transformers.WavLMForXVector(config).save_pretrained(tmp_path / "wavlm")
    verifier = WavLMVerifier(tmp_path / "wavlm")
    wav, rate, _ = fixtures["LJ049-0124"]
    a = verifier.embed(wav, rate)
    assert a.shape == (24,) and float(a.norm()) == pytest.approx(1.0, abs=1e-4)
    assert verifier.similarity(a, verifier.embed(wav, rate)) == pytest.approx(1.0, abs=1e-5)
    assert verifier.wav_similarity(wav, rate, wav[..., : rate * 2], rate) < 1.0 - 1e-6
    with pytest.raises(ValueError, match="silent"):
        verifier.embed(torch.zeros(16_000), 16_000)
    with pytest.raises(FileNotFoundError, match="model names are refused"):
        WavLMVerifier("microsoft/wavlm-base-plus-sv")
