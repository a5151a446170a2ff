"""The codebooks file: RVQ codebooks over normalised log-mel frames, the settings they were fit with, and
how a codec setting (`weights`) names them: a file, "random", or the codebooks a model file carries."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from valle.codecs.weights import (
    PRETRAINED,
    RANDOM,
    Weights,
    WeightsError,
    seeded,
    tensors_identity,
    warn_random,
    weights_identity,
)
from valle.errors import ConfigError, MissingFileError
from valle.utils.io import atomic_torch_save

log = logging.getLogger(__name__)


FORMAT_VERSION = 1  # of the codebooks file
MAX_CODEBOOK_SIZE = 2**15  # codes are stored as int16 on disk
# The file's settings that must equal the codec's (n_levels and codebook_size come from the tensor's shape).
FILE_SETTINGS = ("sample_rate", "hop_length", "n_mels", "n_fft", "n_levels", "codebook_size")
CODEBOOKS_FILE = "codebooks.pt"  # prepare.py writes it beside the shards it encodes with them


@dataclass
class MelCodebooks:
    """RVQ codebooks over normalised log-mel frames, and the settings they were fit with.

    Attributes:
        codebooks: [n_levels, codebook_size, n_mels] float32, in normalised units; level 0 is the coarsest.
        mean: [n_mels] per-bin mean of the log-mel frames they were fit on.
        std: [n_mels] per-bin standard deviation of the same.
    """

    codebooks: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    sample_rate: int
    hop_length: int
    n_mels: int
    n_fft: int

    @property
    def n_levels(self) -> int:
        return self.codebooks.shape[0]

    @property
    def codebook_size(self) -> int:
        return self.codebooks.shape[1]

    def settings(self) -> dict[str, int]:
        """The codec settings these codebooks fit: the keys of `FILE_SETTINGS`."""
        return {key: int(getattr(self, key)) for key in FILE_SETTINGS}

    def identity(self) -> str:
        """The weights identity of these codebooks (a hash of their values; see `CodecInfo.weights`).

        Of the values, not of a file: a model carries its codebooks as tensors, and must match the data's.
        """
        state = self.state()
        return tensors_identity({key: state[key] for key in ("codebooks", "mean", "std")})

    def state(self) -> dict:
        """Plain tensors and ints (what the codebooks file holds; checkpoints and exports carry it too)."""
        return {
            "format_version": FORMAT_VERSION,
            "settings": self.settings(),
            "codebooks": self.codebooks.detach().float().cpu().contiguous(),
            "mean": self.mean.detach().float().cpu().contiguous(),
            "std": self.std.detach().float().cpu().contiguous(),
        }

    @classmethod
    def from_state(cls, data: dict, source: str) -> MelCodebooks:
        """Codebooks from `state()`'s dict; `source` (a file, "the model file") is named in errors.

        Raises:
            WeightsError: not a mel codebooks state, or another format version.
        """
        try:
            settings = {
                key: int(data["settings"][key]) for key in ("sample_rate", "hop_length", "n_mels", "n_fft")
            }
            books = cls(data["codebooks"].float(), data["mean"].float(), data["std"].float(), **settings)
        except Exception as error:
            raise WeightsError(
                f"{source}: not a mel codebooks file ({type(error).__name__}: {error}); "
                "write them with save_codebooks"
            ) from error
        if data.get("format_version") != FORMAT_VERSION:
            raise WeightsError(
                f"{source}: mel codebooks format {data.get('format_version')}, expected {FORMAT_VERSION}"
            )
        return books


def save_codebooks(path: str | os.PathLike, codebooks: MelCodebooks) -> Path:
    """Write codebooks to `path` atomically (a temporary name, then a rename), creating its folder.

    The file holds only tensors and ints, so `torch.load(weights_only=True)` reads it.
    """
    path = Path(path).expanduser()
    atomic_torch_save(codebooks.state(), path)  # a kill or a full disk leaves no stray temporary file
    return path


def load_codebooks(path: str | os.PathLike) -> MelCodebooks:
    """Read a file written by `save_codebooks`.

    Raises:
        FileNotFoundError: no file at `path`; the message says how to fit one.
        WeightsError: the file is not a mel codebooks file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingFileError(
            f"no mel codebooks file at {path.resolve()}; fit one with "
            f"valle.codecs.mel.fit_mel_codebooks(wavs) and write it with save_codebooks(path, codebooks), "
            f"or set codec.weights=random for an untrained codec"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(
            f"{path}: not a mel codebooks file ({type(error).__name__}: {error}); "
            f"write one with save_codebooks"
        ) from error
    return MelCodebooks.from_state(data, str(path))


def check_settings(
    sample_rate: int, hop_length: int, n_mels: int, n_fft: int, n_levels: int, codebook_size: int
) -> None:
    """Raise, naming the setting, when the mel codec cannot be built with these values."""
    if sample_rate <= 0 or hop_length <= 0 or sample_rate % hop_length:
        raise ConfigError(
            f"mel codec: hop_length={hop_length} must divide sample_rate={sample_rate} "
            f"(e.g. 320 → 75 Hz or 480 → 50 Hz at 24 kHz)"
        )
    if not 0 < hop_length <= n_fft:
        raise ConfigError(f"mel codec: hop_length={hop_length} must not exceed n_fft={n_fft}")
    if not 0 < n_mels <= n_fft // 2 + 1:
        raise ConfigError(f"mel codec: n_mels={n_mels} must lie in [1, n_fft / 2 + 1 = {n_fft // 2 + 1}]")
    if n_levels < 1 or not 2 <= codebook_size <= MAX_CODEBOOK_SIZE:
        raise ConfigError(
            f"mel codec: n_levels={n_levels} must be >= 1 and codebook_size={codebook_size} "
            f"in [2, {MAX_CODEBOOK_SIZE}] (codes are int16 on disk)"
        )


def codebooks_identity(weights: Weights | MelCodebooks, books: MelCodebooks | None = None) -> str:
    """The weights identity of a `weights` setting: "random:seed=0", "pretrained", or the codebooks' hash.

    `books`, when given, are the codebooks `weights` already gave (saves reading the file again).
    """
    if isinstance(weights, str) and weights in (RANDOM, PRETRAINED):
        return weights_identity(weights)
    if books is None:
        books = weights if isinstance(weights, MelCodebooks) else load_codebooks(weights)
    return books.identity()


def codebooks_from(weights: Weights | MelCodebooks, settings: dict[str, int], setting: str) -> MelCodebooks:
    """The codebooks a `weights` setting names, checked against the codec's settings."""
    if isinstance(weights, MelCodebooks):
        books = weights
    elif isinstance(weights, str) and weights == RANDOM:
        warn_random("mel", setting)
        return random_codebooks(**settings)
    elif isinstance(weights, str) and weights == PRETRAINED:
        raise WeightsError(
            f"the mel codec has no released codebooks ({setting}=pretrained); fit them on your data with "
            f"valle.codecs.mel.fit_mel_codebooks + save_codebooks and set {setting}=/path/to/codebooks.pt, "
            f"or {setting}=random for an untrained codec"
        )
    else:
        try:
            books = load_codebooks(weights)
        except FileNotFoundError as error:
            raise MissingFileError(f"{setting}={str(weights)!r}: {error}") from None
    if books.settings() != settings:
        differ = ", ".join(
            f"{k}={books.settings()[k]} (configured {v})"
            for k, v in settings.items()
            if books.settings()[k] != v
        )
        raise ConfigError(
            f"{setting}={weights if not isinstance(weights, MelCodebooks) else 'codebooks'} "
            f"was fit with other settings: {differ}; configure the codec as the file was fit, "
            f"or fit new codebooks with these settings"
        )
    return books


def random_codebooks(
    sample_rate: int, hop_length: int, n_mels: int, n_fft: int, n_levels: int, codebook_size: int
) -> MelCodebooks:
    """Untrained codebooks from a fixed seed: codes vary from frame to frame, the audio means nothing."""
    with seeded():
        # Each level spreads half as wide as the one before, as fitted residual codebooks do.
        scale = 0.5 ** torch.arange(n_levels, dtype=torch.float32)[:, None, None]
        books = torch.randn(n_levels, codebook_size, n_mels) * scale
    # Stats near those of speech, so a random codec's output is quiet noise rather than full scale.
    return MelCodebooks(
        books, torch.full((n_mels,), -4.0), torch.full((n_mels,), 2.0), sample_rate, hop_length, n_mels, n_fft
    )
