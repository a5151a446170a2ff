"""Acoustic prompts: a reference recording (any format) or a saved voice preset → codes [L, Tp]."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from valle.audio import AudioError, prepare_waveform, read_audio
from valle.codecs.base import Codec, CodecInfo
from valle.errors import ConfigError
from valle.utils.io import atomic_output

log = logging.getLogger(__name__)

VOICE_SUFFIX = ".npz"
LONG_CONTINUATION_SECONDS = 10.0  # a continuation prompt longer than this draws a warning


@dataclass
class Prompt:
    codes: torch.Tensor  # [L, Tp] int64
    text: str | None = None  # its transcript: given, the model continues the prompt (continuation mode)
    source: str = ""


def trim_silence(wav: torch.Tensor, sample_rate: int, threshold_db: float = -40.0) -> torch.Tensor:
    """Drop leading and trailing 10 ms frames quieter than `threshold_db` below the peak."""
    hop = max(1, sample_rate // 100)
    frames = wav[: len(wav) // hop * hop].view(-1, hop)
    if frames.numel() == 0:
        return wav
    rms = frames.pow(2).mean(dim=1).sqrt()
    loud = (20 * torch.log10(rms / wav.abs().max().clamp(min=1e-9) + 1e-12) > threshold_db).nonzero()
    if len(loud) == 0:
        return wav[:0]
    return wav[int(loud[0]) * hop : (int(loud[-1]) + 1) * hop]


def load_prompt(
    path: str | Path,
    codec: Codec,
    prompt_seconds: float | None = 3.0,
    text: str | None = None,
    min_seconds: float = 0.5,
    trim: bool = True,
) -> Prompt:
    """Read a prompt: audio (mixed to mono, resampled, silence trimmed, cropped) or a voice preset.

    Args:
        path: an audio file, or a voice preset (.npz).
        codec: encodes the audio.
        prompt_seconds: crop the audio to this many seconds (None: keep it all). Not applied with
            `text`: a transcript describes the whole recording, and the model continues from its end.
        text: the recording's transcript (continuation mode), or None (cross-utterance mode).

    Raises:
        AudioError: missing, unreadable, silent or too short (the message names the file and the fix).
        ValueError: a voice preset made with another codec.
    """
    path = Path(path)
    if path.suffix == VOICE_SUFFIX:
        return load_voice(path, codec.info, text)
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
    min_seconds: float = 0.5,
    trim: bool = True,
) -> torch.Tensor:
    """The waveform [samples] a prompt file gives the model: mono, at `sample_rate`, trimmed, cropped.

    Raises:
        AudioError: missing, unreadable, silent or too short (the message names the file and the fix).
    """
    wav, rate = read_audio(path)
    wav = prepare_waveform(wav, rate, sample_rate)
    if trim:
        wav = trim_silence(wav, sample_rate)
    if wav.numel() == 0 or float(wav.abs().max()) < 1e-3:
        raise AudioError(f"prompt={path}: the recording is silent; give a recording of the voice to imitate")
    seconds = wav.numel() / sample_rate
    if seconds < min_seconds:
        raise AudioError(
            f"prompt={path}: only {seconds:.2f} s of speech after trimming silence; give at "
            f"least {min_seconds:g} s (3 s or more works best)"
        )
    return wav[: int(prompt_seconds * sample_rate)] if prompt_seconds else wav


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
    import ast

    with np.load(path, allow_pickle=False) as data:
        saved = CodecInfo.from_dict(ast.literal_eval(str(data["codec"])))
        info.check_compatible(saved, f"voice preset {path}")
        stored_text = str(data["text"]) or None
        return Prompt(
            torch.from_numpy(data["codes"].astype(np.int64)), text or stored_text, str(data["source"])
        )
