"""Descript Audio Codec (Kumar et al., 2023) behind the `Codec` interface.

Three released models: 44.1 kHz (hop 512, about 86 frames per second, 9 levels), 24 kHz (hop 320, 75 Hz,
32 levels) and 16 kHz (hop 320, 50 Hz, 12 levels), all with 1024-entry codebooks. Codes come from the
model's own `encode` (its encoder and residual quantizer) and go back through `quantizer.from_codes` and
the decoder. Each input is first brought to -16 LUFS, as DAC's `compress` does (and so the seed's `.dac`
files): the codes then match imported seed data. There is no chunking, and decoding does not restore the
input's loudness (`decompress` does, from the `input_db` it stored): decoded audio is at about -16 LUFS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import dac
import torch
from audiotools import AudioSignal
from torch import nn

from valle.codecs.base import Codec, CodecInfo
from valle.codecs.weights import (
    PRETRAINED,
    RANDOM,
    Weights,
    WeightsError,
    download,
    resolve_weights,
    seeded,
    warn_random,
    weights_identity,
)
from valle.errors import ConfigError

CODEBOOK_SIZE = 1024
# `compress`'s default `normalize_db`: the loudness (LUFS) DAC brings every input to before encoding.
LOUDNESS_DB = -16.0


@dataclass(frozen=True)
class DacVariant:
    """Hyperparameters of one released DAC model (descript-audio-codec conf/final/*.yml)."""

    sample_rate: int
    encoder_rates: list[int]
    decoder_rates: list[int]
    n_codebooks: int
    encoder_dim: int = 64
    decoder_dim: int = 1536
    codebook_dim: int = 8
    codebook_size: int = CODEBOOK_SIZE

    @property
    def hop_length(self) -> int:
        return math.prod(self.encoder_rates)

    def build(self) -> dac.DAC:
        """An untrained model of this architecture."""
        return dac.DAC(
            encoder_dim=self.encoder_dim,
            encoder_rates=list(self.encoder_rates),
            decoder_dim=self.decoder_dim,
            decoder_rates=list(self.decoder_rates),
            n_codebooks=self.n_codebooks,
            codebook_size=self.codebook_size,
            codebook_dim=self.codebook_dim,
            sample_rate=self.sample_rate,
        )


VARIANTS: dict[str, DacVariant] = {
    "44khz": DacVariant(44_100, [2, 4, 8, 8], [8, 8, 4, 2], n_codebooks=9),
    "24khz": DacVariant(24_000, [2, 4, 5, 8], [8, 5, 4, 2], n_codebooks=32),
    "16khz": DacVariant(16_000, [2, 4, 5, 8], [8, 5, 4, 2], n_codebooks=12),
}


def get_variant(model_type: str) -> DacVariant:
    """The released model called `model_type`, or an error listing them."""
    if model_type not in VARIANTS:
        raise ConfigError(
            f"unknown DAC model_type {model_type!r}; set codec.model_type to one of {', '.join(VARIANTS)}"
        )
    return VARIANTS[model_type]


def check_levels(n_levels: int | None, model_type: str) -> int:
    """Levels to keep: all the model's codebooks by default, or the first `n_levels` of them."""
    available = get_variant(model_type).n_codebooks
    if n_levels is None:
        return available
    if not 1 <= int(n_levels) <= available:
        raise ConfigError(
            f"DAC {model_type} has {available} codebooks; set codec.n_levels between 1 and "
            f"{available} (or null for all), not {n_levels}"
        )
    return int(n_levels)


def load_dac(path: Path, model_type: str) -> dac.DAC:
    """Load a DAC weights file (as `dac.utils.download` fetches or `DAC.save` writes) and check its variant.

    Raises:
        WeightsError: the file is not a DAC checkpoint, or holds a model other than `model_type`.
    """
    try:
        # strict: a file with other weights must fail rather than leave parameters at their random init.
        model = dac.DAC.load(str(path), strict=True)
    except Exception as error:  # DAC.load raises KeyError, RuntimeError or pickle errors on a wrong file
        raise WeightsError(
            f"{path} is not a DAC checkpoint that dac.DAC.load reads ({type(error).__name__}: "
            f"{error}); pass the weights file the dac package downloads"
        ) from error
    expected = get_variant(model_type)
    found = (int(model.sample_rate), int(model.hop_length), int(model.n_codebooks))
    if found != (expected.sample_rate, expected.hop_length, expected.n_codebooks):
        raise WeightsError(
            f"{path} holds a DAC model at {found[0]} Hz (hop {found[1]}, {found[2]} codebooks) but "
            f"model_type={model_type} is {expected.sample_rate} Hz (hop {expected.hop_length}, "
            f"{expected.n_codebooks} codebooks); set codec.model_type to match the file"
        )
    return model


def build_dac_model(model_type: str, weights: Weights) -> dac.DAC:
    """Build a released DAC model in eval mode.

    Args:
        model_type: "44khz", "24khz" or "16khz".
        weights: "pretrained" (`dac.utils.download`, cached under ~/.cache/descript/dac), "random", or a
            local weights file.
    """
    source = resolve_weights(weights)
    if source == RANDOM:
        warn_random("dac")
        with seeded():
            return get_variant(model_type).build().eval()
    if source == PRETRAINED:
        source = download(
            lambda: Path(dac.utils.download(model_type=model_type)), f"DAC {model_type} weights"
        )
    return load_dac(Path(source), model_type).eval()


def normalize_loudness(wav: torch.Tensor, sample_rate: int, loudness_db: float) -> torch.Tensor:
    """wav [samples] → the same at `loudness_db` LUFS, scaled down if a sample then exceeds 1.

    Exactly `compress`'s steps (audiotools' `normalize` and `ensure_max_of_audio`, the ITU-R BS.1770 meter
    included), so an input is encoded as the seed's `.dac` files were.
    """
    signal = AudioSignal(wav.reshape(1, 1, -1).clone(), sample_rate)
    signal.normalize(loudness_db)
    signal.ensure_max_of_audio()
    return signal.audio_data.reshape(-1)


class DacCodec(Codec):
    """Descript Audio Codec: 44.1, 24 or 16 kHz, 1024-entry codebooks.

    The encoder is not causal: it looks about 8 frames ahead. In a batch, an item shorter than the longest
    sees the batch's zero padding there rather than its own edge, so its last few frames may get other codes
    than when it is encoded alone (all earlier frames are identical).

    Args:
        model_type: "44khz" (default, 9 levels), "24khz" (32 levels) or "16khz" (12 levels).
        n_levels: keep only the first levels (at most the model's codebooks); None keeps all.
        weights: "pretrained", "random", or a local weights file for `model_type`.
        normalize_db: the loudness (LUFS) each input is brought to before encoding, as `compress` does; None
            encodes the input as it is (only to compare with the library's raw `encode`: such codes are not
            what models trained on valle's or the seed's DAC data expect).
    """

    def __init__(
        self,
        model_type: str = "44khz",
        n_levels: int | None = None,
        weights: Weights = PRETRAINED,
        *,
        normalize_db: float | None = LOUDNESS_DB,
    ) -> None:
        super().__init__()
        # before any download: a bad setting fails at once
        self.info = self.describe(model_type, n_levels, weights)
        self.normalize_db = normalize_db
        self.model = build_dac_model(model_type, weights)
        self.requires_grad_(False)

    @staticmethod
    def describe(
        model_type: str = "44khz", n_levels: int | None = None, weights: Weights = PRETRAINED, **_: object
    ) -> CodecInfo:
        """The CodecInfo these settings give, without building the model or downloading its weights."""
        variant = get_variant(model_type)
        return CodecInfo(
            name="dac",
            sample_rate=variant.sample_rate,
            frame_rate=variant.sample_rate / variant.hop_length,
            n_levels=check_levels(n_levels, model_type),
            codebook_size=CODEBOOK_SIZE,
            variant=model_type,
            weights=weights_identity(weights),
        )

    def _condition(self, wav: torch.Tensor) -> torch.Tensor:
        if self.normalize_db is None:
            return wav
        return normalize_loudness(wav, self.sample_rate, self.normalize_db)

    def _encode_padded(self, wav: torch.Tensor) -> torch.Tensor:
        _, codes, *_ = self.model.encode(wav, n_quantizers=self.n_levels)
        return codes

    def _decode_padded(self, codes: torch.Tensor) -> torch.Tensor:
        return self._audio(self.model.quantizer.from_codes(codes)[0], codes.shape[-1])

    def _decode_expected(self, codes: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
        # DAC's `quantizer.from_codes`, each level above 0 from its expected codeword: its out_proj is
        # linear (a 1x1 convolution), so it maps the expected codeword to the expected projection
        quantizers = self.model.quantizer.quantizers
        latent = quantizers[0].out_proj(quantizers[0].decode_code(codes[:, 0]))
        for level, quantizer in enumerate(quantizers[1 : codes.shape[1]]):
            mixed = expected[:, level] @ quantizer.codebook.weight  # [B, T, codebook dim]
            latent = latent + quantizer.out_proj(mixed.transpose(1, 2))
        return self._audio(latent, codes.shape[-1])

    def _audio(self, latent: torch.Tensor, frames: int) -> torch.Tensor:
        """The quantizer's output [B, D, T] → wav [B, 1, frames * hop]."""
        wav = self.model.decode(latent)
        # The 24 and 16 kHz decoders upsample once by an odd stride (5) and come out 8 samples short.
        return nn.functional.pad(wav, (0, frames * self.hop_length - wav.shape[-1]))
