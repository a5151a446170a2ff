"""Which guesses a Medusa pass checks (`sampler.medusa`, `sampler.medusa_tree`): the candidate tree, and
whether a model can decode that way.

The model's Medusa heads (`valle.models.medusa`) guess the frames after the next one; each pass of
`valle.sampling.ar.Speculation` feeds every row its newest frame and a tree of those guesses in one
backbone call with tree attention (`TreeStepping.tree_step`). docs/design.md, "Medusa".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from valle.errors import ConfigError
from valle.models.backbones import TreeStepping
from valle.models.valle import Valle
from valle.sampling.pipeline import SamplerConfig


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
