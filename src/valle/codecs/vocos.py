"""EnCodec codes decoded by Vocos (Siuzdak, 2023), behind the `Codec` interface.

The codes are EnCodec 24 kHz codes (this wraps an `EncodecCodec` for encoding); only decoding differs:
Vocos sums the levels' codebook vectors, runs a ConvNeXt backbone conditioned on the bandwidth, and
predicts an STFT that one inverse FFT turns into audio.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import cast

import huggingface_hub
import torch
from torch import nn
from vocos import Vocos
from vocos.feature_extractors import FeatureExtractor
from vocos.heads import ISTFTHead
from vocos.models import VocosBackbone

from valle.codecs.base import Codec, CodecInfo, expected_codewords
from valle.codecs.encodec import CODEBOOK_SIZE, EncodecCodec, check_bandwidth, levels_for_bandwidth
from valle.codecs.weights import (
    PRETRAINED,
    RANDOM,
    Weights,
    WeightsError,
    download,
    load_into,
    load_state_dict,
    resolve_weights,
    seeded,
    warn_random,
)
from valle.errors import ConfigError

REPO_ID = "charactr/vocos-encodec-24khz"
FILENAME = "pytorch_model.bin"
# The released model's bandwidth embedding, in this order: the id passed to Vocos is the index here.
VOCOS_BANDWIDTHS_KBPS = (1.5, 3.0, 6.0, 12.0)
VOCOS_LEVELS = 16  # codebook table rows: the levels of the largest bandwidth (12 kbps)
# Where a Vocos state dict (as `Vocos.state_dict()` writes it) keeps the EnCodec model it embeds.
ENCODEC_PREFIX = "feature_extractor.encodec."


def vocos_bandwidth_id(bandwidth_kbps: float) -> int:
    """Index of `bandwidth_kbps` in Vocos' bandwidth embedding; raises for bandwidths Vocos never saw."""
    bandwidth = check_bandwidth(bandwidth_kbps)
    if bandwidth not in VOCOS_BANDWIDTHS_KBPS:
        raise ConfigError(
            f"Vocos ({REPO_ID}) was trained for 1.5, 3, 6 and 12 kbps (2, 4, 8, 16 levels), not "
            f"{bandwidth:g} kbps ({levels_for_bandwidth(bandwidth)} levels); set bandwidth_kbps to one of "
            f"those, or use codec=encodec to decode {levels_for_bandwidth(bandwidth)} levels"
        )
    return VOCOS_BANDWIDTHS_KBPS.index(bandwidth)


class _CodebookFeatures(FeatureExtractor):
    """EnCodec codes → Vocos input features: per frame, the sum of each level's codebook vector.

    Vocos' own `EncodecFeatures` builds a second EnCodec model and downloads its weights in its constructor;
    decoding needs only the codebook table, kept here under the same name (`codebook_weights`) so the
    released checkpoint loads unchanged. The lookup is `Vocos.codes_to_features`, batch-first.
    """

    def __init__(self, codebook_weights: torch.Tensor, codebook_size: int) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.codebook_weights = nn.Parameter(codebook_weights, requires_grad=False)  # [levels * size, dim]

    def forward(self, codes: torch.Tensor, **kwargs: object) -> torch.Tensor:
        """codes [B, L, T] int64 → features [B, dim, T]."""
        offsets = torch.arange(codes.shape[1], device=codes.device) * self.codebook_size
        features = nn.functional.embedding(codes + offsets[:, None], self.codebook_weights).sum(dim=1)
        return features.transpose(1, 2)

    def expected(self, codes: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
        """Level 0 of codes [B, L, T] and distributions [B, L - 1, T, size] over the levels above →
        features [B, dim, T]: level 0's codeword plus the expected codewords of the others."""
        books = self.codebook_weights.split(self.codebook_size)
        features = books[0][codes[:, 0]] + expected_codewords(expected, books[1 : codes.shape[1]])
        return features.transpose(1, 2)


def _build_vocos(codebook_weights: torch.Tensor) -> Vocos:
    """The architecture of charactr/vocos-encodec-24khz (its config.yaml), built without any download."""
    return Vocos(
        feature_extractor=_CodebookFeatures(codebook_weights, CODEBOOK_SIZE),
        backbone=VocosBackbone(
            input_channels=128,
            dim=384,
            intermediate_dim=1152,
            num_layers=8,
            adanorm_num_embeddings=len(VOCOS_BANDWIDTHS_KBPS),
        ),
        head=ISTFTHead(dim=384, n_fft=1280, hop_length=320, padding="same"),
    )


def build_vocos(weights: Weights, encoder: EncodecCodec) -> Vocos:
    """Build the Vocos decoder in eval mode.

    Args:
        weights: "pretrained" (`hf_hub_download` of the released pytorch_model.bin, as `Vocos.from_pretrained`
            does), "random", or a local Vocos state dict (EnCodec keys in it are ignored here).
        encoder: its codebooks seed the feature table, as `EncodecFeatures` seeds it (then overwritten by
            pretrained or local weights).

    Raises:
        WeightsError: the download failed or the file holds other weights.
    """
    source = resolve_weights(weights)
    layers = encoder.model.quantizer.vq.layers[:VOCOS_LEVELS]
    # EnCodec's `codebook` property returns a tensor; nn.Module's __getattr__ types it Tensor | Module.
    table = torch.cat([cast(torch.Tensor, layer.codebook) for layer in layers]).clone()
    with seeded():
        vocos = _build_vocos(table)
    if source == RANDOM:
        warn_random("vocos")
        return vocos.eval()
    if source == PRETRAINED:
        source = download(
            lambda: Path(huggingface_hub.hf_hub_download(repo_id=REPO_ID, filename=FILENAME)),
            f"Vocos weights ({REPO_ID})",
        )
    state = {k: v for k, v in load_state_dict(source).items() if not k.startswith(ENCODEC_PREFIX)}
    load_into(vocos, state, source, f"Vocos ({REPO_ID})")
    return vocos.eval()


def build_encoder(bandwidth_kbps: float, weights: Weights, encodec_weights: Weights | None) -> EncodecCodec:
    """The EnCodec that makes Vocos' codes; `encodec_weights=None` reuses `weights`.

    A local Vocos file serves as encoder weights too when it embeds EnCodec (`Vocos.state_dict()` does,
    under "feature_extractor.encodec."); the released pytorch_model.bin does not.
    """
    if encodec_weights is not None:
        return EncodecCodec(bandwidth_kbps, encodec_weights, weights_setting="codec.encodec_weights")
    source = resolve_weights(weights)
    if not isinstance(source, Path):
        return EncodecCodec(bandwidth_kbps, source)
    try:
        return EncodecCodec(bandwidth_kbps, source, weights_prefix=ENCODEC_PREFIX)
    except WeightsError as error:
        raise WeightsError(
            f"codec.weights={source} gives no EnCodec weights under {ENCODEC_PREFIX!r} ({error}); "
            f"set codec.encodec_weights=pretrained or to an EnCodec weights file (encodec_24khz-d7cc33bc.th)"
        ) from error


class VocosCodec(Codec):
    """EnCodec 24 kHz codes (75 Hz, 1024 entries, 2/4/8/16 levels) with a Vocos decoder.

    Args:
        bandwidth_kbps: 1.5, 3, 6 or 12 (2, 4, 8 or 16 levels); Vocos has no 24 kbps model.
        weights: the Vocos decoder's weights: "pretrained", "random", or a local state-dict file.
        encodec_weights: the EnCodec encoder's weights; None (default) takes them from `weights`.
    """

    def __init__(
        self,
        bandwidth_kbps: float = 6.0,
        weights: Weights = PRETRAINED,
        encodec_weights: Weights | None = None,
    ) -> None:
        super().__init__()
        bandwidth_id = vocos_bandwidth_id(bandwidth_kbps)  # before any download: a bad setting fails at once
        self.encoder = build_encoder(bandwidth_kbps, weights, encodec_weights)
        self.vocos = build_vocos(weights, self.encoder)
        # A buffer, so `.to(device)` moves it with the model; not saved: it follows from the settings.
        self.register_buffer("bandwidth_id", torch.tensor([bandwidth_id]), persistent=False)
        self.requires_grad_(False)
        self.info = self.describe(bandwidth_kbps, weights, encodec_weights)

    @staticmethod
    def describe(
        bandwidth_kbps: float = 6.0,
        weights: Weights = PRETRAINED,
        encodec_weights: Weights | None = None,
        **_: object,
    ) -> CodecInfo:
        """The CodecInfo these settings give, without building the model or downloading its weights.

        Its weights identity is the encoder's: the EnCodec weights that make the codes.
        """
        vocos_bandwidth_id(bandwidth_kbps)
        if encodec_weights is not None:
            encoder = EncodecCodec.describe(bandwidth_kbps, encodec_weights, "codec.encodec_weights")
        else:
            encoder = EncodecCodec.describe(bandwidth_kbps, weights)
        return replace(encoder, name="vocos")

    def _encode_padded(self, wav: torch.Tensor) -> torch.Tensor:
        return self.encoder._encode_padded(wav)

    def _decode_padded(self, codes: torch.Tensor) -> torch.Tensor:
        features = self.vocos.feature_extractor(codes)
        return self.vocos.decode(features, bandwidth_id=self.bandwidth_id)[:, None]

    def _decode_expected(self, codes: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
        features = self.vocos.feature_extractor.expected(codes, expected)
        return self.vocos.decode(features, bandwidth_id=self.bandwidth_id)[:, None]
