"""Speech recognition for intelligibility scores (WER / CER).

`PocketSphinxASR` runs offline with the US-English acoustic model, dictionary and language model that
ship inside the pocketsphinx wheel: nothing is downloaded. It is a weak recogniser (about 20 % WER on
clean read speech, where the paper's HuBERT-CTC gets about 2 %), so its numbers rank systems against
each other and against the ground-truth row; they are not comparable with published tables.

`WhisperASR` is an optional, stronger recogniser over a local `openai-whisper` checkpoint file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from valle.audio import prepare_waveform

log = logging.getLogger(__name__)

ASR_SAMPLE_RATE = 16_000


def to_int16_pcm(wav: torch.Tensor, sample_rate: int) -> bytes:
    """Any [channels, samples] or [samples] float waveform → 16 kHz mono little-endian int16 bytes."""
    mono = prepare_waveform(wav.detach().cpu(), sample_rate, ASR_SAMPLE_RATE)
    return (mono.clamp(-1.0, 1.0) * 32767.0).round().to(torch.int16).numpy().astype("<i2").tobytes()


class PocketSphinxASR:
    """CMU PocketSphinx 5 with its bundled en-us model; one decoder, reused across calls.

    Args:
        loglevel: pocketsphinx's own log threshold; it logs a lot to stderr at INFO.
        **config: extra decoder options (e.g. `hmm=`, `lm=`, `dict=` for another language's model).

    Raises:
        ImportError: pocketsphinx is not installed; the message names the package.
    """

    def __init__(self, loglevel: str = "FATAL", **config: str) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as error:
            raise ImportError("PocketSphinxASR needs `pip install pocketsphinx>=5`") from error
        self.decoder = Decoder(samprate=ASR_SAMPLE_RATE, loglevel=loglevel, **config)

    def transcribe(self, wav: torch.Tensor, sample_rate: int) -> str:
        """Recognise one utterance: wav [channels, samples] or [samples] float in [-1, 1] → lowercase text.

        Empty audio (a model that stopped at once) says nothing: "".
        """
        pcm = to_int16_pcm(wav, sample_rate)
        if len(pcm) == 0:
            return ""
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return "" if hyp is None else hyp.hypstr


class WhisperASR:
    """openai-whisper from a local checkpoint file; never downloads.

    Args:
        model_path: a `.pt` file as whisper's `load_model` writes to its cache (e.g. `small.en.pt`).
        device: torch device for the model.
        language: decoding language, fixed so short clips are not misdetected.

    Raises:
        ImportError: openai-whisper is not installed.
        FileNotFoundError: `model_path` does not exist (a model name is refused on purpose).
    """

    def __init__(self, model_path: str | Path, device: str = "cpu", language: str = "en") -> None:
        try:
            import whisper
        except ImportError as error:
            raise ImportError("WhisperASR needs `pip install openai-whisper`") from error
        if not Path(model_path).is_file():
            raise FileNotFoundError(f"{model_path}: no whisper checkpoint there; pass a local .pt file "
                                    "(model names are refused so that nothing is downloaded)")
        self.model = whisper.load_model(str(model_path), device=device)
        self.language = language

    def transcribe(self, wav: torch.Tensor, sample_rate: int) -> str:
        """Recognise one utterance: wav [channels, samples] or [samples] float → text as whisper writes it."""
        audio = prepare_waveform(wav.detach().cpu(), sample_rate, ASR_SAMPLE_RATE).numpy()
        result = self.model.transcribe(audio, language=self.language, fp16=False)
        return str(result["text"]).strip()
