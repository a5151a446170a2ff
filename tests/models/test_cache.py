"""The decode-cache contract: what the decode loops may ask of a backbone's state, and the static step."""

from __future__ import annotations

import pytest
import torch

from tests.models.test_backbones import TINY, make_backbone
from valle.models.backbones import StaticStepping
from valle.models.cache import ContextWindow, StaticCache


@pytest.mark.parametrize("case", list(TINY))
@torch.no_grad()
def test_every_cache_clones_and_reorders_rows_with_their_positions(case):
    backbone = make_backbone(case)
    cache = backbone.new_cache(3, 16)
    backbone.step(torch.randn(3, 4, 64), cache, lengths=torch.tensor([4, 2, 3]))
    assert cache.next_position.tolist() == [4, 2, 3]
    copy = cache.clone()
    backbone.step(torch.randn(3, 1, 64), copy)
    assert cache.next_position.tolist() == [4, 2, 3] and copy.next_position.tolist() == [5, 3, 4]
    assert cache.reorder(torch.tensor([2, 2, 0])).next_position.tolist() == [3, 3, 4]


@pytest.mark.parametrize("case", list(TINY))
def test_a_static_step_exactly_where_the_backbone_and_its_cache_offer_one(case):
    backbone = make_backbone(case)
    static = TINY[case][0] == "transformer"
    assert isinstance(backbone, StaticStepping) == static
    assert isinstance(backbone.new_cache(1, 8), StaticCache) == static


def test_the_static_step_gives_the_eager_steps_hidden_states():
    backbone = make_backbone("transformer")
    assert isinstance(backbone, StaticStepping)
    prefix, steps = torch.randn(2, 5, 64), torch.randn(3, 2, 1, 64)  # three steps of two rows
    eager, static = backbone.new_cache(2, 12), backbone.new_cache(2, 12)
    lengths = torch.tensor([5, 3])
    with torch.no_grad():
        backbone.step(prefix, eager, lengths=lengths)
        backbone.step(prefix, static, lengths=lengths)
        view = static.static_view()  # made once: advance keeps it valid
        for x in steps:
            expected = backbone.step(x, eager)
            got = backbone.static_step(x, view)
            static.advance(1)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert static.next_position.tolist() == eager.next_position.tolist() == [8, 6]


def test_a_windowed_cache_has_no_static_view():
    backbone = make_backbone("transformer")
    window = ContextWindow(4, torch.tensor([3]))
    with pytest.raises(ValueError, match="no context window"):
        backbone.new_cache(1, 16, window=window).static_view()
