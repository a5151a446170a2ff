"""The mel codec: log-mel frames quantized level by level with the codebooks (`books.py`), decoded by
the pseudo-inverse of the mel filterbank and Griffin-Lim."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import replace
from typing import Any

import torch
import torchaudio.functional as AF
from torch import nn

from valle.codecs.base import Codec, CodecInfo, expected_codewords
from valle.codecs.mel.books import MelCodebooks, check_settings, codebooks_from, codebooks_identity
from valle.codecs.weights import RANDOM, Weights
from valle.errors import ConfigError

log = logging.getLogger(__name__)


LOG_FLOOR = 1e-5  # mel magnitudes below this are silence; log(1e-5) ≈ -11.5
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
        return self._audio(self.features_from_codes(codes))

    def _decode_expected(self, codes: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
        # the expected residual is the mean-square-error estimate of the log-mel given the distributions
        return self._audio(self.codebooks[0][codes[:, 0]] + expected_codewords(expected, self.codebooks[1:]))

    def _audio(self, features: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel [B, T, n_mels] → wav [B, 1, T * hop] (Griffin-Lim)."""
        return self.log_mel.invert(features * self.std + self.mean, self.griffin_lim_iters)[:, None]
