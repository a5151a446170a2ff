"""The contract every backbone (transformer, RetNet, MoE) follows, and the one attention-visibility rule.

A backbone maps embedded sequences `[B, T, D]` to hidden states `[B, T, D]`. Two paths must agree:

- `forward` over whole right-padded rows (training, the NAR, and the reference for decoding);
- `new_cache` + `step` for causal incremental decoding, which appends `t >= 1` positions per row and returns
  their hidden states. `test_incremental_matches_full_forward` holds every backbone to that agreement.

Batched prefill uses the same padding scheme as `forward`: rows are **right-padded** and `lengths[b]` says
how many of the `t` new positions of row `b` are real. Each row keeps its own write pointer, so rows with
prefixes of different lengths decode together; positions are absolute per row (row `b`'s next token
after a prefix of 5 has position 5, whatever the other rows hold).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from valle.models.cache import ContextWindow, DecodeCache, StaticView


class BackboneOutput(NamedTuple):
    """What `Backbone.forward` returns."""

    hidden: Tensor  # [B, T, D]; rows' padded positions are don't-care
    aux_loss: Tensor  # scalar; a mixture-of-experts balancing loss, zero for dense backbones
    attention: tuple[Tensor, ...] = ()  # [B, H, T, T] probabilities of the layers asked for, in layer order


def attention_mask(
    q_pos: Tensor,
    k_pos: Tensor,
    causal: bool,
    prefix_lengths: Tensor | None = None,
    window: ContextWindow | None = None,
) -> Tensor:
    """Which keys each query may attend to; the single rule shared by `forward` and `step`.

    Args:
        q_pos: [B, Tq] int64 absolute positions of the queries.
        k_pos: [B, Tk] int64 absolute positions of the keys, -1 for padding or an empty cache slot.
        causal: a query sees keys at positions <= its own; otherwise it sees every valid key.
        prefix_lengths: [B] (causal only) positions below this also see each other both ways (prefix-LM).
        window: (causal only) drop keys that fell out of the context window, see `ContextWindow`.

    Returns:
        [B, Tq, Tk] bool, True where attention is allowed. Every query row has at least one True, so
        scaled_dot_product_attention never yields NaN (which would leak through a zero weight).
    """
    q = q_pos[:, :, None]
    k = k_pos[:, None, :]
    visible = k >= 0
    if causal:
        order = k <= q
        if prefix_lengths is not None:
            p = prefix_lengths[:, None, None]
            order = order | ((k < p) & (q < p))
        if window is not None:
            kept = window.prefix_lengths[:, None, None]
            order = order & ((k < kept) | (k > q - window.size))
        visible = visible & order
    elif prefix_lengths is not None or window is not None:
        raise ValueError("prefix_lengths and window only apply to causal attention")
    else:
        visible = visible.expand(-1, q_pos.shape[1], -1)
    # Queries with nothing to see are padding; pointing them at key 0 keeps their (unused) output finite.
    # No `if` on the data: a compiled decode step must not sync with the host here.
    lonely = ~visible.any(dim=-1, keepdim=True)
    first_key = torch.arange(visible.shape[-1], device=visible.device) == 0
    return visible | (lonely & first_key)


def padded_positions(lengths: Tensor, max_length: int) -> tuple[Tensor, Tensor]:
    """Absolute positions of right-padded rows.

    Args:
        lengths: [B] int64 valid positions per row.
        max_length: T, the padded length.

    Returns:
        (positions [B, T] = 0..T-1 per row, keys [B, T] the same with -1 at padded positions).
    """
    positions = torch.arange(max_length, device=lengths.device).expand(lengths.shape[0], -1)
    keys = torch.where(positions < lengths[:, None], positions, -1)
    return positions, keys


class Backbone(nn.Module, abc.ABC):
    """A sequence model over embedded positions with an incremental (causal) decoding path."""

    d_model: int

    @abc.abstractmethod
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
        """Hidden states of whole right-padded rows.

        Args:
            x: [B, T, D] embedded inputs.
            lengths: [B] int64; positions >= lengths[b] are padding, never attended to.
            causal: True for the AR (position t sees positions <= t), False for the NAR (full attention).
            prefix_lengths: [B] (causal only) the first prefix_lengths[b] positions also attend to each
                other bidirectionally (prefix-LM mask).
            window: (causal only) restrict each query to a `ContextWindow`; the reference that decoding
                with `max_ar_context` matches.
            attention_layers: layers whose attention probabilities to return (for the guided-attention
                loss); a backbone without attention weights raises ValueError when asked.
            position_offsets: [B, T] int64 added to each position where its position is encoded (rotary
                angles, sinusoidal inputs), not where the mask compares positions: training rows placed
                deep into a long output (`valle.models.sequence.shifted_positions`). A backbone whose
                positions cannot move raises ValueError.

        Returns:
            BackboneOutput(hidden [B, T, D], aux_loss scalar).
        """

    @abc.abstractmethod
    def new_cache(
        self,
        batch_size: int,
        max_length: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        window: ContextWindow | None = None,
    ) -> DecodeCache:
        """Preallocated incremental state for `batch_size` rows of up to `max_length` cached positions.

        With a `window`, positions that left it are evicted when the cache runs out of room, so
        `max_length` only needs to cover the longest prefix plus `window.size` plus one step.
        """

    @abc.abstractmethod
    def step(
        self,
        x: Tensor,
        cache: Any,
        lengths: Tensor | None = None,
        prefix_lengths: Tensor | None = None,
    ) -> Tensor:
        """Append positions to every row of `cache` (causal) and return their hidden states.

        Args:
            x: [B, t, D] the next t >= 1 embedded positions of each row, right-padded.
            cache: from this backbone's `new_cache` (each backbone takes only its own kind), updated in
                place.
            lengths: [B] int64 how many of the t positions are real per row (default: all t). A batched
                prefill of prefixes of different lengths is one step with t = the longest prefix.
            prefix_lengths: [B] prefix-LM mask for a prefill, as in `forward`; the whole prefix must then
                arrive in this one step.

        Returns:
            [B, t, D] hidden states of the new positions (those past lengths[b] are don't-care).
        """


@runtime_checkable
class StaticStepping(Protocol):
    """A backbone whose one-token decode step also runs with fixed shapes and no host sync: the step
    `valle.sampling.compiled` compiles and replays (the transformer has one; RetNet does not). Its
    `new_cache` returns a `StaticCache`."""

    def static_step(self, x: Tensor, view: StaticView) -> Tensor:
        """The next token of every row, x [B, 1, D] → hidden [B, 1, D], written through `view` (made by
        `StaticCache.static_view`); the caller then moves the cache on with `advance(1)`."""
        ...


@runtime_checkable
class TreeStepping(Protocol):
    """A backbone that can check a tree of candidate positions in one step (Medusa decoding: the
    transformer can; a recurrent state cannot branch). Its `new_cache` returns a `SpeculativeCache`."""

    def tree_step(self, x: Tensor, cache: Any, depths: Tensor, sees: Tensor) -> Tensor:
        """Append n candidate positions to every row, laid out as a tree, and return their hidden states.

        Args:
            x: [B, n, D] the candidates' inputs; candidate 0 is the root (the row's next position).
            cache: from this backbone's `new_cache`; the caller then keeps one path (`accept`).
            depths: [n] int64 each candidate's depth (root 0): its position is the row's next + depth.
            sees: [n, n] bool, candidate i attends to candidate j (its ancestors and itself), besides the
                whole cache.

        Returns:
            [B, n, D] hidden states: candidate i's is what a plain decode that had fed the root-to-i path
            would have (up to float rounding).
        """
        ...
