"""Classifier-free guidance (`sampler.cfg_scale`, valle.sampling.ar.Guide): every decode path mixes the
conditional logits with those of the same rows shown no text.

At cfg_scale = 0 the mix is the unconditional logits exactly (u + 0 · (c - u)), so a guided decode must
give the tokens of decoding the text-less rows themselves: that ties the guide's rows (prefill, steps,
beam reordering) to what `Conditioning.without_text` lays out. The models run in float64.
"""

from __future__ import annotations

import pytest
import torch

from valle.errors import ConfigError
from valle.models.config import ValleConfig
from valle.models.valle import Valle
from valle.sampling.ar import DecodeLimits, decode_ar, decode_ar_beam
from valle.sampling.pipeline import ArSampler, SamplerConfig
from valle.utils.batch import Conditioning


@pytest.fixture(autouse=True)
def no_grad():
    with torch.inference_mode():
        yield


def guidable(text_dropout: float = 0.15) -> Valle:
    torch.manual_seed(0)
    return Valle(ValleConfig.tiny(text_dropout=text_dropout).with_data(20, 3, 32)).double().eval()


def cond() -> Conditioning:
    g = torch.Generator().manual_seed(1)
    texts = [torch.randint(1, 20, (n,), generator=g) for n in (9, 5)]
    prompts = [torch.randint(0, 32, (3, n), generator=g) for n in (12, 7)]
    return Conditioning.pad(texts, prompts, 0)


def sample(model: Valle, rows: Conditioning, config: SamplerConfig) -> list[list[int]]:
    decode = decode_ar_beam if config.beam_width > 1 else decode_ar
    result = decode(
        model,
        rows,
        ArSampler(config, model.config.stop_token),
        DecodeLimits(20),
        generator=torch.Generator().manual_seed(3),
    )
    return [result.codes[b, : int(n)].tolist() for b, n in enumerate(result.lengths)]


@pytest.mark.parametrize(
    "config",
    [
        SamplerConfig(ar_temperature=1.0, top_p=0.9, max_ar_steps=20),
        SamplerConfig(ar_temperature=0.0, repetition_penalty=1.2, max_ar_steps=20),
        SamplerConfig(ar_temperature=0.0, beam_width=3, max_ar_steps=20),
    ],
    ids=["top-p", "greedy+penalty", "beam"],
)
def test_guidance_at_scale_zero_decodes_the_rows_shown_no_text(config):
    from dataclasses import replace

    model = guidable()
    unconditional = sample(model, cond().without_text(), config)
    guided = sample(model, cond(), replace(config, cfg_scale=0.0))
    assert guided == unconditional
    assert sample(model, cond(), config) != unconditional  # the text does change what is said


def test_guidance_changes_the_tokens_and_keeps_the_seed_repeatable():
    model = guidable()
    plain = SamplerConfig(ar_temperature=1.0, max_ar_steps=20)
    guided = SamplerConfig(ar_temperature=1.0, max_ar_steps=20, cfg_scale=3.0)
    first = sample(model, cond(), guided)
    assert first == sample(model, cond(), guided)
    assert first != sample(model, cond(), plain)


def test_guidance_needs_a_model_trained_with_text_dropout():
    model = guidable(text_dropout=0.0)
    with pytest.raises(ConfigError, match=r"model.text_dropout > 0.*cfg_scale=1"):
        sample(model, cond(), SamplerConfig(cfg_scale=2.0, max_ar_steps=20))
    sample(model, cond(), SamplerConfig(cfg_scale=1.0, max_ar_steps=20))  # off: any model


def test_cfg_scale_outside_its_range_is_refused():
    with pytest.raises(ConfigError, match=r"cfg_scale=-1.0 must lie in \[0, 10\]"):
        SamplerConfig(cfg_scale=-1.0)
