"""Incremental decoding state: what decode loops may do with it, and the transformer's key/value cache.

`DecodeCache` is the contract every backbone's state keeps (clone, reorder, the next position);
`StaticCache` adds what a compiled one-token step needs (`static_view`, `advance`). The decode loops in
`valle.sampling` see only these, never a cache's insides.

`KVCache` is a preallocated key/value cache with per-row write pointers.

Slots are filled left to right, `used[b]` of them per row; `positions[b, j]` is the absolute position
held by slot j (-1 when empty). Slots and positions coincide until a context window evicts old slots:
then the survivors are moved to the front and keep their absolute positions, so rotary keys already in
the cache stay valid (nothing is re-rotated).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple, Protocol, Self, runtime_checkable

import torch
from torch import Tensor


@dataclass(frozen=True)
class ContextWindow:
    """`max_ar_context`: a causal query sees the fixed prefix plus only its most recent positions.

    A query at absolute position `q` sees key `k <= q` when `k < prefix_lengths[b]` (the text and prompt,
    always kept) or `k > q - size` (the `size` most recent positions, the query's own included). Positions
    stay absolute: nothing is re-numbered or re-rotated when older positions drop out.

    Attributes:
        size: N, how many of the most recent positions a query sees besides the prefix (>= 1).
        prefix_lengths: [B] int64, positions that are never dropped.
    """

    size: int
    prefix_lengths: Tensor

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"a context window must keep at least 1 position, got size={self.size}")


class DecodeCache(Protocol):
    """What a decode loop may do with a backbone's incremental state (`Backbone.new_cache`), whatever the
    state is: the transformer's `KVCache`, RetNet's `RetNetCache`. Only the backbone's `step` reads or
    writes what is inside."""

    next_position: Tensor  # [B] int64 absolute position of each row's next token

    def clone(self) -> Self:
        """An independent copy: decoding on from both gives the same outputs (beam search, retries)."""
        ...

    def reorder(self, index: Tensor) -> Self:
        """The cache of rows `index` [B'] (beam search: each new beam continues its parent's row)."""
        ...

    def join(self, other: Self) -> Self:
        """This cache's rows followed by `other`'s (continuous batching: rows prefilled apart join a
        running batch, each keeping its own positions)."""
        ...


class StaticView(NamedTuple):
    """A cache as the fixed tensors one static decode step reads and writes in place
    (`StaticStepping.static_step`). Made once per decode, so a compiled step sees the same tensors at
    every call; `StaticCache.advance` moves `slot` and `position` on in place, keeping the view valid."""

    keys: list[Tensor]  # per layer [B, H, S, Dh]
    values: list[Tensor]  # per layer [B, H, S, Dh]
    positions: Tensor  # [B, S] int64 absolute position of each slot, -1 when empty
    slot: Tensor  # [B] int64 the slot each row's next token is written to
    position: Tensor  # [B] int64 that token's absolute position


@runtime_checkable
class StaticCache(DecodeCache, Protocol):
    """A `DecodeCache` a static step can write through: fixed tensors, and the bookkeeping kept apart
    from the step so that a compiled graph holds no state of its own."""

    def static_view(self) -> StaticView: ...

    def advance(self, n: int) -> None:
        """Count `n` more positions in every row, written by a static step through the view."""
        ...


@runtime_checkable
class SpeculativeCache(DecodeCache, Protocol):
    """A `DecodeCache` that can keep some of its newest positions and forget the others (speculative
    decoding: the candidates a pass checked, of which each row accepts one path)."""

    def accept(self, fed: int, path: Tensor, kept: Tensor) -> None:
        """Of the newest `fed` positions, each row keeps `path[b, :kept[b]]` as its next positions."""
        ...


@dataclass
class KVCache:
    """Keys and values of every layer for a batch of rows being decoded.

    Attributes:
        keys: [L, B, H, S, Dh] rotated keys, S = capacity in positions per row.
        values: [L, B, H, S, Dh].
        positions: [B, S] int64 absolute position of each slot, -1 when empty.
        used: [B] int64 slots in use per row (always the first `used[b]`).
        next_position: [B] int64 absolute position the row's next token gets.
        window: optional `max_ar_context` rule; see `ContextWindow`.
    """

    keys: Tensor
    values: Tensor
    positions: Tensor
    used: Tensor
    next_position: Tensor
    window: ContextWindow | None = None

    @classmethod
    def empty(
        cls,
        shape: tuple[int, int, int, int, int],
        device: torch.device | str | None,
        dtype: torch.dtype | None,
        window: ContextWindow | None = None,
    ) -> KVCache:
        """A cache with nothing in it.

        Args:
            shape: (layers, batch, heads, capacity, head_dim).
            device: where the tensors live.
            dtype: of keys and values (the model's compute dtype).
            window: optional context window; its prefix_lengths must be on `device`.
        """
        _, batch, _, capacity, _ = shape
        # zeros, not empty: an unused slot's value is multiplied by a zero attention weight, and 0 * NaN
        # from uninitialised memory would be NaN.
        keys = torch.zeros(shape, device=device, dtype=dtype)
        index = torch.zeros(batch, dtype=torch.long, device=device)
        positions = torch.full((batch, capacity), -1, dtype=torch.long, device=device)
        return cls(keys, torch.zeros_like(keys), positions, index, index.clone(), window)

    @property
    def capacity(self) -> int:
        return self.positions.shape[1]

    def clone(self) -> KVCache:
        """An independent copy: decoding on from both gives the same outputs (beam search, retries)."""
        return replace(
            self,
            keys=self.keys.clone(),
            values=self.values.clone(),
            positions=self.positions.clone(),
            used=self.used.clone(),
            next_position=self.next_position.clone(),
        )

    def reorder(self, index: Tensor) -> KVCache:
        """The cache of rows `index` [B'] (beam search: each new beam continues its parent's row)."""
        window = self.window
        if window is not None:
            window = ContextWindow(window.size, window.prefix_lengths.index_select(0, index))
        return KVCache(
            self.keys.index_select(1, index),
            self.values.index_select(1, index),
            self.positions.index_select(0, index),
            self.used.index_select(0, index),
            self.next_position.index_select(0, index),
            window,
        )

    def join(self, other: KVCache) -> KVCache:
        """This cache's rows followed by `other`'s; the smaller capacity is padded with empty slots.

        Raises:
            ValueError: one has a context window and the other not, or their windows differ in size.
        """
        if (self.window is None) != (other.window is None) or (
            self.window is not None and other.window is not None and self.window.size != other.window.size
        ):
            raise ValueError("caches join only with the same context window (max_ar_context)")
        capacity = max(self.capacity, other.capacity)

        def widen(t: Tensor, dim: int, fill: float) -> Tensor:
            pad = [0, 0] * (t.dim() - 1 - dim) + [0, capacity - t.shape[dim]]
            return torch.nn.functional.pad(t, pad, value=fill)

        window = None
        if self.window is not None and other.window is not None:
            window = ContextWindow(
                self.window.size, torch.cat([self.window.prefix_lengths, other.window.prefix_lengths])
            )
        return KVCache(
            torch.cat([widen(self.keys, 3, 0.0), widen(other.keys, 3, 0.0)], dim=1),
            torch.cat([widen(self.values, 3, 0.0), widen(other.values, 3, 0.0)], dim=1),
            torch.cat([widen(self.positions, 1, -1), widen(other.positions, 1, -1)]),
            torch.cat([self.used, other.used]),
            torch.cat([self.next_position, other.next_position]),
            window,
        )

    def static_view(self) -> StaticView:
        """This cache's own tensors as one static step reads and writes them (`StaticView`).

        Raises:
            ValueError: the cache has a context window (eviction replaces its tensors; a static step has
                no window).
        """
        if self.window is not None:
            raise ValueError("a static decode step has no context window (max_ar_context); decode eagerly")
        layers = range(self.keys.shape[0])
        keys, values = [self.keys[i] for i in layers], [self.values[i] for i in layers]
        return StaticView(keys, values, self.positions, self.used, self.next_position)

    def advance(self, n: int) -> None:
        """Count `n` more positions in every row (in place, so a `static_view` stays valid)."""
        self.used += n
        self.next_position += n

    def reserve(self, n: int) -> Tensor:
        """Slots [B, n] for each row's next n positions, evicting out-of-window slots if room runs out.

        Raises:
            ValueError: the cache cannot hold n more positions.
        """
        if int(self.used.max()) + n > self.capacity and self.window is not None:
            self.evict()
        if int(self.used.max()) + n > self.capacity:
            raise ValueError(
                f"the KV cache holds {self.capacity} positions per row and a row already uses "
                f"{int(self.used.max())}; {n} more do not fit. Create it with a larger max_length "
                "(or set a max_ar_context window)"
            )
        return self.used[:, None] + torch.arange(n, device=self.used.device)

    def commit(self, slots: Tensor, lengths: Tensor, offsets: Tensor | None = None) -> Tensor:
        """Record the positions of newly written slots; returns their positions [B, n].

        Args:
            slots: [B, n] from `reserve`.
            lengths: [B] how many of the n are real; the others stay empty (-1) and get overwritten later.
            offsets: [n] each slot's position after the row's next one (default 0, 1, 2, ...): a tree of
                candidates gives siblings the same position (`Transformer.tree_step`).
        """
        index = torch.arange(slots.shape[1], device=slots.device)
        offsets = index if offsets is None else offsets
        new_positions = self.next_position[:, None] + offsets
        real = index < lengths[:, None]
        self.positions.scatter_(1, slots, torch.where(real, new_positions, -1))
        self.used += lengths
        self.next_position += lengths
        return new_positions

    def accept(self, fed: int, path: Tensor, kept: Tensor) -> None:
        """Of the newest `fed` positions (candidates a speculative pass checked), each row keeps the path
        `path[b, :kept[b]]` (indices among the fed, in order, each the next position of the one before)
        as its next positions; the others are forgotten, and their slots are empty again.

        A chain of candidates keeps a prefix (path 0, 1, 2, ...: nothing moves); a tree keeps one branch,
        whose keys and values move to the slots after the row's last kept position.
        """
        start, first = self.used - fed, self.next_position - fed  # [B] the fed block's slot and position
        width = path.shape[1]
        order = torch.arange(width, device=path.device)[None, :]
        path = torch.where(order < kept[:, None], path, order)  # past kept: nothing to move
        if bool((path != order).any()):
            rows = torch.arange(path.shape[0], device=path.device)[:, None]
            source, target = start[:, None] + path, start[:, None] + order
            self.keys[:, rows, :, target] = self.keys[:, rows, :, source]
            self.values[:, rows, :, target] = self.values[:, rows, :, source]
        slots = torch.arange(self.capacity, device=self.used.device)[None, :]
        block = slots - start[:, None]  # each slot's index in the fed block
        in_block = (block >= 0) & (block < fed)
        self.positions.copy_(  # in place, as `commit`
            torch.where(
                in_block, torch.where(block < kept[:, None], first[:, None] + block, -1), self.positions
            )
        )
        self.used, self.next_position = start + kept, first + kept

    def evict(self) -> None:
        """Drop slots that no later query can see under the window and move the rest to the front.

        Later queries sit at positions >= next_position, so a response slot older than
        next_position - window.size + 1 is out of every future window. One gather per call; `reserve`
        calls it only when the cache is full, so its cost spreads over many steps.
        """
        if self.window is None:
            return
        pos = self.positions
        kept_prefix = pos < self.window.prefix_lengths[:, None]
        recent = pos > self.next_position[:, None] - self.window.size
        keep = (pos >= 0) & (kept_prefix | recent)
        # A stable sort on "dropped" brings kept slots to the front in their original order.
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
        index = order[None, :, None, :, None].expand_as(self.keys)
        self.keys = self.keys.gather(3, index)
        self.values = self.values.gather(3, index)
        self.used = keep.sum(dim=1)
        kept_sorted = keep.gather(1, order)
        self.positions = torch.where(kept_sorted, pos.gather(1, order), -1)
