"""The one codec interface: waveform ↔ residual-vector-quantized codes.

Every codec (EnCodec, Vocos, DAC, ...) subclasses `Codec` and implements two batched primitives,
`_encode_padded` and `_decode_padded`; this base class does the rest once: mixing to mono,
resampling, padding a batch, and trimming each item back to its own length. A codec whose decoder starts
from the sum of its levels' codewords (every built-in one) also implements `_decode_expected`: the levels
above 0 given as distributions over their codes are decoded from their expected codewords (the NAR's
`sampler.expected_codewords`, docs/inference.md "Expected codewords").
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from valle.audio import prepare_waveform
from valle.codecs.weights import UNKNOWN_IDENTITY, setting_for_identity, weights_conflict
from valle.errors import ConfigError


@dataclass(frozen=True)
class CodecInfo:
    """What a model must know about the codec its codes came from (saved in shards and checkpoints)."""

    name: str
    sample_rate: int
    frame_rate: float  # frames per second
    n_levels: int
    codebook_size: int
    variant: str = ""  # e.g. "6kbps" for EnCodec or "44khz" for DAC
    # Which weights made the codes (`valle.codecs.weights.weights_identity`): "pretrained", "random:seed=0" or
    # "sha256:<16 hex>" of a local file; "" (unknown) in files written before it was recorded.
    weights: str = UNKNOWN_IDENTITY

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CodecInfo:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def summary(self) -> str:
        """One line for messages, e.g. "encodec 6kbps (8 levels, 24000 Hz, weights random:seed=0)"."""
        return (
            f"{self.name} {self.variant or '-'} ({self.n_levels} levels, {self.sample_rate} Hz, "
            f"weights {self.weights or 'unknown'})"
        )

    def check_compatible(self, other: CodecInfo, what: str = "this data") -> None:
        """Raise when codes made by `other` cannot be used where `self` is expected.

        Vocos decodes EnCodec's codes, so the two names count as one codec here. Weights count too: the same
        code means another sound under other weights (see `weights_conflict` for what is let through).
        """
        family = {"vocos": "encodec"}
        mine = (family.get(self.name, self.name), self.sample_rate, self.n_levels, self.codebook_size)
        theirs = (family.get(other.name, other.name), other.sample_rate, other.n_levels, other.codebook_size)
        if mine != theirs:
            raise ConfigError(
                f"{what} was made with codec {other.name!r} ({other.variant or '-'}, "
                f"{other.n_levels} levels, {other.sample_rate} Hz) but codec {self.name!r} "
                f"({self.variant or '-'}, {self.n_levels} levels, {self.sample_rate} Hz) was configured; "
                f"use the same codec settings for both"
            )
        if weights_conflict(other.weights, self.weights):
            raise ConfigError(
                f"{what} was made with codec weights {other.weights} but weights {self.weights} "
                f"were configured; "
                f"its codes would mean other sounds: use the weights it was made with (codec.weights="
                f"{setting_for_identity(other.weights) or 'the file with ' + other.weights})"
            )


class Codec(nn.Module, abc.ABC):
    """A neural audio codec behind one interface.

    Subclasses set `info` and implement `_encode_padded` / `_decode_padded` on padded batches.
    """

    info: CodecInfo

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def sample_rate(self) -> int:
        return self.info.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.info.frame_rate

    @property
    def n_levels(self) -> int:
        return self.info.n_levels

    @property
    def codebook_size(self) -> int:
        return self.info.codebook_size

    @property
    def hop_length(self) -> int:
        """Samples per frame at the codec's sample rate."""
        return round(self.sample_rate / self.frame_rate)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def train(self, mode: bool = True) -> Codec:
        """Stay in eval mode whatever `mode` asks.

        A codec is a frozen tool. A parent's `.train()` (Lightning calls it every epoch) must not switch it to
        training behaviour: DAC's quantizer, for one, then drops levels at random.
        """
        return super().train(False)

    def n_frames(self, n_samples: int) -> int:
        """Frames the codec produces for `n_samples` samples at its own rate: ceil(samples / hop)."""
        return math.ceil(n_samples / self.hop_length)

    @staticmethod
    @abc.abstractmethod
    def describe(**settings) -> CodecInfo:
        """The CodecInfo a codec built with these settings has, without building it."""

    def _condition(self, wav: torch.Tensor) -> torch.Tensor:
        """One mono waveform [samples] at `sample_rate` → what the encoder expects of it (e.g. a loudness).

        Per item, before a batch is padded: a level measured on the padded batch would depend on its
        neighbours.
        """
        return wav

    @abc.abstractmethod
    def _encode_padded(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, S] float at `sample_rate`, S a multiple of the hop → codes [B, L, S / hop] int64."""

    @abc.abstractmethod
    def _decode_padded(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, L, T] int64 → wav [B, 1, T * hop] float at `sample_rate`."""

    @torch.inference_mode()
    def encode(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Encode one waveform.

        Args:
            wav: [samples] or [channels, samples] float, any rate and channel count.
            sample_rate: rate of `wav` in Hz.

        Returns:
            codes: LongTensor [n_levels, frames], frames = ceil(samples at codec rate / hop).
        """
        codes, _ = self.encode_batch([wav], sample_rate)
        return codes[0]

    def padded_batch(
        self, wavs: Sequence[torch.Tensor], sample_rate: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch `encode_batch` encodes: each input mono at `sample_rate`, conditioned, zero-padded to
        whole frames.

        Public so that tests can run the codec's encoder on exactly what its quantizer sees.

        Returns:
            (wav [B, 1, frames_max * hop] float on the codec's device,
            frames [B] int64 valid frames per item).
        """
        mono = [self._condition(prepare_waveform(w, sample_rate, self.sample_rate)) for w in wavs]
        frames = torch.tensor([self.n_frames(w.numel()) for w in mono], dtype=torch.long)
        batch = torch.zeros(len(mono), 1, int(frames.max()) * self.hop_length, device=self.device)
        for i, w in enumerate(mono):
            batch[i, 0, : w.numel()] = w.to(self.device)
        return batch, frames

    @torch.inference_mode()
    def encode_batch(
        self, wavs: Sequence[torch.Tensor], sample_rate: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode several waveforms of different lengths in one pass.

        Args:
            wavs: each [samples] or [channels, samples], all at `sample_rate`.
            sample_rate: rate of the inputs in Hz.

        Returns:
            (codes [B, n_levels, T_max] int64 padded with 0, frames [B] int64 valid frames per item).
        """
        batch, frames = self.padded_batch(wavs, sample_rate)
        codes = self._encode_padded(batch).long()
        for i, n in enumerate(frames.tolist()):
            codes[i, :, n:] = 0
        return codes[:, :, : int(frames.max())].cpu(), frames

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, expected: torch.Tensor | None = None) -> torch.Tensor:
        """codes [n_levels, frames] → wav [frames * hop] float at `sample_rate`.

        `expected` [n_levels - 1, frames, codebook_size]: each frame's distribution over the codes of
        levels 1.. (the NAR's, `NarSampler.expected`); those levels are then decoded from their expected
        codewords instead of `codes`' (level 0 stays `codes[0]`)."""
        expected = None if expected is None else expected[None]
        return self.decode_batch(codes[None], torch.tensor([codes.shape[-1]]), expected)[0]

    @torch.inference_mode()
    def decode_batch(
        self, codes: torch.Tensor, frames: torch.Tensor | None = None, expected: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """codes [B, n_levels, T] (+ valid frames [B], + `expected` [B, n_levels - 1, T, codebook_size]:
        see `decode`) → wavs, each trimmed to frames * hop samples."""
        self._check_codes(codes)
        codes = codes.to(self.device).long()
        if expected is None:
            wav = self._decode_padded(codes)
        else:
            self._check_expected(codes, expected)
            wav = self._decode_expected(codes, expected.to(self.device).float())
        wav = wav[:, 0].float().cpu()
        lengths = frames.tolist() if frames is not None else [codes.shape[-1]] * codes.shape[0]
        return [wav[i, : n * self.hop_length] for i, n in enumerate(lengths)]

    def _decode_expected(self, codes: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
        """codes [B, L, T] (only level 0 is read) and `expected` [B, L - 1, T, K] → wav [B, 1, T * hop]:
        the decoder fed level 0's codewords plus, for every level above, its codewords averaged under
        that frame's distribution. A codec that cannot is refused here, by name."""
        raise ConfigError(
            f"codec {self.name!r} cannot decode expected codewords; decode its codes instead "
            "(sampler.expected_codewords=0)"
        )

    def _check_expected(self, codes: torch.Tensor, expected: torch.Tensor) -> None:
        batch, levels, frames = codes.shape
        want = (batch, levels - 1, frames, self.codebook_size)
        if tuple(expected.shape) != want:
            raise ConfigError(
                f"codec {self.name!r}: expected codewords need distributions shaped {want} "
                f"(batch, levels above 0, frames, codebook size), got {tuple(expected.shape)}"
            )

    def _check_codes(self, codes: torch.Tensor) -> None:
        if codes.dim() != 3 or codes.shape[1] != self.n_levels:
            raise ConfigError(
                f"codec {self.name!r} expects codes shaped [batch, {self.n_levels} levels, frames], "
                f"got {tuple(codes.shape)}"
            )
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ConfigError(
                f"codec {self.name!r}: codes must lie in [0, {self.codebook_size}); "
                f"got [{int(codes.min())}, {int(codes.max())}]"
            )


def expected_codewords(expected: torch.Tensor, books: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Distributions `expected` [B, L', T, K] over the codes of L' levels and their codebooks (L' of
    [K, D]) → the sum over levels of each frame's expected codeword [B, T, D]."""
    total = expected[:, 0] @ books[0]
    for level in range(1, expected.shape[1]):
        total = total + expected[:, level] @ books[level]
    return total
