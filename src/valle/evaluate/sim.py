"""Speaker similarity: cosine between speaker embeddings.

`SpeakerEncoder` wraps resemblyzer's GE2E `VoiceEncoder`, whose weights ship inside the resemblyzer
wheel (nothing is downloaded). It stands in for the paper's WavLM-TDNN verifier: same idea, weaker
model, so SIM values are comparable between rows of one report but not with published numbers
(two recordings of one LJ Speech speaker score about 0.9 here against ~0.75 with WavLM-TDNN).
"""

from __future__ import annotations

from pathlib import Path

import torch

from valle.audio import prepare_waveform
from valle.errors import MissingFileError

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


class WavLMVerifier:
    """A WavLM x-vector speaker verifier (e.g. microsoft/wavlm-base-plus-sv) from a local folder; no download.

    Closer to the paper's WavLM-TDNN than resemblyzer. Same interface as `SpeakerEncoder`.

    Args:
        model_dir: a folder written by transformers' `save_pretrained` (config.json + weights), with or
            without its `preprocessor_config.json` (without: zero-mean unit-variance input, the model card's).
        device: torch device for the model.

    Raises:
        ImportError: transformers is not installed; FileNotFoundError: no model folder at `model_dir`.
    """

    def __init__(self, model_dir: str | Path, device: str = "cpu") -> None:
        try:
            from transformers import WavLMForXVector
        except ImportError as error:
            raise ImportError("WavLMVerifier needs `pip install transformers`") from error
        if not (Path(model_dir) / "config.json").is_file():
            raise MissingFileError(
                f"{model_dir}: no config.json; pass a local folder saved with save_pretrained "
                "(model names are refused so that nothing is downloaded)"
            )
        model = WavLMForXVector.from_pretrained(str(model_dir), local_files_only=True)
        # transformers wraps PreTrainedModel.to in a decorator that mypy reads as an unbound function
        self.model = model.to(device).eval()  # type: ignore[arg-type]
        self.device = device

    @torch.inference_mode()
    def embed(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """One utterance [channels, samples] or [samples] float → L2-normalised x-vector.

        Raises:
            ValueError: the audio is silent.
        """
        mono = prepare_waveform(wav.detach().cpu(), sample_rate, SIM_SAMPLE_RATE)
        if mono.numel() == 0 or float(mono.abs().max()) < SILENCE_PEAK:
            raise ValueError("silent audio; cannot embed a speaker")
        normalised = (mono - mono.mean()) / (mono.std() + 1e-7)  # Wav2Vec2FeatureExtractor(do_normalize=True)
        embedding = self.model(input_values=normalised[None].to(self.device)).embeddings[0].float().cpu()
        return torch.nn.functional.normalize(embedding, dim=0)

    similarity = SpeakerEncoder.similarity
    wav_similarity = SpeakerEncoder.wav_similarity
