"""An offline codec that needs no download: log-mel frames, residual vector quantization, Griffin-Lim.

Encode: log-mel frames (one per hop, `ceil(samples / hop)` of them), normalised per mel bin, then quantized
level by level: level l picks the codeword nearest to what the levels before it left over. Decode: the sum
of the chosen codewords, un-normalised, mapped back to a linear spectrogram by the pseudo-inverse of the mel
filterbank, and given a phase by Griffin-Lim.

The codebooks are fit by k-means on a corpus (`fit_mel_codebooks`) and kept in a small file of plain tensors
(`save_codebooks` / `load_codebooks`). Nothing here is learned by gradient descent, so the codec builds
anywhere, in a second: it is what tests, the notebook and the tiny demo run on. Its audio is intelligible but
buzzy (Griffin-Lim), so use a neural codec for real voices.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torchaudio.functional as AF
from torch import nn

from valle.audio import to_mono
from valle.codecs.base import Codec, CodecInfo
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
LOG_FLOOR = 1e-5  # mel magnitudes below this are silence; log(1e-5) ≈ -11.5
MAX_CODEBOOK_SIZE = 2**15  # codes are stored as int16 on disk
# The file's settings that must equal the codec's (n_levels and codebook_size come from the tensor's shape).
INITS = ("kmeans++", "random")  # k-means initialisations
FILE_SETTINGS = ("sample_rate", "hop_length", "n_mels", "n_fft", "n_levels", "codebook_size")
CODEBOOKS_FILE = "codebooks.pt"  # prepare.py writes it beside the shards it encodes with them
DEFAULT_N_FFT = 1024
VARIANT = re.compile(r"(\d+)mel-(\d+)hop(?:-(\d+)fft)?")


def variant_name(n_mels: int, hop_length: int, n_fft: int) -> str:
    """`CodecInfo.variant`: "80mel-480hop", plus "-2048fft" when n_fft is not the default.

    Every setting that changes the codes is in the name, so that `codec_for` rebuilds the codec a model's
    codes came from; names without the n_fft part (all files written before it existed) mean 1024.
    """
    suffix = "" if n_fft == DEFAULT_N_FFT else f"-{n_fft}fft"
    return f"{n_mels}mel-{hop_length}hop{suffix}"


def parse_variant(variant: str) -> tuple[int, int, int]:
    """(n_mels, hop_length, n_fft) of a `variant_name`."""
    match = VARIANT.fullmatch(variant)
    if match is None:
        raise ConfigError(
            f"codec variant {variant!r}: not a mel codec variant (expected e.g. '80mel-480hop')"
        )
    n_mels, hop, n_fft = match.groups()
    return int(n_mels), int(hop), int(n_fft or DEFAULT_N_FFT)


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


class LogMel(nn.Module):
    """wav [B, S] → log-mel [B, ceil(S / hop), n_mels], and the way back to a linear magnitude spectrogram."""

    fbank: torch.Tensor  # [freqs, mels] buffers, registered in __init__
    fbank_pinv: torch.Tensor  # [mels, freqs]
    window: torch.Tensor  # [n_fft]

    def __init__(self, sample_rate: int, hop_length: int, n_mels: int, n_fft: int) -> None:
        super().__init__()
        self.hop_length, self.n_fft = hop_length, n_fft
        # Slaney's mel scale is linear below 1 kHz, so no filter falls between two FFT bins and stays empty.
        fbank = AF.melscale_fbanks(
            n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, norm="slaney", mel_scale="slaney"
        )  # [freqs, mels]
        self.register_buffer("fbank", fbank, persistent=False)
        # The pseudo-inverse rather than torchaudio's InverseMelScale: one matmul, no optimiser,
        # deterministic.
        self.register_buffer("fbank_pinv", torch.linalg.pinv(fbank), persistent=False)  # [mels, freqs]
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        # Zero padding (not reflection) at the edges: it works on inputs shorter than n_fft / 2, and an item
        # padded inside a batch sees the same zeros as when encoded alone.
        spec = torch.stft(
            wav,
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        ).abs()  # [B, freqs, S // hop + 1]
        frames = math.ceil(wav.shape[-1] / self.hop_length)
        mel = spec[..., :frames].transpose(1, 2) @ self.fbank  # [B, frames, mels]
        return mel.clamp_min(LOG_FLOOR).log()

    def invert(self, log_mel: torch.Tensor, n_iter: int) -> torch.Tensor:
        """log-mel [B, T, n_mels] → wav [B, T * hop] by the pseudo-inverse filterbank and Griffin-Lim."""
        linear = (log_mel.exp() @ self.fbank_pinv).clamp_min(0).transpose(1, 2)  # [B, freqs, T]
        frames = linear.shape[-1]
        # The STFT of T * hop samples has T + 1 frames, and its reflection padding needs more than n_fft / 2
        # samples: repeat the last frame up to both, and trim the audio back to T * hop.
        total = max(frames, self.n_fft // (2 * self.hop_length) + 1) + 1
        linear = torch.cat([linear, linear[..., -1:].expand(-1, -1, total - frames)], dim=-1)
        wav = AF.griffinlim(
            linear,
            self.window,
            self.n_fft,
            self.hop_length,
            self.n_fft,
            power=1.0,
            n_iter=n_iter,
            momentum=0.99,
            length=(total - 1) * self.hop_length,
            rand_init=False,
        )  # zero initial phase: the same codes always give the same audio
        return wav[:, : frames * self.hop_length].clamp(-1.0, 1.0)


def quantize(features: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """Residual vector quantization: features [B, T, D] → codes [B, L, T] int64, codebooks [L, K, D]."""
    residual, codes = features, []
    for codebook in codebooks:
        index = nearest(residual.reshape(-1, residual.shape[-1]), codebook).reshape(residual.shape[:-1])
        residual = residual - codebook[index]
        codes.append(index)
    return torch.stack(codes, dim=1)


def dequantize(codes: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """codes [B, L', T] (the first L' <= L levels) → the sum of their codewords [B, T, D]."""
    features = codebooks[0][codes[:, 0]]
    for level in range(1, codes.shape[1]):
        features = features + codebooks[level][codes[:, level]]
    return features


def nearest(x: torch.Tensor, centres: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """Index of the nearest centre [K, D] for each row of x [N, D], in chunks to bound memory."""
    centre_norms = centres.pow(2).sum(-1)
    # ||x - c||² = ||x||² - 2 x·c + ||c||², and ||x||² does not change the argmin
    return torch.cat([(centre_norms - 2 * part @ centres.T).argmin(-1) for part in x.split(chunk)])


class MelCodec(Codec):
    """Log-mel frames quantized by RVQ with k-means codebooks, decoded by Griffin-Lim; no download.

    Args:
        sample_rate: in Hz.
        hop_length: samples per frame; 320 gives 75 frames/s at 24 kHz, 480 gives 50.
        n_mels: mel bins per frame.
        n_fft: STFT size (also the window length).
        n_levels: residual levels (codes per frame).
        codebook_size: codewords per level.
        weights: a codebooks file written by `save_codebooks`, "random" (an untrained codec, for tests),
            or `MelCodebooks` already in memory.
        griffin_lim_iters: Griffin-Lim iterations when decoding (more: cleaner phase, slower).
        weights_setting: the config key `weights` came from, named in messages.

    Raises:
        ValueError: bad settings, or a file fit with other settings.
        FileNotFoundError: `weights` names no file.
    """

    codebooks: torch.Tensor  # [L, K, n_mels] buffers, registered in __init__
    mean: torch.Tensor  # [n_mels]
    std: torch.Tensor  # [n_mels]

    def __init__(
        self,
        sample_rate: int = 24_000,
        hop_length: int = 320,
        n_mels: int = 80,
        n_fft: int = DEFAULT_N_FFT,
        n_levels: int = 4,
        codebook_size: int = 256,
        weights: Weights | MelCodebooks = RANDOM,
        griffin_lim_iters: int = 32,
        *,
        weights_setting: str = "codec.weights",
    ) -> None:
        super().__init__()
        settings = dict(
            sample_rate=sample_rate,
            hop_length=hop_length,
            n_mels=n_mels,
            n_fft=n_fft,
            n_levels=n_levels,
            codebook_size=codebook_size,
        )
        # the settings are checked before any file is read
        self.info = self.describe(sample_rate, hop_length, n_mels, n_fft, n_levels, codebook_size)
        self.griffin_lim_iters = griffin_lim_iters
        self.log_mel = LogMel(sample_rate, hop_length, n_mels, n_fft)
        books = codebooks_from(weights, settings, weights_setting)
        self.info = replace(self.info, weights=codebooks_identity(weights, books))
        self.register_buffer("codebooks", books.codebooks.float())  # [L, K, n_mels]
        self.register_buffer("mean", books.mean.float())  # [n_mels]
        self.register_buffer("std", books.std.float())  # [n_mels]

    @staticmethod
    def describe(
        sample_rate: int = 24_000,
        hop_length: int = 320,
        n_mels: int = 80,
        n_fft: int = DEFAULT_N_FFT,
        n_levels: int = 4,
        codebook_size: int = 256,
        weights: Weights | MelCodebooks = RANDOM,
        **_: Any,
    ) -> CodecInfo:
        """The CodecInfo these settings give; reads the codebooks file `weights` names, if any, for its
        identity."""
        check_settings(sample_rate, hop_length, n_mels, n_fft, n_levels, codebook_size)
        return CodecInfo(
            name="mel",
            sample_rate=sample_rate,
            frame_rate=sample_rate / hop_length,
            n_levels=n_levels,
            codebook_size=codebook_size,
            variant=variant_name(n_mels, hop_length, n_fft),
            weights=codebooks_identity(weights),
        )

    @staticmethod
    def settings_for(info: CodecInfo) -> dict[str, int]:
        """The constructor settings that give `info` (`variant_name` spells out each one it needs)."""
        n_mels, hop, n_fft = parse_variant(info.variant)
        return dict(
            sample_rate=info.sample_rate,
            hop_length=hop,
            n_mels=n_mels,
            n_fft=n_fft,
            n_levels=info.n_levels,
            codebook_size=info.codebook_size,
        )

    @property
    def device(self) -> torch.device:
        return self.codebooks.device  # the base class asks parameters(), and this codec has none

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, S] → normalised log-mel frames [B, ceil(S / hop), n_mels], what the codebooks quantize."""
        return (self.log_mel(wav) - self.mean) / self.std

    def features_from_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, L', T] (the first L' levels, any L' <= n_levels) → normalised log-mel [B, T, n_mels]."""
        return dequantize(codes, self.codebooks)

    @torch.inference_mode()
    def decode_levels(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [L', frames] of the first L' <= n_levels levels → wav: what those levels alone carry
        (e.g. level 0 without the NAR's residuals, benchmarks/demo_diagnosis.py)."""
        if codes.dim() != 2 or not 1 <= codes.shape[0] <= self.n_levels:
            raise ConfigError(
                f"codec 'mel': decode_levels takes codes [1..{self.n_levels} levels, frames], "
                f"got {tuple(codes.shape)}"
            )
        return self._decode_padded(codes[None].to(self.device).long())[0, 0].float().cpu()

    def _encode_padded(self, wav: torch.Tensor) -> torch.Tensor:
        return quantize(self.features(wav[:, 0]), self.codebooks)

    def _decode_padded(self, codes: torch.Tensor) -> torch.Tensor:
        log_mel = self.features_from_codes(codes) * self.std + self.mean
        return self.log_mel.invert(log_mel, self.griffin_lim_iters)[:, None]


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


def fit_mel_codebooks(
    wavs: Iterable[torch.Tensor],
    sample_rate: int = 24_000,
    hop_length: int = 320,
    n_mels: int = 80,
    n_fft: int = DEFAULT_N_FFT,
    n_levels: int = 4,
    codebook_size: int = 256,
    n_iter: int = 20,
    seed: int = 0,
    max_frames: int = 200_000,
    init: str = "kmeans++",
) -> MelCodebooks:
    """Fit RVQ codebooks on log-mel frames by k-means, level by level.

    Args:
        wavs: waveforms at `sample_rate`, each [samples] or [channels, samples] (mixed to mono).
        sample_rate, hop_length, n_mels, n_fft, n_levels, codebook_size: the codec settings to fit.
        n_iter: k-means iterations per level (after k-means++ initialisation).
        seed: the same seed and data give the same codebooks.
        max_frames: fit on at most this many frames, drawn uniformly from all of them (memory and time).
        init: "kmeans++" (centres spread by distance; slightly better codebooks) or "random" (distinct
            frames drawn uniformly: one operation instead of `codebook_size` small sequential ones, which is
            much faster on a busy CPU; on the LJ Speech fixtures its residual is 1.5 % higher).

    Returns:
        the codebooks, with the per-bin mean and std of the frames; pass them to `save_codebooks`.
    """
    check_settings(sample_rate, hop_length, n_mels, n_fft, n_levels, codebook_size)
    if init not in INITS:
        raise ConfigError(f"fit_mel_codebooks: init={init!r}; use one of {', '.join(INITS)}")
    generator = torch.Generator().manual_seed(seed)
    frames = sample_frames(wavs, LogMel(sample_rate, hop_length, n_mels, n_fft), max_frames, generator)
    mean, std = frames.mean(0), frames.std(0).clamp_min(1e-3)  # a constant bin (silence) must not divide by 0
    residual = (frames - mean) / std
    books = []
    for level in range(n_levels):
        centres = kmeans(residual, codebook_size, n_iter, generator, init)
        residual = residual - centres[nearest(residual, centres)]
        log.info(
            "mel codebooks: level %d fit, residual MSE %.4f (normalised units)",
            level,
            float(residual.pow(2).mean()),
        )
        books.append(centres)
    return MelCodebooks(torch.stack(books), mean, std, sample_rate, hop_length, n_mels, n_fft)


@torch.no_grad()
def sample_frames(
    wavs: Iterable[torch.Tensor], log_mel: LogMel, max_frames: int, generator: torch.Generator
) -> torch.Tensor:
    """Log-mel frames [N, n_mels] of all `wavs`, or a uniform sample of `max_frames` of them.

    Reservoir sampling by random keys: each frame draws a key and the largest `max_frames` keys stay, so
    memory stays bounded however long the corpus and every frame has the same chance.
    """
    kept, keys = torch.empty(0, log_mel.fbank.shape[1]), torch.empty(0)
    for wav in wavs:
        frames = log_mel(to_mono(wav.float().cpu())[None])[0]
        kept = torch.cat([kept, frames])
        keys = torch.cat([keys, torch.rand(len(frames), generator=generator)])
        if len(kept) > 2 * max_frames:  # trim now and then, not after every file
            kept, keys = _top(kept, keys, max_frames)
    if len(kept) == 0:
        raise ConfigError("fit_mel_codebooks: no audio given; pass at least one waveform")
    return _top(kept, keys, max_frames)[0]


def _top(frames: torch.Tensor, keys: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    if len(frames) <= n:
        return frames, keys
    index = keys.topk(n).indices.sort().values  # keep the corpus order: the result does not depend on topk's
    return frames[index], keys[index]


@torch.no_grad()
def kmeans(
    x: torch.Tensor, k: int, n_iter: int, generator: torch.Generator, init: str = "kmeans++"
) -> torch.Tensor:
    """Lloyd's k-means on x [N, D] from a k-means++ or random start (`fit_mel_codebooks`) → centres [k, D].

    A centre that loses all its points keeps its place rather than jumping: it costs a codeword, not a crash.
    """
    centres = kmeans_plus_plus(x, k, generator) if init == "kmeans++" else random_rows(x, k, generator)
    for _ in range(n_iter):
        assign = nearest(x, centres)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None].to(x.dtype)
    return centres


def random_rows(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k rows of x [N, D] drawn without replacement (with replacement once k > N)."""
    order = torch.randperm(len(x), generator=generator)
    return x[order.repeat(math.ceil(k / len(x)))[:k]].clone()


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k centres drawn from the rows of x [N, D], each with odds ∝ its squared distance to those drawn before.

    With fewer distinct rows than k, the rest are drawn uniformly (repeated codewords are harmless).
    """
    index = torch.randint(len(x), (1,), generator=generator)
    centres = [x[index]]
    dist2 = (x - x[index]).pow(2).sum(-1)
    for _ in range(k - 1):
        odds = dist2 if float(dist2.sum()) > 0 else torch.ones_like(dist2)
        index = torch.multinomial(odds, 1, generator=generator)
        centres.append(x[index])
        dist2 = torch.minimum(dist2, (x - x[index]).pow(2).sum(-1))
    return torch.cat(centres)
