"""LoRA adapters: a no-op when fresh, only adapters train, merging keeps outputs, adapters round-trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from valle.models.backbones import build_backbone
from valle.models.lora import (
    LoRAConfig,
    LoRALinear,
    apply_lora,
    load_lora_state_dict,
    lora_state_dict,
    merge_lora,
)


class TwoBackbones(nn.Module):
    """An AR and a NAR backbone with a head, named as the full model names them."""

    def __init__(self) -> None:
        super().__init__()
        settings = {"d_model": 32, "n_heads": 2, "n_layers": 2, "ff_mult": 2, "dropout": 0.0}
        self.ar_backbone = build_backbone("transformer", **settings)
        self.nar_backbone = build_backbone("transformer", **settings)
        self.head = nn.Linear(32, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lengths = torch.full((x.shape[0],), x.shape[1])
        h = (
            self.ar_backbone(x, lengths, causal=True).hidden
            + self.nar_backbone(x, lengths, causal=False).hidden
        )
        return self.head(h)


@pytest.fixture
def model() -> TwoBackbones:
    torch.manual_seed(0)
    return TwoBackbones().eval()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(1))


def train_adapters(model: nn.Module, x: torch.Tensor, steps: int = 3) -> None:
    """A few Adam steps pulling the outputs toward a random target (a toy regression)."""
    target = torch.randn_like(model(x))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), target).backward()
        opt.step()


def test_default_targets_wrap_every_backbone_projection(model) -> None:
    wrapped = apply_lora(model, LoRAConfig())
    # 2 backbones × 2 blocks × (qkv, out, up, down); the head is not a target.
    assert len(wrapped) == 16
    assert "ar_backbone.blocks.0.attn.qkv" in wrapped and "nar_backbone.blocks.1.ff.down" in wrapped
    assert all(isinstance(model.get_submodule(n), LoRALinear) for n in wrapped)


def test_fresh_adapter_leaves_outputs_unchanged(model, x) -> None:
    before = model(x)
    apply_lora(model, LoRAConfig(rank=4))
    # Exactly: the base layers compute as before, on the same tensors, and a fresh B = 0 adds an exact zero.
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)


def test_only_adapters_require_grad(model) -> None:
    apply_lora(model, LoRAConfig())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith((".lora_a", ".lora_b")) for n in trainable)


def test_training_moves_outputs_and_never_the_base_weights(model, x) -> None:
    apply_lora(model, LoRAConfig(rank=4))
    before = model(x).detach()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    train_adapters(model, x)
    assert not torch.allclose(model(x), before, atol=1e-4)
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), name


def test_merge_keeps_outputs_and_leaves_plain_linears(model, x) -> None:
    keys = set(model.state_dict())
    apply_lora(model, LoRAConfig(rank=4))
    train_adapters(model, x)
    adapted = model(x).detach()
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert set(model.state_dict()) == keys
    torch.testing.assert_close(model(x), adapted, rtol=0, atol=1e-5)


def test_adapter_state_holds_only_adapters_and_round_trips(x) -> None:
    torch.manual_seed(0)
    trained, fresh = TwoBackbones().eval(), TwoBackbones().eval()
    fresh.load_state_dict(trained.state_dict())  # the same pretrained weights under both
    apply_lora(trained, LoRAConfig(rank=4))
    apply_lora(fresh, LoRAConfig(rank=4))
    train_adapters(trained, x)

    state = lora_state_dict(trained)
    assert len(state) == 2 * 16 and all(k.endswith((".lora_a", ".lora_b")) for k in state)
    load_lora_state_dict(fresh, state)
    for key, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key  # every weight, bit for bit
    # Two models in other memory, where kernels may round otherwise: the outputs agree up to rounding.
    torch.testing.assert_close(fresh(x), trained(x))


def test_adapter_state_rejects_other_layers_and_ranks(model) -> None:
    apply_lora(model, LoRAConfig(rank=4))
    state = lora_state_dict(model)
    with pytest.raises(ValueError, match="missing"):
        load_lora_state_dict(model, {k: v for k, v in state.items() if "nar_backbone" not in k})
    with pytest.raises(ValueError, match="unexpected"):
        load_lora_state_dict(model, {**state, "head.lora_a": torch.zeros(4, 32)})
    other = TwoBackbones()
    apply_lora(other, LoRAConfig(rank=2))
    with pytest.raises(ValueError, match="lora.rank"):
        load_lora_state_dict(model, lora_state_dict(other))


def test_modules_restricts_to_name_prefixes(model) -> None:
    wrapped = apply_lora(model, LoRAConfig(targets=["qkv", "head"], modules=["ar_backbone.", "head"]))
    assert wrapped == ["ar_backbone.blocks.0.attn.qkv", "ar_backbone.blocks.1.attn.qkv", "head"]
    assert isinstance(model.nar_backbone.blocks[0].attn.qkv, nn.Linear)


def test_nothing_matched_names_targets_and_existing_layers(model) -> None:
    with pytest.raises(ValueError, match=r"\['q_proj'\].*ar_backbone\.blocks\.0\.attn\.qkv"):
        apply_lora(model, LoRAConfig(targets=["q_proj"]))
    with pytest.raises(ValueError, match="under"):
        apply_lora(model, LoRAConfig(modules=["decoder."]))


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="lora.rank"):
        LoRAConfig(rank=0)
