"""Codes from two computation paths agree up to near-ties of the nearest-codeword search.

A residual vector quantizer picks, level by level, the codeword nearest to what is left of the latents. Two
paths that compute the same latents in float (a padded batch against the library's own call, another thread
count, another SIMD or BLAS kernel, another CPU) agree on the latents only up to rounding, and an argmin over
1024 distances flips wherever its two best candidates are closer than that rounding: code 549 on one machine,
930 on another. Exact equality of codes is therefore not a property of the code. This is:

1. the two paths' latents agree within a tolerance (where the test can compute both);
2. every code of each path is the nearest codeword, up to a near-tie, to the residual its own earlier levels
   leave of the reference latents (distances recomputed here in float64). So where the paths part, at the
   first level where they do, both candidates lie within `tie_rtol` of each other on the same residual;
   the frame's later levels then quantize another residual, may all differ, and are checked by this rule;
3. the paths part in few frames: at most `max_flip_fraction` of the codes (and at least one is allowed).

A path that computes something else (a shifted frame, other weights, other padding, a wrong level) fails 1
or 2; `tests/helpers/test_helpers.py` checks that it does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import dac
import torch
from encodec import EncodecModel
from torch import Tensor
from torch.nn import functional as F

from valle.codecs.base import Codec
from valle.codecs.dac import DacCodec
from valle.codecs.encodec import EncodecCodec
from valle.codecs.mel import MelCodec
from valle.codecs.vocos import VocosCodec

# A near-tie: the two candidates' squared distances differ by at most this fraction of the terms that a
# float32 search adds up (|point|² + |codeword|²), which bound its rounding. Measured: the codes that flip
# between two paths (4 settings: 1 and 2 threads, default and AVX2 kernels) lie 1e-8 to 7e-8 apart; the two
# nearest codewords of the random EnCodec lie a median 3e-5 apart on its crowded first level (under 1e-6
# in 3 % of frames) and 1e-2 on the others.
TIE_RTOL = 1e-6
MAX_FLIP_FRACTION = 0.01
LATENT_RTOL = 1e-4  # of the largest latent: the float32 encoders measured agree to 3e-6 of it between paths


@dataclass(frozen=True)
class ResidualQuantizer:
    """A codec's residual vector quantizer seen from outside, to judge codes (not to make them).

    Attributes:
        latents: the padded batch the codec encodes, wav [B, 1, S] → pre-quantization latents [B, T, D].
        search: (level, residual [N, D]) → (points [N, D'], codebook [V, D']): where that level's
            nearest-codeword search happens.
        codewords: (level, codes [N]) → [N, D]: what that level takes off the residual.
    """

    latents: Callable[[Tensor], Tensor]
    search: Callable[[int, Tensor], tuple[Tensor, Tensor]]
    codewords: Callable[[int, Tensor], Tensor]


def encodec_quantizer(model: EncodecModel) -> ResidualQuantizer:
    """EnCodec's RVQ: Euclidean search on (projected) residuals, as `EuclideanCodebook.quantize` does."""
    layers = model.quantizer.vq.layers
    return ResidualQuantizer(
        latents=lambda wav: model.encoder(wav).transpose(1, 2),
        # the library keeps each level's EuclideanCodebook under this private name
        search=lambda level, residual: (layers[level].project_in(residual), layers[level]._codebook.embed),
        codewords=lambda level, codes: layers[level].project_out(layers[level]._codebook.embed[codes]),
    )


def dac_quantizer(model: dac.DAC) -> ResidualQuantizer:
    """DAC's RVQ: each level projects the residual to 8 dimensions and searches by cosine."""
    levels = model.quantizer.quantizers

    def search(level: int, residual: Tensor) -> tuple[Tensor, Tensor]:
        points = levels[level].in_proj(residual.T[None])[0].T
        return F.normalize(points), F.normalize(levels[level].codebook.weight)

    def codewords(level: int, codes: Tensor) -> Tensor:
        return levels[level].out_proj(levels[level].decode_code(codes[None]))[0].T

    return ResidualQuantizer(lambda wav: model.encoder(wav).transpose(1, 2), search, codewords)


def mel_quantizer(codec: MelCodec) -> ResidualQuantizer:
    """The mel codec's RVQ: Euclidean search on normalised log-mel frames."""
    return ResidualQuantizer(
        latents=lambda wav: codec.features(wav[:, 0]),
        search=lambda level, r: (r, codec.codebooks[level]),
        codewords=lambda level, codes: codec.codebooks[level][codes],
    )


def quantizer_for(codec: Codec) -> ResidualQuantizer:
    """The quantizer whose codes `codec.encode` returns (Vocos' codes are its EnCodec encoder's)."""
    if isinstance(codec, VocosCodec):
        codec = codec.encoder
    if isinstance(codec, EncodecCodec):
        return encodec_quantizer(codec.model)
    if isinstance(codec, DacCodec):
        return dac_quantizer(codec.model)
    if isinstance(codec, MelCodec):
        return mel_quantizer(codec)
    raise TypeError(f"no ResidualQuantizer for {type(codec).__name__}: add one to tests/helpers/codes.py")


@torch.inference_mode()
def codec_latents(codec: Codec, wav: Tensor, sample_rate: int) -> Tensor:
    """The latents [T, D] that `codec.encode(wav, sample_rate)` quantizes, computed as it computes them."""
    batch, frames = codec.padded_batch([wav], sample_rate)
    return quantizer_for(codec).latents(batch)[0, : int(frames[0])]


def assert_latents_close(expected: Tensor, got: Tensor, rtol: float = LATENT_RTOL) -> None:
    """Two paths' latents [T, D] agree within `rtol` of the largest one."""
    atol = rtol * float(expected.abs().max())
    torch.testing.assert_close(got.float(), expected.float(), rtol=rtol, atol=atol)


def assert_codes_match_up_to_near_ties(
    quantizer: ResidualQuantizer,
    expected: Tensor,
    got: Tensor,
    latents: Tensor,
    *,
    got_latents: Tensor | None = None,
    tie_rtol: float = TIE_RTOL,
    max_flip_fraction: float = MAX_FLIP_FRACTION,
) -> None:
    """Assert that `got` equals `expected` wherever the quantizer's choice is not a near-tie (see the module).

    Args:
        quantizer: the codec's quantizer, e.g. `quantizer_for(codec)`.
        expected: [L, T] codes of the reference path (L may be fewer than the codec's levels).
        got: [L, T] codes of the other path.
        latents: [T, D] pre-quantization latents of the reference path.
        got_latents: [T, D] the other path's latents, where the test can compute them.
        tie_rtol: largest distance gap, relative to the search's terms, that counts as a tie.
        max_flip_fraction: most frames in which the paths may part, as a fraction of the codes.
    """
    assert got.shape == expected.shape, f"codes shaped {tuple(got.shape)}, expected {tuple(expected.shape)}"
    assert latents.shape[0] == expected.shape[1], f"{latents.shape[0]} latents for {expected.shape[1]} frames"
    if got_latents is not None:
        assert_latents_close(latents, got_latents)
    with torch.inference_mode():
        for name, codes in (("expected", expected), ("got", got)):
            _assert_nearest_up_to_ties(quantizer, codes.long(), latents, tie_rtol, name)
    parted = (expected.long() != got.long()).any(dim=0).nonzero().flatten().tolist()
    limit = max(1, math.ceil(max_flip_fraction * expected.numel()))
    assert len(parted) <= limit, (
        f"the paths part on near-ties in {len(parted)} frames {parted}, more than {limit} "
        f"({max_flip_fraction:.0%} of {expected.numel()} codes)"
    )


def _assert_nearest_up_to_ties(
    quantizer: ResidualQuantizer, codes: Tensor, latents: Tensor, tie_rtol: float, name: str
) -> None:
    """Each level's code is within `tie_rtol` of the nearest codeword to the residual that the path's own
    earlier levels leave of `latents`."""
    residual = latents.float()
    for level, chosen in enumerate(codes):
        points, codebook = (x.double() for x in quantizer.search(level, residual))
        distances = points.pow(2).sum(1, keepdim=True) - 2 * points @ codebook.T + codebook.pow(2).sum(1)
        scale = points.pow(2).sum(1) + codebook.pow(2).sum(1).max()
        excess = (distances.gather(1, chosen[:, None])[:, 0] - distances.min(1).values) / scale
        frame = int(excess.argmax())
        assert excess[frame] <= tie_rtol, (
            f"{name} codes, level {level}, frame {frame}: code {int(chosen[frame])} is not the nearest "
            f"codeword ({int(distances[frame].argmin())} is nearer by {float(excess[frame]):.1e} of the "
            f"distances' terms; a near-tie is at most {tie_rtol:.0e}): they do not quantize these latents"
        )
        residual = residual - quantizer.codewords(level, chosen)
