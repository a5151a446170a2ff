"""The fast path: the static step gives decode_ar's tokens; compiled equals eager; fallbacks are logged."""

from __future__ import annotations

import logging

import pytest
import torch

from tests.helpers.decoding import RecordingSampler, assert_decodes_match_up_to_near_ties
from valle.models.config import BackboneConfig, ValleConfig
from valle.models.valle import Valle
from valle.sampling.ar import DecodeLimits, decode_ar
from valle.sampling.compiled import FastStep, fast_step, static_capacity
from valle.sampling.pipeline import SamplerConfig
from valle.utils.batch import Conditioning


def tiny_model(**overrides) -> Valle:
    torch.manual_seed(0)
    return Valle(ValleConfig.tiny(**overrides).with_data(20, 4, 32)).eval()


def batch() -> Conditioning:
    g = torch.Generator().manual_seed(1)
    text = torch.randint(0, 20, (2, 9), generator=g)
    prompt = torch.randint(0, 32, (2, 4, 12), generator=g)
    return Conditioning(text, torch.tensor([9, 6]), prompt, torch.tensor([12, 7]))


def decode(model, fast, **sampler) -> tuple:
    """(ArResult, the RecordingSampler that saw every step): greedy unless `sampler` says otherwise."""
    recorder = RecordingSampler(SamplerConfig(**{"ar_temperature": 0.0, **sampler}), model.config.stop_token)
    generator = torch.Generator().manual_seed(0)
    result = decode_ar(model, batch(), recorder, DecodeLimits(30), generator=generator, fast=fast)
    return result, recorder


def eager_static(model, monkeypatch):
    """decode_ar with the static step left uncompiled."""
    import valle.sampling.compiled as compiled

    monkeypatch.setitem(compiled._steps, model, FastStep(model, compile=False))


def test_static_step_gives_the_eager_loops_tokens_and_stops(monkeypatch):
    model = tiny_model()
    model.ar.heads.bias.data[0, -1] = 2.5  # stop is likely: rows end at different steps
    eager_static(model, monkeypatch)
    for sampler in ({}, {"ar_temperature": 1.0, "top_p": 0.9, "seed": 3}):
        expected = decode(model, False, **sampler)
        # Another attention shape (a padded static cache): the same logits up to rounding, the same tokens
        # up to near-ties (tests/helpers/decoding.py).
        assert_decodes_match_up_to_near_ties(*expected, *decode(model, True, **sampler))
    assert len(set(expected[0].lengths.tolist())) == 2


def test_unsupported_setups_fall_back_with_a_log_line(caplog):
    retnet = tiny_model(
        shared=False, backbone=BackboneConfig("retnet", 0.0), nar_backbone=BackboneConfig("transformer", 0.0)
    )
    with caplog.at_level(logging.INFO, logger="valle.sampling.compiled"):
        assert fast_step(retnet, None) is None and fast_step(tiny_model(), 8) is None
    assert "transformer backbone" in caplog.text and "max_ar_context" in caplog.text
    assert static_capacity(1) == 64 and static_capacity(64) == 64 and static_capacity(65) == 128


def test_a_failing_compiler_falls_back_to_eager_with_a_warning(monkeypatch, caplog):
    model = tiny_model()

    def backend_without_a_compiler(graph, example_inputs):  # what a machine without a C++ toolchain does
        raise RuntimeError("no C++ compiler found")

    step = FastStep(model, backend=backend_without_a_compiler)
    import valle.sampling.compiled as compiled

    monkeypatch.setitem(compiled._steps, model, step)
    with caplog.at_level(logging.WARNING):
        got = decode(model, True)
    assert "decoding eagerly" in caplog.text and not step.compiled
    assert_decodes_match_up_to_near_ties(*decode(model, False), *got)


@pytest.mark.slow  # inductor compiles the step: about a minute on 2 CPU cores
def test_compiled_step_gives_the_eager_tokens():
    model = tiny_model()
    got = decode(model, True)
    assert fast_step(model, None).compiled, "compilation fell back to eager"
    assert_decodes_match_up_to_near_ties(*decode(model, False), *got)
