"""Input embeddings (docs/design.md, "Embeddings"): text ids, prompt codes summed over levels, response
codes, level index."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from valle.models.said import SaidContext


def sinusoidal(positions: Tensor, d_model: int) -> Tensor:
    """Absolute sinusoidal embeddings [..., D] of (possibly fractional or negative) `positions` [...]
    (Vaswani et al.)."""
    inv_freq = torch.exp(
        torch.arange(0, d_model, 2, device=positions.device, dtype=torch.float32)
        * (-math.log(10000.0) / d_model)
    )
    angles = positions[..., None].float() * inv_freq
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class Embeddings(nn.Module):
    """Every table one model stack needs.

    Codes of level l are looked up at row `l * codebook_size + code` of one shared table per use
    (prompt, response), so all levels embed in one gather instead of L.
    """

    offsets: Tensor  # [L] int64 buffer: level l's first row in the code tables

    def __init__(
        self,
        n_text_tokens: int,
        n_levels: int,
        codebook_size: int,
        d_model: int,
        said: bool = False,
        said_context: bool = False,
    ) -> None:
        super().__init__()
        self.n_levels, self.codebook_size = n_levels, codebook_size
        self.text = nn.Embedding(n_text_tokens, d_model)
        self.prompt = nn.Embedding(n_levels * codebook_size, d_model)
        self.response = nn.Embedding(n_levels * codebook_size, d_model)
        self.level = nn.Embedding(n_levels, d_model)
        self.separator = nn.Parameter(torch.randn(d_model) * 0.02)
        self.start = nn.Parameter(torch.randn(d_model) * 0.02)  # the AR's input before its first code
        self.register_buffer("offsets", torch.arange(n_levels) * codebook_size, persistent=False)
        # monotonic alignment: the text symbol a response frame says, added to that frame's input
        self.said = nn.Embedding(n_text_tokens, d_model) if said else None
        # with said_context: its neighbours and the frame's place in it (valle.models.said)
        self.said_context = SaidContext(n_text_tokens, d_model) if said and said_context else None

    def said_code(
        self,
        text: Tensor,
        at: Tensor,
        last: Tensor,
        into: Tensor | None = None,
        left: Tensor | None = None,
    ) -> Tensor:
        """What frames say (valle.models.said): text [B, N] ids, `at` [B, ...] the text position each frame
        says, `last` [B, 1...] (broadcasting against `at`) each row's last position, `into`/`left` like `at`
        (needed with the context tables): frames into the symbol and frames left of it (-1: not known yet)
        → said codes like `at` (the text ids alone without the context tables)."""
        ids = _gather_rows(text, at)
        if self.said_context is None:
            return ids
        assert into is not None and left is not None  # the context tables need the frame's place
        before = _gather_rows(text, (at - 1).clamp(min=0))
        after = _gather_rows(text, torch.minimum(at + 1, last))
        return self.said_context.pack(ids, before, after, into, left)

    def embed_said(self, codes: Tensor) -> Tensor:
        """Said codes [...] → [..., D], what the frames' inputs add."""
        assert self.said is not None  # only models with monotonic alignment say symbols
        if self.said_context is None:
            return self.said(codes)
        return self.said(codes % self.said_context.n_text_tokens) + self.said_context(codes)

    def embed_prompt(self, prompt: Tensor) -> Tensor:
        """prompt [B, L, T] codes → [B, T, D], every frame the sum of its levels' embeddings."""
        return self.prompt(prompt + self.offsets[None, :, None]).sum(dim=1)

    def embed_levels_below(self, codes: Tensor, levels: Tensor) -> Tensor:
        """codes [B, L, T], levels [B] → [B, T, D]: row b sums the embeddings of its levels < levels[b]."""
        below = torch.arange(self.n_levels, device=codes.device)[None, :] < levels[:, None]  # [B, L]
        embedded = self.response(codes + self.offsets[None, :, None])  # [B, L, T, D]
        return (embedded * below[:, :, None, None].to(embedded.dtype)).sum(dim=1)

    def embed_level0(self, codes: Tensor) -> Tensor:
        """Level-0 codes [B, T] → [B, T, D] (the AR's response input)."""
        return self.response(codes)


def _gather_rows(table: Tensor, index: Tensor) -> Tensor:
    """table [B, N], index [B, ...] → table[b, index[b, ...]] shaped like `index`."""
    return table.gather(1, index.reshape(index.shape[0], -1)).reshape(index.shape)
