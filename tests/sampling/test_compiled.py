"""The static decode step: eager equals `decode_ar`, compiled equals eager (greedy tokens)."""

from __future__ import annotations

import pytest
import torch

from valle.models.config import BackboneConfig, ValleConfig
from valle.models.valle import Valle
from valle.sampling.ar import decode_ar
from valle.sampling.compiled import GreedyDecoder, make_step


class Greedy:
    """An argmax sampler with the `ArSampler` call shape; `no_stop` masks the stop logit."""

    def __init__(self, no_stop: bool) -> None:
        self.no_stop = no_stop

    def new_state(self, batch, device="cpu"):
        return None

    def __call__(self, logits, history, step, generator=None, state=None):
        return (logits[:, :-1] if self.no_stop else logits).argmax(dim=-1)


def tiny_model(**overrides) -> Valle:
    torch.manual_seed(0)
    return Valle(ValleConfig.tiny(**overrides).with_data(20, 4, 32)).eval()


def batch():
    g = torch.Generator().manual_seed(1)
    text = torch.randint(0, 20, (2, 9), generator=g)
    prompt = torch.randint(0, 32, (2, 4, 12), generator=g)
    return text, torch.tensor([9, 6]), prompt, torch.tensor([12, 7])


def test_eager_static_step_matches_decode_ar():
    model = tiny_model()
    expected = decode_ar(model, *batch(), sampler=Greedy(no_stop=True), max_steps=25).codes
    got = GreedyDecoder(model, compile=False)(*batch(), max_steps=25, allow_stop=False).codes
    assert torch.equal(got, expected)


def test_stop_ends_rows_like_decode_ar():
    model = tiny_model()
    model.ar.heads.bias.data[0, -1] = 3.0  # make stop likely so rows end at different steps
    expected = decode_ar(model, *batch(), sampler=Greedy(no_stop=False), max_steps=25)
    got = GreedyDecoder(model, compile=False)(*batch(), max_steps=25)
    assert torch.equal(got.lengths, expected.lengths)
    assert torch.equal(got.codes, expected.codes)


def test_needs_the_transformer_backbone():
    model = tiny_model(shared=False, backbone=BackboneConfig("retnet", 0.0),
                       nar_backbone=BackboneConfig("transformer", 0.0))
    with pytest.raises(TypeError, match="transformer"):
        make_step(model)


@pytest.mark.slow  # inductor compilation takes 1-2 minutes on 2 CPU cores
def test_compiled_matches_eager():
    model = tiny_model()
    eager = GreedyDecoder(model, compile=False)(*batch(), max_steps=25, allow_stop=False).codes
    decoder = GreedyDecoder(model, compile=True)
    compiled = decoder(*batch(), max_steps=25, allow_stop=False).codes
    assert decoder.compiled, "compilation fell back to eager"
    assert torch.equal(compiled, eager)
