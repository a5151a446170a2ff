"""Acoustic prompts: a reference recording (any format) or a saved voice preset → codes [L, Tp]."""

from __future__ import annotations

import logging
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from valle.audio import AudioError, prepare_waveform, read_audio
from valle.codecs.base import Codec, CodecInfo
from valle.errors import ConfigError, MissingFileError, one_line
from valle.text.phonemize import TextError, phonemize
from valle.utils.io import atomic_output

log = logging.getLogger(__name__)

VOICE_SUFFIX = ".npz"
LONG_CONTINUATION_SECONDS = 10.0  # a continuation prompt longer than this draws a warning
MIN_PROMPT_SECONDS = 0.5  # of speech: less gives the model too little of the voice
# trim_silence: a frame within FLOOR_MARGIN_DB of the noise floor is silence (a floor is the FLOOR_QUANTILE
# of frame levels above DIGITAL_SILENCE_DBFS), but the floor never puts the threshold above FLOOR_CAP_DB
FLOOR_MARGIN_DB = 10.0
FLOOR_QUANTILE = 0.05
FLOOR_CAP_DB = -20.0  # below the peak
DIGITAL_SILENCE_DBFS = -80.0
_VOICE_ARRAYS = ("codes", "text", "codec", "source")  # what save_voice writes
_MAKE_VOICE = "make one with python -m valle.voice make prompt=REF.wav out=VOICE.npz ckpt=MODEL.pt"


@dataclass
class Prompt:
    codes: torch.Tensor  # [L, Tp] int64
    text: str | None = None  # its transcript: given, the model continues the prompt (continuation mode)
    source: str = ""


def trim_silence(
    wav: torch.Tensor,
    sample_rate: int,
    threshold_db: float = -40.0,
    floor_margin_db: float = FLOOR_MARGIN_DB,
) -> torch.Tensor:
    """Drop leading and trailing 10 ms frames of silence.

    A frame is silence when its level is under `threshold_db` below the peak, or under `floor_margin_db`
    above the noise floor (the level of the quietest 5 % of the frames louder than digital silence). The
    floor's threshold is never above `FLOOR_CAP_DB` below the peak, so speech without pauses is not cut
    into. Each frame's mean is removed before it is measured: a DC offset or a slow drift is not sound.

    Args:
        wav: [samples] mono audio.
        sample_rate: its rate, Hz.

    Returns:
        [samples'] the slice of `wav` from its first frame of sound to its last (empty when all silent).
    """
    hop = max(1, sample_rate // 100)
    frames = wav[: len(wav) // hop * hop].view(-1, hop)
    if frames.numel() == 0:
        return wav
    frames = frames - frames.mean(dim=1, keepdim=True)  # a per-frame high-pass: DC and drift removed
    rms = frames.pow(2).mean(dim=1).sqrt()
    peak = float(frames.abs().max())
    threshold = peak * _gain(threshold_db)
    heard = rms[rms > _gain(DIGITAL_SILENCE_DBFS)]
    if len(heard):  # digital silence (or dither) is no noise floor: the peak's threshold drops it
        floor = float(torch.quantile(heard.float(), FLOOR_QUANTILE))
        threshold = max(threshold, min(floor * _gain(floor_margin_db), peak * _gain(FLOOR_CAP_DB)))
    loud = (rms > threshold).nonzero()
    if len(loud) == 0:
        return wav[:0]
    return wav[int(loud[0]) * hop : (int(loud[-1]) + 1) * hop]


def _gain(db: float) -> float:
    return 10 ** (db / 20)


def load_prompt(
    path: str | Path,
    codec: Codec,
    prompt_seconds: float | None = 3.0,
    text: str | None = None,
    min_seconds: float = MIN_PROMPT_SECONDS,
    trim: bool = True,
) -> Prompt:
    """Read a prompt: audio (mixed to mono, resampled, silence trimmed, cropped) or a voice preset.

    Args:
        path: an audio file, or a voice preset (.npz).
        codec: encodes the audio.
        prompt_seconds: crop the audio to this many seconds (None: keep it all), at least
            `min_seconds`. Not applied with `text`: a transcript describes the whole recording, and the
            model continues from its end.
        text: the recording's transcript (continuation mode), or None (cross-utterance mode).

    Raises:
        AudioError: missing, unreadable, silent or too short (the message names the file and the fix).
        ConfigError: `prompt_seconds` under `min_seconds`; a voice preset that is not one, was made
            with another codec, or has a transcript with nothing to phonemize (and no `text` to replace it).
    """
    check_prompt_seconds(prompt_seconds, min_seconds)  # refused even where unused (a preset, a transcript)
    path = Path(path)
    if path.suffix.lower() == VOICE_SUFFIX:
        prompt = load_voice(path, codec.info, text)
        if prompt.text and not text:
            _check_saved_transcript(prompt.text, path)
        return prompt
    wav = prompt_audio(path, codec.sample_rate, None if text else prompt_seconds, min_seconds, trim)
    if text and wav.numel() > LONG_CONTINUATION_SECONDS * codec.sample_rate:
        log.warning(
            "prompt=%s: %.1f s with its transcript, all kept in continuation mode; models train on "
            "3-6 s prompts, so a long one may sound worse: cut the recording and its transcript "
            "to a sentence or two",
            path,
            wav.numel() / codec.sample_rate,
        )
    return Prompt(codec.encode(wav, codec.sample_rate), text, str(path))


def prompt_audio(
    path: str | Path,
    sample_rate: int,
    prompt_seconds: float | None = 3.0,
    min_seconds: float = MIN_PROMPT_SECONDS,
    trim: bool = True,
) -> torch.Tensor:
    """The waveform [samples] a prompt file gives the model: mono, at `sample_rate`, trimmed, cropped to
    `prompt_seconds` (None: kept whole), and at least `min_seconds` long.

    Raises:
        AudioError: missing, unreadable, silent or too short (the message names the file and the fix).
        ConfigError: `prompt_seconds` under `min_seconds`.
    """
    check_prompt_seconds(prompt_seconds, min_seconds)
    wav, rate = read_audio(path)
    wav = prepare_waveform(wav, rate, sample_rate)
    if trim:
        wav = trim_silence(wav, sample_rate)
    if prompt_seconds is not None:
        wav = wav[: int(prompt_seconds * sample_rate)]
    if wav.numel() == 0 or float((wav - wav.mean()).abs().max()) < 1e-3:  # a DC offset is not sound
        raise AudioError(f"prompt={path}: the recording is silent; give a recording of the voice to imitate")
    seconds = wav.numel() / sample_rate
    if seconds < min_seconds:  # after the crop: what the model gets
        raise AudioError(
            f"prompt={path}: only {seconds:.2f} s of speech after trimming silence; give at "
            f"least {min_seconds:g} s (3 s or more works best)"
        )
    return wav


def check_prompt_seconds(prompt_seconds: float | None, min_seconds: float = MIN_PROMPT_SECONDS) -> None:
    """Refuse a crop length shorter than any prompt may be (0 and negatives included); None, keeping the
    whole recording, is valid.

    Raises:
        ConfigError: naming `prompt_seconds` and the values it takes.
    """
    if prompt_seconds is None:
        return
    is_number = isinstance(prompt_seconds, (int, float)) and not isinstance(prompt_seconds, bool)
    if not (is_number and math.isfinite(prompt_seconds) and prompt_seconds >= min_seconds):
        raise ConfigError(
            f"prompt_seconds={prompt_seconds}: give at least {min_seconds:g} seconds (3 or more works "
            "best), or prompt_seconds=null to keep the whole recording"
        )


def save_voice(path: str | Path, prompt: Prompt, info: CodecInfo) -> Path:
    """A voice preset: the prompt's codes, transcript and codec, so later runs skip encoding."""
    path = Path(path)
    if path.suffix != VOICE_SUFFIX:
        raise ConfigError(f"out={path}: a voice preset is a {VOICE_SUFFIX} file")
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:  # a handle: np.savez would append ".npz"
        np.savez(
            handle,
            codes=prompt.codes.numpy().astype(np.int16),
            text=np.array(prompt.text or ""),
            codec=np.array(repr(info.to_dict())),
            source=np.array(prompt.source),
        )
    return path


def load_voice(path: Path, info: CodecInfo, text: str | None = None) -> Prompt:
    """A voice preset written by `save_voice` → its prompt (`text`, if given, replaces its transcript).

    Raises:
        MissingFileError: no such file.
        ConfigError: not a voice preset (unreadable, or without a preset's arrays), or one made with
            another codec (the message names both).
    """
    arrays = _voice_arrays(path)
    saved = _saved_codec(arrays["codec"], path)
    info.check_compatible(saved, f"voice preset {path}")
    codes = torch.from_numpy(arrays["codes"].astype(np.int64))
    return Prompt(codes, text or str(arrays["text"]) or None, str(arrays["source"]))


def _check_saved_transcript(text: str, path: Path) -> None:
    """Refuse a preset whose transcript synthesis could not phonemize (one saved by `save_voice` directly,
    or made before `valle.voice make` checked it), naming the file: synthesis would name only the text."""
    try:
        phonemize(text)  # what it refuses in any language: no words, bytes that are not UTF-8
    except TextError as error:
        raise ConfigError(
            f"prompt={path}: the preset's transcript cannot be read ({one_line(error)}); pass "
            'prompt_text="the words the recording says" to replace it, or make the preset again with '
            "them as text= (or without text=)"
        ) from None


def _voice_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays `save_voice` writes, read from `path`; one error naming the file for anything else."""
    if not path.is_file():
        raise MissingFileError(f"prompt={path}: no such voice preset; {_MAKE_VOICE}")
    if not zipfile.is_zipfile(path):  # np.load would take it for a pickle, and say so
        raise ConfigError(f"prompt={path}: not a voice preset (not an .npz archive); {_MAKE_VOICE}")
    try:
        with np.load(path, allow_pickle=False) as archive:  # allow_pickle=False: a preset never runs code
            arrays = dict(archive)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ConfigError(
            f"prompt={path}: not a voice preset (numpy could not read it: {one_line(error)}); {_MAKE_VOICE}"
        ) from error
    missing = [key for key in _VOICE_ARRAYS if key not in arrays]
    if missing:
        raise ConfigError(
            f"prompt={path}: not a voice preset (it has no array {', '.join(missing)}); {_MAKE_VOICE}"
        )
    return arrays


def _saved_codec(record: np.ndarray, path: Path) -> CodecInfo:
    """The codec a preset's codes came from, as `save_voice` recorded it (a dict's repr)."""
    import ast

    try:
        return CodecInfo.from_dict(ast.literal_eval(str(record)))
    except (ValueError, SyntaxError, TypeError, KeyError) as error:
        raise ConfigError(
            f"prompt={path}: not a voice preset (its codec record {str(record)[:80]!r} is unreadable); "
            + _MAKE_VOICE
        ) from error
