"""Speaker similarity: cosine between speaker embeddings.

`SpeakerEncoder` wraps resemblyzer's GE2E `VoiceEncoder`, whose weights ship inside the resemblyzer
wheel (nothing is downloaded). It stands in for the paper's WavLM-TDNN verifier: same idea, weaker
model, so SIM values are comparable between rows of one report but not with published numbers
(two recordings of one LJ Speech speaker score about 0.9 here against ~0.75 with WavLM-TDNN).
"""

from __future__ import annotations

import torch

from valle.audio import prepare_waveform

SIM_SAMPLE_RATE = 16_000  # resemblyzer's sampling rate
SILENCE_PEAK = 1e-4  # -80 dBFS


class SpeakerEncoder:
    """resemblyzer's `VoiceEncoder` on CPU (or `device`): waveform → L2-normalised 256-d embedding.

    Raises:
        ImportError: resemblyzer is not installed; the message names the package.
    """

    def __init__(self, device: str = "cpu") -> None:
        try:
            from resemblyzer import VoiceEncoder, preprocess_wav
        except ImportError as error:
            raise ImportError("SpeakerEncoder needs `pip install resemblyzer`") from error
        self._preprocess = preprocess_wav
        self.encoder = VoiceEncoder(device=device, verbose=False)

    def embed(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """One utterance [channels, samples] or [samples] float → Tensor [256] float32, unit norm.

        The waveform goes to 16 kHz mono, then through resemblyzer's `preprocess_wav` (volume
        normalisation and trimming of long silences), then `embed_utterance`.

        Raises:
            ValueError: the audio is silent, or nothing voiced is left after preprocessing.
        """
        mono = prepare_waveform(wav.detach().cpu(), sample_rate, SIM_SAMPLE_RATE).numpy()
        if mono.size == 0 or float(abs(mono).max()) < SILENCE_PEAK:  # resemblyzer divides by its RMS
            raise ValueError("silent audio; cannot embed a speaker")
        processed = self._preprocess(mono)  # already at 16 kHz: no source_sr, no resampling
        if processed.size == 0:
            raise ValueError("no voiced audio left after trimming silence; cannot embed a speaker")
        return torch.from_numpy(self.encoder.embed_utterance(processed)).float()

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> float:
        """Cosine similarity of two embeddings from `embed` (any shape [256])."""
        return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))

    def wav_similarity(self, a: torch.Tensor, a_rate: int, b: torch.Tensor, b_rate: int) -> float:
        """Cosine similarity of two waveforms' speaker embeddings."""
        return self.similarity(self.embed(a, a_rate), self.embed(b, b_rate))
