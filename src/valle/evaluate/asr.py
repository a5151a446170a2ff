"""Speech recognition for intelligibility scores (WER / CER).

`PocketSphinxASR` runs offline with the US-English acoustic model, dictionary and language model that
ship inside the pocketsphinx wheel: nothing is downloaded. It is a weak recogniser (about 20 % WER on
clean read speech, where the paper's HuBERT-CTC gets about 2 %), so its numbers rank systems against
each other and against the ground-truth row; they are not comparable with published tables.

`WhisperASR` is an optional, stronger recogniser over a local `openai-whisper` checkpoint file.

`PocketSphinxAligner` finds where each word of a known transcript is spoken (forced alignment), e.g.
to cut a recording at a word boundary for a continuation prompt.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from valle.audio import prepare_waveform
from valle.errors import ConfigError, MissingFileError
from valle.evaluate.text import normalize

log = logging.getLogger(__name__)

ASR_SAMPLE_RATE = 16_000
SPHINX_FRAMES_PER_SECOND = 100  # pocketsphinx's segment times are in 10 ms frames


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
        self.decoder = sphinx_decoder(loglevel, config)

    def transcribe(self, wav: torch.Tensor, sample_rate: int) -> str:
        """Recognise one utterance: wav [channels, samples] or [samples] float in [-1, 1] → lowercase text.

        Empty audio (a model that stopped at once) says nothing: "".
        """
        return decode_utterance(self.decoder, wav, sample_rate)


def sphinx_decoder(loglevel: str, config: Mapping[str, object]):
    """A pocketsphinx `Decoder` at 16 kHz with the wheel's en-us model, overridden by `config`.

    Raises:
        ImportError: pocketsphinx is not installed; the message names the package.
    """
    try:
        from pocketsphinx import Decoder
    except ImportError as error:
        raise ImportError("pocketsphinx is needed: `pip install pocketsphinx>=5`") from error
    return Decoder(samprate=ASR_SAMPLE_RATE, loglevel=loglevel, **config)


def sphinx_model_path(name: str) -> str:
    """A file of the en-us model inside the pocketsphinx wheel, e.g. "cmudict-en-us.dict"."""
    from pocketsphinx import get_model_path

    return str(get_model_path(f"en-us/{name}"))


def decode_utterance(decoder, wav: torch.Tensor, sample_rate: int) -> str:
    """Run `decoder`'s active search over one whole utterance → its best hypothesis ("" when none).

    Empty audio (a model that stopped at once) says nothing: "" without decoding.
    """
    pcm = to_int16_pcm(wav, sample_rate)
    if len(pcm) == 0:
        return ""
    # The feature front end carries state from one utterance into the next (measured: allphone decoded a
    # recording differently after another one), so a score would depend on the order items were scored in,
    # and parallel scoring could not match serial. A fresh front end per utterance costs ~0.1 ms.
    decoder.reinit_feat()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return "" if hyp is None else hyp.hypstr


@dataclass(frozen=True)
class WordTiming:
    """Where one word of a transcript is spoken."""

    word: str  # normalised, as `valle.evaluate.text.normalize` writes it
    start_seconds: float
    end_seconds: float


class PocketSphinxAligner:
    """Forced alignment with pocketsphinx's bundled en-us model: the words of a known transcript → times.

    A decoder of its own (alignment mode would otherwise replace `PocketSphinxASR`'s language model).

    Args:
        loglevel: pocketsphinx's own log threshold.
        **config: extra decoder options (e.g. `hmm=`, `dict=` for another language's model).
    """

    def __init__(self, loglevel: str = "FATAL", **config: str) -> None:
        self.decoder = sphinx_decoder(loglevel, config)

    def align(self, wav: torch.Tensor, sample_rate: int, text: str) -> list[WordTiming]:
        """Time every word of `text` in `wav` ([channels, samples] or [samples] float).

        Returns:
            One `WordTiming` per word of `normalize(text)`, in order (silences left out).

        Raises:
            ConfigError: a word that pocketsphinx's dictionary lacks, or audio it cannot align the text to.
        """
        words = normalize(text).split()
        unknown = [w for w in words if self.decoder.lookup_word(w) is None]
        if unknown or not words:
            reason = f"words outside pocketsphinx's dictionary: {', '.join(unknown)}" if words else "no words"
            raise ConfigError(f"cannot align {text!r}: {reason}")
        self.decoder.set_align_text(" ".join(words))
        self.decoder.start_utt()
        self.decoder.process_raw(to_int16_pcm(wav, sample_rate), full_utt=True)
        self.decoder.end_utt()
        timings = [
            WordTiming(
                re.sub(r"\(\d+\)$", "", s.word),
                s.start_frame / SPHINX_FRAMES_PER_SECOND,
                (s.end_frame + 1) / SPHINX_FRAMES_PER_SECOND,
            )
            for s in self.decoder.seg()
            if not s.word.startswith("<")
        ]  # <s>, </s>, <sil>
        if [t.word for t in timings] != words:
            raise ConfigError(
                f"cannot align {text!r} to the audio: pocketsphinx found "
                f"{' '.join(t.word for t in timings) or 'nothing'}"
            )
        return timings


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
            raise MissingFileError(
                f"{model_path}: no whisper checkpoint there; pass a local .pt file "
                "(model names are refused so that nothing is downloaded)"
            )
        self.model = whisper.load_model(str(model_path), device=device)
        self.language = language

    def transcribe(self, wav: torch.Tensor, sample_rate: int) -> str:
        """Recognise one utterance: wav [channels, samples] or [samples] float → text as whisper writes it."""
        audio = prepare_waveform(wav.detach().cpu(), sample_rate, ASR_SAMPLE_RATE).numpy()
        result = self.model.transcribe(audio, language=self.language, fp16=False)
        return str(result["text"]).strip()
