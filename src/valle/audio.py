"""Reading audio files and bringing waveforms to a codec's format (mono, one sample rate)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from valle.errors import ConfigError

# What the corpus readers and the server take as audio files (libsndfile reads them all).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


class AudioError(ConfigError):
    """Audio that cannot be used: unreadable, empty, silent, or of the wrong length."""


def read_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """Read an audio file.

    Args:
        path: any format libsndfile reads (wav, flac, ogg, mp3 with libsndfile >= 1.1).

    Returns:
        (wav, sample_rate) with wav a float32 tensor [channels, samples] in [-1, 1].

    Raises:
        AudioError: the file is missing, unreadable, holds no samples or non-finite ones; the message
            names it.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # libsndfile raises several types; all mean "cannot read"
        raise AudioError(f"{path}: unreadable audio ({error}); convert it to wav or flac") from error
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no samples")
    if not np.isfinite(
        data
    ).all():  # float files can hold NaN or inf; a codec would turn them into noise codes
        raise AudioError(
            f"{path}: the file holds NaN or infinite samples (damaged, or a bad float conversion); "
            "re-export it as 16-bit PCM"
        )
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sample_rate)


def to_mono(wav: torch.Tensor) -> torch.Tensor:
    """Mix [channels, samples] (or [samples]) down to [samples]."""
    return wav if wav.dim() == 1 else wav.mean(dim=0)


def resample(wav: torch.Tensor, sample_rate: int, target_rate: int) -> torch.Tensor:
    """Resample along the last dimension; a no-op when the rates already agree."""
    if sample_rate == target_rate:
        return wav
    return AF.resample(wav, orig_freq=sample_rate, new_freq=target_rate)


def prepare_waveform(wav: torch.Tensor, sample_rate: int, target_rate: int) -> torch.Tensor:
    """Any channel count and rate → mono float32 [samples] at `target_rate`."""
    return resample(to_mono(wav.float()), sample_rate, target_rate)


def peak_dbfs(wav: torch.Tensor) -> float:
    """Peak level in dB relative to full scale (-inf for digital silence)."""
    peak = float(wav.abs().max()) if wav.numel() else 0.0
    return float("-inf") if peak == 0.0 else 20.0 * float(np.log10(peak))


def load_for_codec(path: str | Path, target_rate: int, silence_dbfs: float = -60.0) -> torch.Tensor:
    """Read a file and bring it to mono at `target_rate`, refusing silent audio.

    Raises:
        AudioError: unreadable, empty, or silent (peak below `silence_dbfs`).
    """
    wav, sample_rate = read_audio(path)
    wav = prepare_waveform(wav, sample_rate, target_rate)
    if peak_dbfs(wav) < silence_dbfs:
        raise AudioError(f"{path}: silent audio (peak below {silence_dbfs:g} dBFS)")
    return wav


def write_wav(path: str | Path, wav: torch.Tensor, sample_rate: int) -> None:
    """Write mono float audio as 16-bit PCM wav, atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    sf.write(
        str(tmp),
        to_mono(wav.detach().cpu().float()).clamp(-1, 1).numpy(),
        sample_rate,
        subtype="PCM_16",
        format="WAV",
    )
    tmp.replace(path)
