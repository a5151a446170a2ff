"""Reading audio files and bringing waveforms to a codec's format (mono, one sample rate)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from valle.errors import ConfigError

# What the corpus readers and the server take as audio files: the file formats libsndfile reads
# (`soundfile.available_formats()`) under their usual suffixes, the common ones first. Left out: suffixes
# that name other things as often (.mat, .htk features, .iff, .mpc Musepack) and instrument dumps (.xi, .sds).
AUDIO_SUFFIXES = (
    ".wav", ".flac", ".ogg", ".mp3", ".oga", ".opus", ".aiff", ".aif", ".aifc", ".caf", ".w64", ".rf64",
    ".wavex", ".au", ".snd", ".sph", ".nist", ".voc", ".sf", ".paf", ".avr", ".svx", ".sd2", ".wve", ".pvf",
)  # fmt: skip


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
    if wav.shape[-1] == 0:  # torchaudio's filter cannot run on nothing; nothing at any rate is nothing
        return wav.new_zeros(*wav.shape[:-1], 0)
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


# Sizes that streaming writers (sox or ffmpeg to a pipe) leave in a header they cannot rewrite: "unknown".
_UNKNOWN_CHUNK_SIZES = {0, 0x7FFFFFFF, 0xFFFFFFFF}


def wav_truncation(path: str | Path) -> str | None:
    """Why a WAV file is cut short, or None: its data chunk promises more bytes than the file holds
    (a copy or download that stopped). libsndfile reads such a file without complaint, up to where it
    ends, so its transcript would describe audio that is not there. Other formats, RF64 and sizes a
    streaming writer left unknown give None."""
    path = Path(path)
    with open(path, "rb") as handle:
        if handle.read(12)[:4] != b"RIFF":
            return None
        byte_rate = 0
        while len(header := handle.read(8)) == 8:
            chunk, size = header[:4], int.from_bytes(header[4:], "little")
            if chunk == b"fmt ":
                body = handle.read(size + size % 2)
                byte_rate = int.from_bytes(body[8:12], "little") if len(body) >= 12 else 0
            elif chunk == b"data":
                held = path.stat().st_size - handle.tell()
                if size in _UNKNOWN_CHUNK_SIZES or size <= held or not byte_rate:
                    return None
                return (
                    f"{path}: truncated: its header promises {size / byte_rate:.2f} s of audio, "
                    f"the file holds {held / byte_rate:.2f} s; copy it again from its source"
                )
            else:
                handle.seek(size + size % 2, 1)
    return None


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


# libsndfile's container and encoding for each file format `encode_audio` writes (pcm: raw samples)
_SOUNDFILE = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "opus": ("OGG", "OPUS"),
}
ENCODED_FORMATS = ("pcm", *_SOUNDFILE)
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def pcm16(audio: torch.Tensor) -> bytes:
    """float [-1, 1] → 16-bit signed little-endian PCM.

    In numpy: a server calls this on its event loop's thread, which must run no torch kernels (a torch
    kernel there would give that thread a pool of OpenMP workers; `valle.utils.threads` says why not).
    """
    return np.round(np.clip(audio.numpy(), -1, 1) * 32767).astype("<i2").tobytes()


def encode_audio(audio: torch.Tensor, sample_rate: int, file_format: str) -> bytes:
    """Mono float audio as a whole file of `file_format` (one of `ENCODED_FORMATS`: the server's response
    formats, infer's out= suffixes). Opus takes only a few rates, so other rates are resampled to the next
    one up (48 kHz at most); mp3 keeps the codec's rate."""
    if file_format == "pcm":
        return pcm16(audio)
    if file_format == "opus" and sample_rate not in OPUS_RATES:
        target = next((r for r in OPUS_RATES if r > sample_rate), OPUS_RATES[-1])
        audio, sample_rate = resample(audio, sample_rate, target), target
    container, encoding = _SOUNDFILE[file_format]
    buffer = io.BytesIO()
    data = np.clip(audio.numpy(), -1, 1).astype(np.float32)
    sf.write(buffer, data, sample_rate, format=container, subtype=encoding)
    return buffer.getvalue()
