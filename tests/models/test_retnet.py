"""RetNet specifics beyond the backbone contract: torchscale parity, long prefills and the mixture of experts.

The contract itself (incremental decoding = full forward, padding, cache copies) runs on RetNet through
`TINY` in test_backbones.py.
"""

from __future__ import annotations

import pytest
import torch
from torchscale.architecture.retnet import RetNetDecoder

from valle.models.backbones import build_backbone
from valle.models.backbones.retnet import RetNetBackbone

D_MODEL = 64
MOE = {"moe_freq": 1, "moe_expert_count": 2}


def tiny(**settings) -> RetNetBackbone:
    torch.manual_seed(0)
    settings = {"d_model": D_MODEL, "n_heads": 4, "n_layers": 2, "ff_mult": 2, "dropout": 0.0, **settings}
    return build_backbone("retnet", **settings)


def plain_torchscale(backbone: RetNetBackbone) -> RetNetDecoder:
    """torchscale's own dense decoder carrying the backbone's weights (the keys must match exactly)."""
    decoder = RetNetDecoder(backbone.decoder.args).eval()
    decoder.load_state_dict(backbone.decoder.state_dict(), strict=True)
    return decoder


@torch.no_grad()
def test_forward_is_torchscale_parallel_form() -> None:
    backbone = tiny().eval()
    x = torch.randn(2, 7, D_MODEL)
    expected, _ = plain_torchscale(backbone)(x, token_embeddings=x, features_only=True)
    # The same computation in another module: equal up to the rounding of kernels on other memory.
    torch.testing.assert_close(backbone(x, torch.tensor([7, 7]), causal=True).hidden, expected)


@torch.no_grad()
def test_step_follows_torchscale_recurrent_form() -> None:
    """One row, one token per call: our batched recurrence and torchscale's agree (torchscale omits the
    parallel form's |sum(QK)| normaliser, which its group norm cancels up to eps, hence the tolerance)."""
    backbone = tiny().eval()
    decoder = plain_torchscale(backbone)
    x = torch.randn(1, 6, D_MODEL)
    state: dict = {}
    cache = backbone.new_cache(1, 6)
    for t in range(6):
        # torchscale takes the position from the length of its first argument.
        ours = backbone.step(x[:, t : t + 1], cache)
        theirs, _ = decoder(
            x[:, : t + 1], incremental_state=state, token_embeddings=x[:, t : t + 1], features_only=True
        )
        assert (ours - theirs).abs().max() < 1e-4, f"position {t}"


@torch.no_grad()
def test_long_prefill_in_one_chunk_matches_forward() -> None:
    """A prefill hundreds of positions long stays finite (decay powers are clamped) and exact."""
    backbone = tiny().eval()
    lengths = torch.tensor([300, 170])
    x = torch.randn(2, 300, D_MODEL)
    full = backbone(x, lengths, causal=True).hidden
    cache = backbone.new_cache(2, 302)
    prefill = backbone.step(x, cache, lengths=lengths)
    token = torch.randn(2, 1, D_MODEL)
    after = backbone.step(token, cache)[:, 0]
    for b, n in enumerate(lengths.tolist()):
        assert (prefill[b, :n] - full[b, :n]).abs().max() < 1e-4
        row = torch.cat([x[b : b + 1, :n], token[b : b + 1]], dim=1)
        expected = backbone(row, torch.tensor([n + 1]), causal=True).hidden[0, n]
        assert (after[b] - expected).abs().max() < 1e-4


def test_dense_aux_loss_is_zero() -> None:
    backbone = tiny()
    out = backbone(torch.randn(2, 5, D_MODEL), torch.tensor([5, 3]), causal=True)
    assert out.aux_loss.item() == 0.0


@pytest.mark.parametrize("top1", [True, False], ids=["top1", "top2"])
def test_moe_aux_loss_and_gradients_reach_every_expert(top1: bool) -> None:
    backbone = tiny(**MOE, moe_top1_expert=top1).train()
    x = torch.randn(4, 12, D_MODEL)
    out = backbone(x, torch.tensor([12, 9, 7, 12]), causal=True)
    assert out.aux_loss.item() > 0
    (out.hidden.square().mean() + out.aux_loss).backward()
    for i, layer in enumerate(backbone.decoder.layers):
        assert layer.is_moe_layer
        assert layer.moe_layer.gate.wg.weight.grad.abs().sum() > 0, f"layer {i} gate"
        for e, expert in enumerate(layer.moe_layer.experts):
            assert expert.fc1.weight.grad.abs().sum() > 0, f"layer {i} expert {e}"


def test_moe_every_other_layer() -> None:
    backbone = tiny(moe_freq=2, moe_expert_count=2, n_layers=4)
    assert [layer.is_moe_layer for layer in backbone.decoder.layers] == [False, True, False, True]


@torch.no_grad()
def test_moe_padding_never_leaks_in_training_mode() -> None:
    """Without expert capacity no token is dropped, so padding cannot crowd real tokens out of an expert."""
    backbone = tiny(**MOE).train()
    x = torch.randn(2, 9, D_MODEL)
    lengths = torch.tensor([6, 9])
    before = backbone(x, lengths, causal=True).hidden
    x[0, 6:] = torch.randn(3, D_MODEL) * 100
    after = backbone(x, lengths, causal=True).hidden
    assert (after[0, :6] - before[0, :6]).abs().max() < 1e-5
    assert (after[1] - before[1]).abs().max() < 1e-5


def test_moe_needs_experts() -> None:
    with pytest.raises(ValueError, match="moe_expert_count"):
        tiny(moe_freq=1, moe_expert_count=1)
