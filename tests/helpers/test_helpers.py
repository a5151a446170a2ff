"""The parity helpers let rounding through and nothing else: each fails on a path that computes otherwise."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers.codes import (
    ResidualQuantizer,
    assert_codes_match_up_to_near_ties,
    codec_latents,
    quantizer_for,
)
from tests.helpers.decoding import RecordingSampler, assert_decodes_match_up_to_near_ties
from valle.codecs import build_codec
from valle.models.config import ValleConfig
from valle.models.valle import Valle
from valle.sampling.ar import ArResult, DecodeLimits, decode_ar
from valle.sampling.pipeline import SamplerConfig
from valle.utils.batch import Conditioning

# --- codes ------------------------------------------------------------------------------------------------


def euclidean(codebooks: torch.Tensor) -> ResidualQuantizer:
    """A plain RVQ over latents [T, D] with codebooks [L, V, D]."""
    return ResidualQuantizer(
        latents=lambda wav: wav,
        search=lambda level, r: (r, codebooks[level]),
        codewords=lambda level, codes: codebooks[level][codes],
    )


# Level 0 has codewords at -1 and +1 on the first axis; level 1 at ±0.1 on the second.
BOOKS = torch.tensor([[[-1.0, 0.0], [1.0, 0.0]], [[0.0, -0.1], [0.0, 0.1]]])


def test_a_flip_on_an_exact_tie_passes_with_the_frame_it_changes():
    latents = torch.tensor([[0.0, 0.05], [0.9, -0.05], [-0.8, 0.05]] * 40)  # frame 0: level 0 is an exact tie
    expected = torch.stack([torch.tensor([0, 1, 0] * 40), torch.tensor([1, 0, 1] * 40)])
    got = expected.clone()
    got[0, 0] = 1  # the other side of the tie; level 1 then sees another residual, here the same choice
    assert_codes_match_up_to_near_ties(euclidean(BOOKS), expected, got, latents)


def test_a_code_that_is_not_a_near_tie_fails():
    latents = torch.tensor([[0.9, 0.05], [-0.8, 0.05]])
    expected = torch.tensor([[1, 0], [1, 1]])
    got = torch.tensor([[0, 0], [1, 1]])  # frame 0 takes the far codeword at level 0
    with pytest.raises(AssertionError, match="got codes, level 0, frame 0: code 0 is not the nearest"):
        assert_codes_match_up_to_near_ties(euclidean(BOOKS), expected, got, latents)


def test_more_flips_than_the_bound_fail_even_on_ties():
    latents = torch.tensor([[0.0, 0.05]] * 10)  # every frame ties at level 0
    expected = torch.stack([torch.zeros(10, dtype=torch.long), torch.ones(10, dtype=torch.long)])
    got = expected.clone()
    got[0, :3] = 1
    with pytest.raises(AssertionError, match=r"part on near-ties in 3 frames \[0, 1, 2\], more than 1"):
        assert_codes_match_up_to_near_ties(euclidean(BOOKS), expected, got, latents)
    assert_codes_match_up_to_near_ties(euclidean(BOOKS), expected, got, latents, max_flip_fraction=0.15)


@pytest.fixture(scope="module")
def encodec():
    return build_codec("encodec", bandwidth_kbps=3, weights="random")


def chirp(seconds: float) -> torch.Tensor:
    t = torch.arange(round(seconds * 24_000)) / 24_000
    return 0.3 * torch.sin(2 * math.pi * (150 + 400 * t) * t)


def test_real_codes_pass_and_shifted_or_foreign_codes_fail(encodec):
    wav = chirp(0.3)
    quantizer, codes = quantizer_for(encodec), encodec.encode(wav, 24_000)
    latents = codec_latents(encodec, wav, 24_000)
    assert_codes_match_up_to_near_ties(quantizer, codes, codes.clone(), latents)
    with pytest.raises(AssertionError, match="not the nearest codeword"):  # one frame late
        assert_codes_match_up_to_near_ties(quantizer, codes, codes.roll(1, dims=1), latents)
    with pytest.raises(AssertionError, match="not the nearest codeword"):  # another signal's codes
        other = encodec.encode(0.5 * chirp(0.3).flip(0), 24_000)
        assert_codes_match_up_to_near_ties(quantizer, codes, other, latents)
    with pytest.raises(AssertionError, match="Tensor-likes are not close"):  # other latents
        assert_codes_match_up_to_near_ties(quantizer, codes, codes, latents, got_latents=latents * 1.01)


# --- decoding ---------------------------------------------------------------------------------------------


def recorded(tokens: list[list[int]], logits: list[list[list[float]]]) -> tuple[ArResult, RecordingSampler]:
    """A hand-made greedy decode: tokens [B, steps] (the last one stop) and the logits of each step."""
    steps = RecordingSampler(SamplerConfig(ar_temperature=0.0), stop_token=2)
    for step in range(len(tokens[0])):
        steps.logits.append(torch.tensor([row[step] for row in logits]))
        steps.scores.append(steps.logits[-1])
        steps.tokens.append(torch.tensor([row[step] for row in tokens]))
    codes = torch.tensor([row[:-1] for row in tokens])
    lengths = torch.full((len(tokens),), len(tokens[0]) - 1)
    return ArResult(codes, lengths, torch.zeros(len(tokens), dtype=torch.bool)), steps


def test_greedy_may_part_only_on_a_near_tie():
    expected = recorded([[0, 1, 2]], [[[2.0, 1.0, 0.0], [1.0, 1.0 + 1e-6, 0.0], [0.0, 0.0, 3.0]]])
    tied = recorded([[0, 0, 2]], [[[2.0, 1.0, 0.0], [1.0 + 2e-6, 1.0, 0.0], [0.0, 0.0, 3.0]]])
    assert_decodes_match_up_to_near_ties(*expected, *tied)  # parted at step 1, on a gap of 1e-6
    far = recorded([[1, 1, 2]], [[[2.0, 1.0, 0.0], [1.0, 1.0 + 1e-6, 0.0], [0.0, 0.0, 3.0]]])
    with pytest.raises(AssertionError, match="row 0, step 0: greedy chose 1 instead of 0"):
        assert_decodes_match_up_to_near_ties(*expected, *far)


def test_a_cache_that_forgets_each_step_fails_at_its_first_step(monkeypatch):
    torch.manual_seed(0)
    model = Valle(ValleConfig.tiny().with_data(20, 4, 32)).eval()
    g = torch.Generator().manual_seed(1)
    cond = Conditioning(
        torch.randint(0, 20, (2, 9), generator=g),
        torch.tensor([9, 6]),
        torch.randint(0, 32, (2, 4, 12), generator=g),
        torch.tensor([12, 7]),
    )

    def decode() -> tuple[ArResult, RecordingSampler]:
        steps = RecordingSampler(SamplerConfig(ar_temperature=0.0), model.config.stop_token)
        return decode_ar(model, cond, steps, DecodeLimits(8)), steps

    expected = decode()
    assert_decodes_match_up_to_near_ties(*expected, *decode())
    backbone, step = model.ar.backbone, model.ar.backbone.step

    def forgetful(x, cache, **kwargs):  # each decode step runs on a copy: the cache never keeps a new token
        return step(x, cache.clone() if x.shape[1] == 1 else cache, **kwargs)

    monkeypatch.setattr(backbone, "step", forgetful)
    with pytest.raises(AssertionError, match="step 2: the logits differ after the same tokens"):
        assert_decodes_match_up_to_near_ties(*expected, *decode())
