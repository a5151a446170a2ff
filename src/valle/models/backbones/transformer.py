"""Our own pre-norm decoder-only transformer (nanoGPT-sized, with rotary positions and a KV cache).

Each block is `x + attn(norm(x))` then `x + ff(norm(x))`; a final norm closes the stack. Attention is
`torch.nn.functional.scaled_dot_product_attention` with a boolean mask from `attention_mask`, the rule
`forward` and `step` share, which is what makes incremental decoding match the full forward.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from valle.models.backbones.base import Backbone, BackboneOutput, attention_mask, padded_positions
from valle.models.cache import ContextWindow, KVCache, StaticView
from valle.models.embeddings import sinusoidal

Rotary = tuple[Tensor, Tensor]  # (cos, signed sin), each [B, 1, T, head_dim]
KVSlots = tuple[Tensor, Tensor, Tensor]  # (keys [B, H, S, Dh], values [B, H, S, Dh], slots [B, T])


def rotary(positions: Tensor, head_dim: int, base: float = 10000.0) -> Rotary:
    """Rotary angles for absolute `positions` [B, T] (GPT-NeoX half-split layout), as `apply_rotary` reads.

    Returns cos over both halves, and sin with the first half negated: `[-sin, sin]`, so that applying
    it needs no negation per layer.
    """
    inv_freq = base ** (
        -torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim
    )
    angles = positions[..., None].float() * inv_freq  # [B, T, Dh/2]
    cos, sin = angles.cos(), angles.sin()
    return torch.cat([cos, cos], dim=-1)[:, None], torch.cat([-sin, sin], dim=-1)[:, None]


def apply_rotary(x: Tensor, rope: Rotary) -> Tensor:
    """Rotate x [..., T, Dh] by the angles of its positions: each pair (a, b) of the two halves becomes
    (a cos - b sin, b cos + a sin).

    Written as `x * cos + [b, a] * [-sin, sin]`: three kernels, which matters in a one-token decode
    step, where the cost of this function is per-call overhead, not arithmetic.
    """
    cos, signed_sin = rope
    swapped = x.unflatten(-1, (2, -1)).flip(-2).flatten(-2)  # halves exchanged: [b, a]
    return torch.addcmul(x * cos, swapped, signed_sin).to(x.dtype)


def make_norm(kind: str, d_model: int) -> nn.Module:
    if kind == "rmsnorm":
        return nn.RMSNorm(d_model, eps=1e-6)
    if kind == "layernorm":
        return nn.LayerNorm(d_model)
    raise ValueError(f"unknown norm {kind!r}; use 'rmsnorm' or 'layernorm'")


class Attention(nn.Module):
    """Multi-head self-attention that can read and write a KV cache."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.dropout = dropout
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(
        self,
        x: Tensor,
        rope: Rotary | None,
        mask: Tensor | None,
        kv: KVSlots | None = None,
        weights: list[Tensor] | None = None,
    ) -> Tensor:
        """x [B, T, D], mask [B, T, S] (bool, an additive float bias, or None: every key) → [B, T, D].

        With `kv`, the new keys/values are written to the cache slots first and attention reads the cache.
        With `weights` (a list), the attention probabilities [B, H, T, S] are computed explicitly and
        appended to it (for an alignment loss on them); the output is the same attention, computed so.
        """
        batch, length, d_model = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv
        if rope is not None:
            q, k = apply_rotary(qkv[:2], rope)  # queries and keys in one go: half the ops of a decode step
        if kv is not None:
            keys, values, slots = kv
            index = slots[:, None, :, None].expand_as(k)
            keys.scatter_(2, index, k)
            values.scatter_(2, index, v)
            k, v = keys, values
        dropout = self.dropout if self.training else 0.0
        if weights is not None:
            y = self._explicit(q, k, v, mask, dropout, weights)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=None if mask is None else mask[:, None], dropout_p=dropout
            )
        return self.out(y.transpose(1, 2).reshape(batch, length, d_model))

    @staticmethod
    def _explicit(
        q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout: float, weights: list[Tensor]
    ) -> Tensor:
        """Softmax attention written out, keeping the probabilities (SDPA does not return them)."""
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        if mask is not None:
            bias = mask[:, None]
            scores = scores.masked_fill(~bias, float("-inf")) if bias.dtype == torch.bool else scores + bias
        probs = scores.softmax(dim=-1)
        weights.append(probs)
        return F.dropout(probs, dropout) @ v if dropout else probs @ v


# Without gradients, the feed-forward runs over at most this many hidden values at once. A NAR pass over
# 8 rows of `small` would otherwise write a [8, 417, 4096] fp32 intermediate (54 MB) in each layer: fresh
# pages from the OS every time, in no cache. In slices of 2^21 values (8 MB) that pass is 1.3x faster with
# int8 weights and 1.1x in fp32 on 2 CPU cores (benchmarks/batch_scaling.py --whole-ff). CPU only: CUDA's
# caching allocator keeps its blocks, and a GPU wants its matrix products large.
INFERENCE_SLICE_VALUES = 2**21


class FeedForward(nn.Module):
    """SwiGLU (`silu(x W1) * x W3`, then W2) or a GELU MLP; hidden width ff_mult * d_model either way.

    Each position's output depends on that position alone, so without gradients long inputs on the CPU
    run in slices of positions (`INFERENCE_SLICE_VALUES`): the same function, with a bounded intermediate.
    """

    def __init__(self, d_model: int, ff_mult: float, kind: str) -> None:
        super().__init__()
        if kind not in ("swiglu", "gelu"):
            raise ValueError(f"unknown feed-forward {kind!r}; use 'swiglu' or 'gelu'")
        hidden = int(ff_mult * d_model)
        self.gated = kind == "swiglu"
        self.up = nn.Linear(d_model, 2 * hidden if self.gated else hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)
        # Positions a slice holds without gradients (`up` may become an int8 or a LoRA layer later).
        self.slice_positions = max(1, INFERENCE_SLICE_VALUES // (2 * hidden if self.gated else hidden))

    def forward(self, x: Tensor) -> Tensor:
        positions = x.shape[:-1].numel()
        if positions <= self.slice_positions or torch.is_grad_enabled() or x.device.type != "cpu":
            return self._positions(x)
        flat = x.reshape(positions, x.shape[-1])
        out = torch.cat([self._positions(part) for part in flat.split(self.slice_positions)])
        return out.view(*x.shape[:-1], out.shape[-1])

    def _positions(self, x: Tensor) -> Tensor:
        if self.gated:
            gate, up = self.up(x).chunk(2, dim=-1)
            return self.down(F.silu(gate) * up)
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """One pre-norm transformer layer."""

    def __init__(
        self, d_model: int, n_heads: int, ff_mult: float, dropout: float, ff: str, norm: str
    ) -> None:
        super().__init__()
        self.attn_norm = make_norm(norm, d_model)
        self.attn = Attention(d_model, n_heads, dropout)
        self.ff_norm = make_norm(norm, d_model)
        self.ff = FeedForward(d_model, ff_mult, ff)
        self.dropout = dropout

    def forward(
        self,
        x: Tensor,
        rope: Rotary | None,
        mask: Tensor | None,
        kv: KVSlots | None = None,
        weights: list[Tensor] | None = None,
    ) -> Tensor:
        x = x + self._residual(self.attn(self.attn_norm(x), rope, mask, kv, weights))
        return x + self._residual(self.ff(self.ff_norm(x)))

    def _residual(self, branch: Tensor) -> Tensor:
        # No dropout call at all in eval: a decode step makes 16 of them, each pure overhead.
        return F.dropout(branch, self.dropout) if self.training and self.dropout else branch


class TransformerBackbone(Backbone):
    """Pre-norm decoder-only transformer with rotary (default) or sinusoidal absolute positions.

    Args:
        d_model: width D.
        n_heads: attention heads; D must be divisible by it.
        n_layers: blocks.
        ff_mult: feed-forward hidden width as a multiple of D.
        dropout: on attention weights and on each residual branch (training only).
        positions: "rotary" (on queries and keys, per layer) or "sinusoidal" (added to the input).
        ff: "swiglu" or "gelu".
        norm: "rmsnorm" or "layernorm".
    """

    def __init__(
        self,
        d_model: int = 512,
        n_heads: int = 8,
        n_layers: int = 12,
        ff_mult: float = 4.0,
        dropout: float = 0.1,
        positions: str = "rotary",
        ff: str = "swiglu",
        norm: str = "rmsnorm",
    ) -> None:
        super().__init__()
        if positions not in ("rotary", "sinusoidal"):
            raise ValueError(f"unknown positions {positions!r}; use 'rotary' or 'sinusoidal'")
        self.d_model = d_model
        self.n_heads = n_heads
        self.positions = positions
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, ff_mult, dropout, ff, norm) for _ in range(n_layers)
        )
        self.norm = make_norm(norm, d_model)

    def forward(
        self,
        x: Tensor,
        lengths: Tensor,
        causal: bool,
        prefix_lengths: Tensor | None = None,
        window: ContextWindow | None = None,
        attention_layers: Sequence[int] = (),
        position_offsets: Tensor | None = None,
    ) -> BackboneOutput:
        """See `Backbone.forward`. x [B, T, D], lengths [B] → hidden [B, T, D], aux_loss 0, and the
        attention probabilities [B, H, T, T] of `attention_layers`."""
        positions, key_positions = padded_positions(lengths, x.shape[1])
        mask = attention_mask(positions, key_positions, causal, prefix_lengths, window)
        h, rope = self._inputs(x, positions if position_offsets is None else positions + position_offsets)
        weights: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            h = block(h, rope, mask, weights=weights if i in attention_layers else None)
        return BackboneOutput(self.norm(h), x.new_zeros(()), tuple(weights))

    def new_cache(
        self,
        batch_size: int,
        max_length: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        window: ContextWindow | None = None,
    ) -> KVCache:
        """See `Backbone.new_cache`; device and dtype default to the parameters'."""
        param = next(self.parameters())
        head_dim = self.d_model // self.n_heads
        shape = (len(self.blocks), batch_size, self.n_heads, max_length, head_dim)
        return KVCache.empty(shape, device or param.device, dtype or param.dtype, window)

    def step(
        self,
        x: Tensor,
        cache: KVCache,
        lengths: Tensor | None = None,
        prefix_lengths: Tensor | None = None,
    ) -> Tensor:
        """See `Backbone.step`. x [B, t, D] right-padded → hidden [B, t, D] of the new positions."""
        batch, length, _ = x.shape
        if lengths is None:
            lengths = torch.full((batch,), length, dtype=torch.long, device=x.device)
        slots = cache.reserve(length)
        positions = cache.commit(slots, lengths)
        filled = int(cache.used.max())
        mask = None
        if not (batch == 1 and length == 1 and cache.window is None):
            # One row's new token sees every filled slot (they hold only earlier positions, no padding),
            # so the common single-utterance step needs no mask at all.
            mask = attention_mask(positions, cache.positions[:, :filled], True, prefix_lengths, cache.window)
        return self._over_cache(x, cache, filled, mask, positions, slots)

    def tree_step(self, x: Tensor, cache: KVCache, depths: Tensor, sees: Tensor) -> Tensor:
        """See `TreeStepping.tree_step`: a causal step whose new positions see each other only along
        their tree's branches (Medusa's tree attention); siblings share a position."""
        batch, n, _ = x.shape
        slots = cache.reserve(n)
        positions = cache.commit(slots, torch.full((batch,), n, dtype=torch.long, device=x.device), depths)
        filled = int(cache.used.max())
        mask = attention_mask(positions, cache.positions[:, :filled], True, None, cache.window)
        candidate = torch.arange(filled, device=x.device)[None, :] - slots[:, :1]  # [B, filled]
        among = (candidate >= 0) & (candidate < n)
        branch = sees[:, candidate.clamp(0, n - 1)].transpose(0, 1)  # [B, n, filled]
        return self._over_cache(x, cache, filled, mask & (~among[:, None, :] | branch), positions, slots)

    def _over_cache(
        self, x: Tensor, cache: KVCache, filled: int, mask: Tensor | None, positions: Tensor, slots: Tensor
    ) -> Tensor:
        """New positions through the blocks over the cache's first `filled` slots; `mask` [B, t, filled]
        (None: every query sees every filled slot) becomes an additive bias once here, not in every layer.
        Attending only to the filled slots, not the whole preallocated capacity: on a one-token step the
        attention over empty slots would cost as much as a small model's matmuls."""
        bias = None
        if mask is not None:
            bias = torch.zeros(mask.shape, dtype=cache.keys.dtype, device=x.device).masked_fill_(
                ~mask, float("-inf")
            )
        keys = [cache.keys[i, :, :, :filled] for i in range(len(self.blocks))]
        values = [cache.values[i, :, :, :filled] for i in range(len(self.blocks))]
        return self._through_blocks(x, positions, bias, keys, values, slots)

    def static_step(self, x: Tensor, view: StaticView) -> Tensor:
        """One token per row with fixed shapes and no host sync: what `torch.compile` / CUDA graphs replay.

        The same computation as `step` for one token, but over the whole preallocated capacity (empty
        slots masked) and with the write slot and position read from tensors, so every call has the same
        graph. Causal, no context window (`StaticStepping`).

        Args:
            x: [B, 1, D] the new token's input.
            view: `KVCache.static_view()`: the token's keys, values and position are written at
                `view.slot` (in place). The caller then calls the cache's `advance(1)`.
        """
        view.positions.scatter_(1, view.slot[:, None], view.position[:, None])
        mask = attention_mask(view.position[:, None], view.positions, True)
        return self._through_blocks(
            x, view.position[:, None], mask, view.keys, view.values, view.slot[:, None]
        )

    def _through_blocks(
        self,
        x: Tensor,
        positions: Tensor,
        mask: Tensor | None,
        keys: Sequence[Tensor],
        values: Sequence[Tensor],
        slots: Tensor,
    ) -> Tensor:
        """The blocks and the final norm for new tokens at `positions`, reading and writing the cache."""
        h, rope = self._inputs(x, positions)
        for block, k, v in zip(self.blocks, keys, values, strict=True):
            h = block(h, rope, mask, (k, v, slots))
        return self.norm(h)

    def _inputs(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Rotary | None]:
        """The first block's input and the rotary angles for `positions` [B, T]."""
        if self.positions == "sinusoidal":
            return x + sinusoidal(positions, self.d_model).to(x.dtype), None
        return x, rotary(positions, self.d_model // self.n_heads)
