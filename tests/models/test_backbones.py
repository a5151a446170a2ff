"""The backbone contract, checked on every registered backbone (tiny, random weights, fp32, CPU).

The central check is audiocraft's streaming test: decoding step by step through the cache gives the
hidden states of one full causal forward. A new backbone joins by adding a tiny configuration to `TINY`.
"""

from __future__ import annotations

import pytest
import torch

from valle.models.backbones import BACKBONES, Backbone, ContextWindow, build_backbone
from valle.models.backbones.transformer import FeedForward

D_MODEL = 64
TOL = 1e-4

# case id → (registered name, constructor settings); tiny, dropout off so train/eval do not matter.
TINY: dict[str, tuple[str, dict]] = {
    "transformer": ("transformer", {}),
    "transformer-sinusoidal-gelu-layernorm": (
        "transformer",
        {"positions": "sinusoidal", "ff": "gelu", "norm": "layernorm"},
    ),
    "retnet": ("retnet", {}),
    "retnet-moe-top1": ("retnet", {"moe_freq": 1, "moe_expert_count": 2, "moe_top1_expert": True}),
}
CASES = list(TINY)

# registered name → contract parts it cannot honour → why. Such a backbone raises a ValueError for them
# (`test_unsupported_options_raise`), and the contract tests of those parts skip with the reason.
UNSUPPORTED: dict[str, dict[str, str]] = {
    "retnet": {
        "bidirectional": "retention is causal by construction; the NAR runs on a transformer",
        "prefix_lm": "retention is causal by construction; no bidirectional prefix",
        "window": "a constant-size recurrent state has no positions to evict",
        "position_offsets": "retention's decay has no positions to move on",
    },
}


def require(case: str, feature: str) -> None:
    """Skip the calling test when the case's backbone does not implement `feature` (see UNSUPPORTED)."""
    name = TINY[case][0]
    reason = UNSUPPORTED.get(name, {}).get(feature)
    if reason:
        pytest.skip(f"{name}: {reason}")


def make_backbone(case: str) -> Backbone:
    name, settings = TINY[case]
    torch.manual_seed(0)
    settings = {"d_model": D_MODEL, "n_heads": 4, "n_layers": 2, "ff_mult": 2, "dropout": 0.0, **settings}
    return build_backbone(name, **settings).eval()


def right_padded(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack [T_b, D] rows into [B, T_max, D] with random (not zero) padding, so leaks would show."""
    lengths = torch.tensor([len(r) for r in rows])
    out = torch.randn(len(rows), int(lengths.max()), D_MODEL) * 10
    for b, row in enumerate(rows):
        out[b, : len(row)] = row
    return out, lengths


def decode(backbone: Backbone, x: torch.Tensor, prefix: torch.Tensor, cache, prefix_lm: bool = False) -> list:
    """Prefill each row's prefix in one batched step, then feed the rest one token per row per step.

    Returns the hidden state [B, D] of every position after the prefix's last one, step by step: entry 0 is
    the prefill's output at the last prefix position, entry s the output at position prefix + s - 1.
    """
    batch = x.shape[0]
    rows = torch.arange(batch)
    prefill, _ = right_padded([x[b, : prefix[b]] for b in range(batch)])
    h = backbone.step(prefill, cache, lengths=prefix, prefix_lengths=prefix if prefix_lm else None)
    outputs = [h[rows, prefix - 1]]
    for s in range(x.shape[1] - int(prefix.max())):
        outputs.append(backbone.step(x[rows, prefix + s][:, None], cache)[:, 0])
    return outputs


@pytest.mark.parametrize("prefix_lm", [False, True], ids=["causal", "prefix_lm"])
@pytest.mark.parametrize("prefix", [[5, 8, 3], [6]], ids=["batch", "one_row"])  # one row: the maskless step
@pytest.mark.parametrize("case", CASES)
@torch.no_grad()
def test_incremental_matches_full_forward(case: str, prefix_lm: bool, prefix: list[int]) -> None:
    if prefix_lm:
        require(case, "prefix_lm")
    backbone = make_backbone(case)
    prefix = torch.tensor(prefix)
    steps = 6
    x, lengths = right_padded([torch.randn(int(p) + steps, D_MODEL) for p in prefix])
    full = backbone(x, lengths, causal=True, prefix_lengths=prefix if prefix_lm else None).hidden

    cache = backbone.new_cache(len(prefix), int(prefix.max()) + steps, device="cpu", dtype=torch.float32)
    outputs = decode(backbone, x, prefix, cache, prefix_lm)

    rows = torch.arange(len(prefix))
    for s, h in enumerate(outputs):
        expected = full[rows, prefix - 1 + s]
        assert (h - expected).abs().max() < TOL, f"step {s}"


@pytest.mark.parametrize("case", CASES)
@torch.no_grad()
def test_prefill_outputs_match_full_forward_at_every_prefix_position(case: str) -> None:
    backbone = make_backbone(case)
    prefix = torch.tensor([4, 7])
    x, _ = right_padded([torch.randn(int(p), D_MODEL) for p in prefix])
    full = backbone(x, prefix, causal=True).hidden
    h = backbone.step(x, backbone.new_cache(2, 7), lengths=prefix)
    for b, p in enumerate(prefix.tolist()):
        assert (h[b, :p] - full[b, :p]).abs().max() < TOL


def changed_positions(backbone: Backbone, x: torch.Tensor, at: int, **kwargs) -> list[int]:
    """Positions of row 0 whose output changes when the input at position `at` changes."""
    lengths = torch.tensor([x.shape[1]])
    before = backbone(x, lengths, **kwargs).hidden
    x2 = x.clone()
    x2[0, at] += torch.randn(D_MODEL)
    after = backbone(x2, lengths, **kwargs).hidden
    return [t for t in range(x.shape[1]) if (after[0, t] - before[0, t]).abs().max() > 1e-6]


@pytest.mark.parametrize("case", CASES)
@torch.no_grad()
def test_prefix_lm_mask_is_bidirectional_inside_the_prefix_only(case: str) -> None:
    require(case, "prefix_lm")
    backbone = make_backbone(case)
    x = torch.randn(1, 8, D_MODEL)
    prefix = torch.tensor([4])
    # The last prefix position reaches back to the first ones, and forward to everything.
    assert changed_positions(backbone, x, 3, causal=True, prefix_lengths=prefix) == list(range(8))
    # A position after the prefix stays invisible to earlier positions, prefix included.
    assert changed_positions(backbone, x, 5, causal=True, prefix_lengths=prefix) == [5, 6, 7]
    # Without a prefix the mask is plainly causal.
    assert changed_positions(backbone, x, 3, causal=True) == [3, 4, 5, 6, 7]


@pytest.mark.parametrize("case", CASES)
@torch.no_grad()
def test_bidirectional_output_depends_on_later_positions(case: str) -> None:
    require(case, "bidirectional")
    backbone = make_backbone(case)
    x = torch.randn(1, 6, D_MODEL)
    assert changed_positions(backbone, x, 5, causal=False) == list(range(6))


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("case", CASES)
@torch.no_grad()
def test_padding_never_leaks(case: str, causal: bool) -> None:
    if not causal:
        require(case, "bidirectional")
    backbone = make_backbone(case)
    x = torch.randn(2, 9, D_MODEL)
    lengths = torch.tensor([6, 9])
    before = backbone(x, lengths, causal=causal).hidden
    x2 = x.clone()
    x2[0, 6:] = torch.randn(3, D_MODEL) * 100
    after = backbone(x2, lengths, causal=causal).hidden
    assert torch.isfinite(after).all()
    assert (after[0, :6] - before[0, :6]).abs().max() < 1e-6
    assert (after[1] - before[1]).abs().max() < 1e-6


@pytest.mark.parametrize("case", CASES)
@torch.no_grad()
def test_context_window_decoding_matches_windowed_forward(case: str) -> None:
    """With max_ar_context N, each step equals a full forward in which every query sees the prefix plus
    its N most recent positions (absolute positions kept), although the cache is too small to keep more."""
    require(case, "window")
    backbone = make_backbone(case)
    prefix = torch.tensor([4, 6, 2])
    steps, size = 10, 3
    window = ContextWindow(size=size, prefix_lengths=prefix)
    x, lengths = right_padded([torch.randn(int(p) + steps, D_MODEL) for p in prefix])
    windowed = backbone(x, lengths, causal=True, window=window).hidden
    plain = backbone(x, lengths, causal=True).hidden
    rows = torch.arange(3)
    last = prefix - 1 + steps
    assert (windowed[rows, last] - plain[rows, last]).abs().max() > 1e-3  # the window does cut context

    capacity = int(prefix.max()) + size + 1  # far fewer than the longest row's 16 positions
    cache = backbone.new_cache(3, capacity, window=window)
    for s, h in enumerate(decode(backbone, x, prefix, cache)):
        assert (h - windowed[rows, prefix - 1 + s]).abs().max() < TOL, f"step {s}"
    assert cache.next_position.tolist() == (prefix + steps).tolist()  # positions stayed absolute
    assert int(cache.used.max()) <= capacity


@pytest.mark.parametrize("case", CASES)
@torch.no_grad()
def test_cache_save_restore(case: str) -> None:
    """A copied cache decodes on exactly like the original, and decoding one leaves the other untouched."""
    backbone = make_backbone(case)
    prefix = torch.tensor([3, 5])
    x, _ = right_padded([torch.randn(5, D_MODEL) for _ in range(2)])
    cache = backbone.new_cache(2, 8)
    backbone.step(x, cache, lengths=prefix)
    saved = cache.clone()

    token, other = torch.randn(2, 1, D_MODEL), torch.randn(2, 1, D_MODEL)
    first = backbone.step(token, cache)
    backbone.step(other, cache)  # moves the original on; the copy must not notice
    restored = backbone.step(token, saved)
    # The copy's tensors live elsewhere in memory, where kernels may round otherwise: equal up to rounding
    # (a copy that saw `other` would be off by far more).
    assert (restored - first).abs().max() < TOL


@pytest.mark.parametrize("case", CASES)
@torch.no_grad()
def test_full_cache_raises_with_a_fix(case: str) -> None:
    backbone = make_backbone(case)
    cache = backbone.new_cache(1, 4)
    backbone.step(torch.randn(1, 4, D_MODEL), cache)
    with pytest.raises(ValueError, match="max_length"):
        backbone.step(torch.randn(1, 1, D_MODEL), cache)


TRANSFORMER_CASES = [case for case in CASES if TINY[case][0] == "transformer"]


@pytest.mark.parametrize("case", TRANSFORMER_CASES)
def test_long_inputs_without_gradients_run_the_feed_forward_in_slices_with_the_same_outputs(
    case: str,
) -> None:
    """Inference bounds the feed-forward's intermediate (a NAR pass over many rows would otherwise write
    one the size of every position at once); each position's output is its own, so nothing changes."""
    backbone = make_backbone(case)
    layers = [m for m in backbone.modules() if isinstance(m, FeedForward)]
    x, lengths = torch.randn(3, 11, D_MODEL), torch.tensor([11, 7, 9])
    whole = backbone(x, lengths, causal=False).hidden.detach()  # gradients on: one slice
    for layer in layers:
        layer.slice_positions = 4  # 33 positions: 9 slices, the last one short
    calls = []
    hook = layers[0].up.register_forward_hook(lambda _m, inputs, _o: calls.append(inputs[0].shape[0]))
    with torch.no_grad():
        sliced = backbone(x, lengths, causal=False).hidden
    hook.remove()
    assert calls == [4] * 8 + [1]
    assert (sliced - whole).abs().max() < TOL


UNSUPPORTED_CASES = [case for case in CASES if UNSUPPORTED.get(TINY[case][0])]


@pytest.mark.parametrize("case", UNSUPPORTED_CASES)
@torch.no_grad()
def test_unsupported_options_raise(case: str) -> None:
    """What a backbone cannot do fails loudly, on both paths, instead of silently computing something else."""
    backbone = make_backbone(case)
    unsupported = UNSUPPORTED[TINY[case][0]]
    x, lengths, prefix = torch.randn(2, 5, D_MODEL), torch.tensor([5, 3]), torch.tensor([2, 2])
    if "bidirectional" in unsupported:
        with pytest.raises(ValueError, match="transformer"):
            backbone(x, lengths, causal=False)
    if "prefix_lm" in unsupported:
        with pytest.raises(ValueError, match="prefix_lengths"):
            backbone(x, lengths, causal=True, prefix_lengths=prefix)
        with pytest.raises(ValueError, match="prefix_lengths"):
            backbone.step(x, backbone.new_cache(2, 8), lengths=lengths, prefix_lengths=prefix)
    if "window" in unsupported:
        window = ContextWindow(size=2, prefix_lengths=prefix)
        with pytest.raises(ValueError, match="ContextWindow"):
            backbone(x, lengths, causal=True, window=window)
        with pytest.raises(ValueError, match="ContextWindow"):
            backbone.new_cache(2, 8, window=window)
    if "position_offsets" in unsupported:  # training.sliding_context.max_shift
        with pytest.raises(ValueError, match="max_shift"):
            backbone(x, lengths, causal=True, position_offsets=torch.ones(2, 5, dtype=torch.long))


def test_every_registered_backbone_has_a_tiny_case() -> None:
    assert {name for name, _ in TINY.values()} == set(BACKBONES)


def test_unknown_backbone_lists_the_known_names() -> None:
    with pytest.raises(ValueError, match="transformer"):
        build_backbone("lstm")
    with pytest.raises(ValueError, match="n_layers"):
        build_backbone("transformer", n_layer=2)
