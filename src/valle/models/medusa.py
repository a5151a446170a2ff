"""Medusa heads: extra AR output heads that guess the codes after the next one (docs/design.md, "Medusa").

The base head reads the AR's last hidden state at position j and predicts the code of frame j (the next
one). Head k (1..K) reads the same hidden state and predicts the code of frame j + k, which the backbone
has not seen yet. Each head is Medusa's (Cai et al. 2024, "Medusa: Simple LLM Inference Acceleration
Framework with Multiple Decoding Heads"): one residual block `h + SiLU(W h)`, W zero-initialised so that
the head starts as the base head, then its own projection, initialised from the base head's level-0 rows.
Decoding proposes their guesses and keeps those the base head agrees with
(`valle.sampling.ar.Speculation`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MedusaHeads(nn.Module):
    """K heads [K, ..., V + 1]: head k (0-based) guesses the code k + 1 frames after the base head's."""

    def __init__(self, n_heads: int, d_model: int, n_outputs: int) -> None:
        super().__init__()
        self.blocks = nn.Parameter(torch.zeros(n_heads, d_model, d_model))  # W of h + SiLU(W h + b)
        self.block_bias = nn.Parameter(torch.zeros(n_heads, d_model))
        self.weight = nn.Parameter(torch.randn(n_heads, n_outputs, d_model) * d_model**-0.5)
        self.bias = nn.Parameter(torch.zeros(n_heads, n_outputs))

    @property
    def size(self) -> int:
        return int(self.weight.shape[0])

    @torch.no_grad()
    def start_from(self, weight: Tensor, bias: Tensor) -> None:
        """Every head's projection := the base head's (`weight` [V + 1, D], `bias` [V + 1]), as Medusa
        starts them: at first each head says what the base head says, and learns the offset from there."""
        self.weight.copy_(weight.expand_as(self.weight))
        self.bias.copy_(bias.expand_as(self.bias))

    def forward(self, hidden: Tensor, head: int | None = None) -> Tensor:
        """hidden [..., D] → logits [K, ..., V + 1] of every head, or [..., V + 1] of head `head`."""
        if head is not None:
            h = hidden + F.silu(hidden @ self.blocks[head].t() + self.block_bias[head])
            return h @ self.weight[head].t() + self.bias[head]
        return torch.stack([self(hidden, k) for k in range(self.size)])
