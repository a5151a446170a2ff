"""EnCodec 24 kHz (Défossez et al., 2022) behind the `Codec` interface.

A causal convolutional codec: 75 frames per second, codebooks of 1024 entries, and as many residual levels
as the bandwidth buys (2, 4, 8, 16 or 32 levels at 1.5, 3, 6, 12 or 24 kbps).
"""

from __future__ import annotations

from typing import Any

import torch
from encodec import EncodecModel

from valle.codecs.base import Codec, CodecInfo
from valle.codecs.weights import (
    PRETRAINED,
    RANDOM,
    Weights,
    download,
    load_into,
    load_state_dict,
    resolve_weights,
    seeded,
    warn_random,
    weights_identity,
)
from valle.errors import ConfigError

SAMPLE_RATE = 24_000
FRAME_RATE = 75  # 24 000 Hz / hop 320
CODEBOOK_SIZE = 1024  # 10 bits per code
BANDWIDTHS_KBPS = (1.5, 3.0, 6.0, 12.0, 24.0)


def check_bandwidth(bandwidth_kbps: float) -> float:
    """Return `bandwidth_kbps` as a float, or raise naming the valid settings."""
    if float(bandwidth_kbps) not in BANDWIDTHS_KBPS:
        choices = ", ".join(f"{b:g} ({levels_for_bandwidth(b)} levels)" for b in BANDWIDTHS_KBPS)
        raise ConfigError(
            f"EnCodec 24 kHz has no {bandwidth_kbps} kbps setting; set bandwidth_kbps to one of {choices}"
        )
    return float(bandwidth_kbps)


def levels_for_bandwidth(bandwidth_kbps: float) -> int:
    """Residual levels at a bandwidth: each level costs 75 frames/s × 10 bits = 0.75 kbps."""
    return int(bandwidth_kbps * 1000) // (FRAME_RATE * 10)


def build_encodec_model(weights: Weights, setting: str = "codec.weights", prefix: str = "") -> EncodecModel:
    """Build EnCodec 24 kHz in eval mode.

    Args:
        weights: "pretrained" (torch.hub download of encodec_24khz-d7cc33bc.th, as the encodec package does),
            "random", or a local file holding the state dict the encodec package saves.
        setting: config key named in messages.
        prefix: with a local file, read only the keys under this prefix (e.g. from a Vocos state dict).

    Raises:
        WeightsError: the download failed or the file holds other weights.
    """
    source = resolve_weights(weights, setting)
    if source == PRETRAINED:
        return download(
            lambda: EncodecModel.encodec_model_24khz(pretrained=True), "EnCodec 24 kHz weights", setting
        )
    with seeded():
        model = EncodecModel.encodec_model_24khz(pretrained=False)
        if source == RANDOM:
            warn_random("encodec", setting)
            _spread_codebooks(model)
    if source != RANDOM:
        load_into(model, load_state_dict(source, prefix), source, "EnCodec 24 kHz")
    return model.eval()


@torch.no_grad()
def _spread_codebooks(model: EncodecModel) -> None:
    """Give an untrained EnCodec codebooks that tell its encoder's outputs apart.

    EnCodec's codebooks start at zero and are filled by k-means on the first training batch, so an untrained
    model maps every frame to code 0. Its random encoder's output also barely moves over time, so codebooks
    drawn at an arbitrary scale do little better. Each level's codebook is drawn instead from a Gaussian
    fitted to that level's residual on noise: codes then vary from frame to frame, as real codes do.
    """
    residual = model.encoder(0.1 * torch.randn(1, 1, SAMPLE_RATE))[0].t()  # [frames, dim]
    for layer in model.quantizer.vq.layers:
        # The library keeps its EuclideanCodebook under this private name; its buffers carry no types.
        codebook: Any = layer._codebook
        embed = residual.mean(0) + residual.std(0) * torch.randn(codebook.codebook_size, residual.shape[1])
        codebook.embed.copy_(embed)
        codebook.embed_avg.copy_(embed)
        codebook.inited.fill_(1.0)
        residual = residual - codebook.decode(codebook.encode(residual))


class EncodecCodec(Codec):
    """EnCodec 24 kHz: 75 Hz frames, 1024-entry codebooks, 2 to 32 levels by bandwidth.

    The encoder is causal, so a batch encodes exactly as its items do one by one.

    Args:
        bandwidth_kbps: 1.5, 3, 6, 12 or 24 → 2, 4, 8, 16 or 32 levels.
        weights: "pretrained", "random", or a local state-dict file (encodec_24khz-d7cc33bc.th).
        weights_prefix: with a local file, the key prefix of EnCodec's weights inside it (empty for the
            encodec package's own file; "feature_extractor.encodec." inside a Vocos state dict).
        weights_setting: the config key `weights` came from, named in messages.
    """

    def __init__(
        self,
        bandwidth_kbps: float = 6.0,
        weights: Weights = PRETRAINED,
        *,
        weights_prefix: str = "",
        weights_setting: str = "codec.weights",
    ) -> None:
        super().__init__()
        # before any download: a bad setting fails at once
        self.info = self.describe(bandwidth_kbps, weights, weights_setting=weights_setting)
        self.model = build_encodec_model(weights, weights_setting, weights_prefix)
        self.model.set_target_bandwidth(check_bandwidth(bandwidth_kbps))
        self.requires_grad_(False)

    @staticmethod
    def describe(
        bandwidth_kbps: float = 6.0,
        weights: Weights = PRETRAINED,
        weights_setting: str = "codec.weights",
        **_: object,
    ) -> CodecInfo:
        """The CodecInfo these settings give, without building the model or downloading its weights."""
        bandwidth = check_bandwidth(bandwidth_kbps)
        return CodecInfo(
            name="encodec",
            sample_rate=SAMPLE_RATE,
            frame_rate=float(FRAME_RATE),
            n_levels=levels_for_bandwidth(bandwidth),
            codebook_size=CODEBOOK_SIZE,
            variant=f"{bandwidth:g}kbps",
            weights=weights_identity(weights, weights_setting),
        )

    def _encode_padded(self, wav: torch.Tensor) -> torch.Tensor:
        # One (codes, scale) pair: the 24 kHz model neither splits into segments nor normalises the volume.
        [(codes, _)] = self.model.encode(wav)
        return codes

    def _decode_padded(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode([(codes, None)])

    def _decode_expected(self, codes: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
        # EnCodec's `quantizer.decode`: each level's codeword through its (linear) project_out, summed; a
        # linear map of the expected codeword is the expected mapped codeword
        layers: Any = self.model.quantizer.vq.layers[: codes.shape[1]]  # the library's modules carry no types
        latent = layers[0].decode(codes[:, 0])  # [B, D, T]
        for level, layer in enumerate(layers[1:]):
            mixed = expected[:, level] @ layer._codebook.embed  # [B, T, codebook dim]
            latent = latent + layer.project_out(mixed).transpose(1, 2)
        return self.model.decoder(latent)
