"""Medusa decoding (`sampler.medusa`): several AR frames a backbone pass, exactly the plain decode's.

The model's Medusa heads (`valle.models.medusa`) guess the frames after the next one. Each pass feeds every
row its newest frame and a tree of those guesses (`CandidateTree`) in one backbone call, with tree
attention (`TreeStepping.tree_step`); then the row draws frame after frame from the logits of the branch
it is on, and goes down the branch whose guess equals what it drew. The cache keeps that branch and
forgets the rest (`SpeculativeCache.accept`). docs/design.md, "Medusa".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from valle.errors import ConfigError
from valle.models.backbones import TreeStepping
from valle.models.cache import SpeculativeCache
from valle.models.valle import Valle
from valle.sampling.pipeline import SamplerConfig

if TYPE_CHECKING:
    from valle.sampling.ar import ArRows

MAX_CANDIDATES = 64  # a pass's positions besides the root: beyond this a pass costs more than it keeps


@dataclass(frozen=True)
class CandidateTree:
    """Which of the heads' guesses a pass checks: Medusa's candidate tree, the same for every row.

    Node 0 is the root: the row's newest frame, drawn but not fed yet. A node at depth d >= 1 is one of
    head d's `widths[d - 1]` most likely codes for the frame d after the root, and every node below it
    continues that guess. Nodes are numbered breadth-first, so `widths` (1, 1, 1), a chain of each head's
    top guess, is the causal layout of four positions; (3, 2, 1) checks 3 + 6 + 6 = 15 candidates.

    Attributes:
        widths: how many of each head's guesses, head 1 first.
        depth: [n] int64 each node's depth (root 0).
        rank: [n] int64 which of its head's guesses a node is (0 the most likely; root 0).
        sees: [n, n] bool node i attends to node j: j is i or one of its ancestors.
        children: [n, W] int64 each node's children (-1 pads), W the widest level.
    """

    widths: tuple[int, ...]
    depth: Tensor
    rank: Tensor
    sees: Tensor
    children: Tensor

    @classmethod
    def of_widths(cls, widths: Sequence[int], device: torch.device | str | None = None) -> CandidateTree:
        paths: list[tuple[int, ...]] = [()]  # each node as its ranks from the root down
        level: list[tuple[int, ...]] = [()]
        for width in widths:
            level = [path + (rank,) for path in level for rank in range(width)]
            paths += level
        index = {path: i for i, path in enumerate(paths)}
        n, wide = len(paths), max(widths, default=1)
        sees = torch.zeros(n, n, dtype=torch.bool)
        children = torch.full((n, wide), -1, dtype=torch.long)
        for i, path in enumerate(paths):
            for d in range(len(path) + 1):
                sees[i, index[path[:d]]] = True
            if path:
                children[index[path[:-1]], path[-1]] = i
        return cls(
            tuple(widths),
            torch.tensor([len(p) for p in paths], dtype=torch.long, device=device),
            torch.tensor([p[-1] if p else 0 for p in paths], dtype=torch.long, device=device),
            sees.to(device),
            children.to(device),
        )

    @property
    def size(self) -> int:
        """Positions a pass feeds: the root and every candidate."""
        return int(self.depth.shape[0])


def check_medusa(model: Valle, config: SamplerConfig) -> None:
    """Raise ConfigError when the sampler asks for Medusa decoding the model cannot do (`candidate_tree`)."""
    if config.medusa:
        candidate_tree(model, config)


def candidate_tree(model: Valle, config: SamplerConfig, device: torch.device | None = None) -> CandidateTree:
    """The tree of guesses a Medusa decode with these settings checks: `config.medusa_tree`, or a chain of
    every head's top guess when it is unset.

    Raises:
        ConfigError: the model has no heads, its backbone cannot branch or forget (a recurrent state), or
            the tree is deeper than the heads.
    """
    if model.ar.medusa is None:
        raise ConfigError(
            "sampler.medusa=true needs a model with Medusa heads (model.medusa.heads > 0, trained: "
            "docs/training.md, 'Medusa heads'); set medusa=false"
        )
    if not isinstance(model.ar.backbone, TreeStepping):
        raise ConfigError(
            f"sampler.medusa=true: the {model.config.backbone.name} backbone's state cannot forget rejected "
            "guesses (a recurrent state); Medusa decoding needs the transformer; set medusa=false"
        )
    heads = model.config.medusa.heads
    widths = tuple(config.medusa_tree) if config.medusa_tree else (1,) * heads
    if len(widths) > heads:
        raise ConfigError(
            f"sampler.medusa_tree={list(widths)} is {len(widths)} deep, but the model has {heads} Medusa "
            f"heads; give at most {heads} widths"
        )
    return CandidateTree.of_widths(widths, device)


class Speculation:
    """Medusa's multi-token decoding for `ArRows` (docs/design.md, "Medusa").

    Each pass feeds every row its newest frame (the root) and the candidate tree's guesses, in one
    backbone call; then the row draws frame after frame: from the root's logits, then from the logits of
    the root's child whose guess equals that draw (and, with monotonic alignment, whose guessed symbol
    the text pointer says), and so on down the tree, while such a child exists. A pass keeps 1 .. depth + 1
    frames a row, and the cache keeps that branch's positions (`SpeculativeCache.accept`).

    Every frame is drawn by the sampler pipeline from the logits a plain decode would have had, with the
    row's own draws (`ArRows.frame`): greedy decoding gives the plain tokens, and so does sampling when
    each row has its own generator (a single row always has). The guesses only decide how far one pass
    gets: exact-match acceptance, never an approximation of the distribution.
    """

    def __init__(self, model: Valle, tree: CandidateTree, rows: ArRows) -> None:
        backbone, cache = model.ar.backbone, rows.cache
        # checked once here (`candidate_tree`), not every pass: a protocol isinstance costs ~20 µs
        assert model.ar.medusa is not None and isinstance(backbone, TreeStepping)
        assert isinstance(cache, SpeculativeCache)  # rows that speculate never join or leave: the same cache
        self.model, self.heads, self.tree = model, model.ar.medusa, tree
        self.backbone, self.cache = backbone, cache
        # each node's children, a missing one pointing past the last node, at a code no row draws
        self.children = torch.where(tree.children >= 0, tree.children, tree.size)
        self.rows = torch.arange(rows.size, device=rows.steps.device)
        self.pending: Tensor | None = None  # [B] each row's newest frame, not yet fed
        self.said: Tensor | None = None  # [B] the text ids the frame after it says (monotonic alignment)
        self.guesses = self._guess(rows.hidden)  # [B, n - 1] the tree's candidates
        self.passes = 0
        self._row_passes = torch.zeros((), dtype=torch.long, device=rows.steps.device)
        self._kept = torch.zeros_like(self._row_passes)

    def _guess(self, hidden: Tensor) -> Tensor:
        """[B, D] → [B, n - 1]: each candidate's code, one of its head's most likely (never the stop id)."""
        tree, depth = self.tree, len(self.tree.widths)
        logits = self.heads(hidden)[:depth, :, : self.model.config.codebook_size]  # [depth, B, V]
        top = logits.topk(max(tree.widths), dim=-1).indices  # [depth, B, W]
        return top[tree.depth[1:] - 1, :, tree.rank[1:]].t()

    def advance(self, rows: ArRows) -> None:
        if self.pending is None:  # the first frame comes from the prefill's logits, as in a plain decode
            self.pending, self.said = rows.frame(rows.logits, rows.hidden)
            if rows.done:
                return
        self._pass(rows)

    def _pass(self, rows: ArRows) -> None:
        assert self.pending is not None
        model, tree, depth, batch = self.model, self.tree, len(self.tree.widths), self.rows
        running = ~rows.finished
        feed = torch.cat([self.pending[:, None], self.guesses], dim=1)  # [B, n]
        said = None
        if rows.pointer is not None:
            assert self.said is not None
            guessed = torch.cat([self.said[:, None], rows.pointer.guess_said(depth)], dim=1)  # by depth
            said = guessed[:, tree.depth]
        steps = (rows.steps - 1)[:, None] + tree.depth[None, :]  # the root's step is the pending frame's
        x = model.ar_step_input(feed, steps, said)
        hidden = self.backbone.tree_step(x, self.cache, tree.depth, tree.sees)
        logits = model.ar_logits(hidden)
        # row b's node j is entry b * n + j of the flattened passes (index_select: cheaper than [rows, node])
        flat_logits, flat_hidden = logits.flatten(0, 1), hidden.flatten(0, 1)
        first = batch * tree.size
        nowhere = torch.full_like(feed[:, :1], -2)  # what a missing child guessed: never a code or symbol
        feed = torch.cat([feed, nowhere], dim=1)
        said = torch.cat([said, nowhere], dim=1) if said is not None else None
        node = torch.zeros_like(rows.steps)  # where each row is in the tree (a row no longer `ok`: anywhere)
        path = torch.zeros(feed.shape[0], depth + 1, dtype=torch.long, device=feed.device)
        kept = torch.zeros_like(rows.steps)
        ok, newest = running, self.pending
        for i in range(depth + 1):
            at = first + node
            codes, next_said = rows.frame(
                flat_logits.index_select(0, at), flat_hidden.index_select(0, at), ok
            )
            newest = torch.where(ok, codes, newest)
            kept = kept + ok  # `ok` only ever turns off: it counts the frames kept
            if i == depth:
                break
            below = self.children[node]  # [B, W]
            right = feed.gather(1, below) == codes[:, None]
            if said is not None and next_said is not None:
                right = right & (said.gather(1, below) == next_said[:, None])
            ok = ok & right.any(dim=1) & ~rows.finished
            node = below.gather(1, right.long().argmax(dim=1, keepdim=True))[:, 0]
            path[:, i + 1] = node
            if not bool(ok.any()):
                break
        last = path.gather(1, (kept - 1).clamp(min=0)[:, None])[:, 0]  # the node that drew the newest frame
        self.cache.accept(tree.size, path, kept)  # stopped rows (kept 0) keep none
        # rows sitting sub-steps out kept their pointer: it says what follows each row's newest frame
        self.pending, self.said = newest, rows.pointer.said() if rows.pointer is not None else None
        self.guesses = self._guess(flat_hidden.index_select(0, first + last))
        self.passes += 1
        self._row_passes += running.sum()  # tensors: no host sync a pass
        self._kept += kept.sum()

    @property
    def row_passes(self) -> int:
        """Passes summed over the rows still running in each."""
        return int(self._row_passes)

    @property
    def kept(self) -> int:
        """Frames kept over every pass and running row (a pass's mean: kept / row_passes)."""
        return int(self._kept)
