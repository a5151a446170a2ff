"""decode(): the AR, then the NAR, under one SamplerConfig (its limits and its one seeded generator)."""

from __future__ import annotations

import pytest
import torch

from valle.models.config import ValleConfig
from valle.models.valle import Valle
from valle.sampling.ar import decode_ar, decode_ar_beam
from valle.sampling.decode import ar_limits, decode
from valle.sampling.nar import decode_nar
from valle.sampling.pipeline import ArSampler, NarSampler, SamplerConfig, make_generator
from valle.utils.batch import Conditioning


def conditioning() -> Conditioning:
    g = torch.Generator().manual_seed(1)
    text = [torch.randint(1, 20, (n,), generator=g) for n in (9, 4)]
    prompts = [torch.randint(0, 32, (4, n), generator=g) for n in (12, 7)]
    return Conditioning.pad(text, prompts, 0, torch.tensor([False, True]))


@pytest.mark.parametrize(
    "config",
    [
        SamplerConfig(ar_temperature=0.0, max_ar_steps=10),
        SamplerConfig(ar_temperature=1.0, top_p=0.9, nar_temperature=0.7, seed=3, max_ar_steps_per_phoneme=2),
        SamplerConfig(ar_temperature=1.0, beam_width=2, seed=0, max_ar_steps=6),
    ],
    ids=["greedy", "seeded-per-phoneme-limits", "beam"],
)
def test_decode_is_the_ar_then_the_nar_with_the_configs_limits_and_generator(config):
    torch.manual_seed(0)
    model = Valle(ValleConfig.tiny().with_data(20, 4, 32)).eval()
    cond = conditioning()
    got = decode(model, cond, config)
    limits, generator = ar_limits(config, cond), make_generator(config.seed)
    sampler = ArSampler(config, model.config.stop_token)
    if config.beam_width > 1:
        ar = decode_ar_beam(model, cond, sampler, limits)
    else:
        ar = decode_ar(model, cond, sampler, limits, generator=generator)
    codes, _ = decode_nar(model, cond, ar.codes, ar.lengths, NarSampler(config), generator=generator)
    assert torch.equal(got.codes, codes) and torch.equal(got.lengths, ar.lengths)
    assert torch.equal(got.hit_limit, ar.hit_limit)
    assert got.codes.shape[:2] == (2, 4) and int(got.lengths.max()) <= limits.max_steps


def test_limits_come_from_the_sampler_config():
    cond = conditioning()
    per_phoneme = ar_limits(SamplerConfig(max_ar_steps_per_phoneme=2.0, max_ar_context=5), cond)
    assert per_phoneme.row_limits is not None and per_phoneme.row_limits.tolist() == [18, 8]
    assert per_phoneme.max_steps == 18 and per_phoneme.max_context == 5
    assert ar_limits(SamplerConfig(max_ar_steps=7), cond).max_steps == 7
