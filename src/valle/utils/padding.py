"""Padding variable-length sequences into one batch tensor: used by training batches (`data/`) and
inference batches (`sampling/`) alike, so it lives below both."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pad_1d(sequences: Sequence[torch.Tensor], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[N_i] tensors → ([B, N_max] padded with `pad`, lengths [B])."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    out = torch.full((len(sequences), int(lengths.max())), pad, dtype=torch.long)
    for i, s in enumerate(sequences):
        out[i, : len(s)] = s
    return out, lengths


def pad_codes(codes: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[L, T_i] tensors → ([B, L, T_max] padded with 0, frames [B])."""
    lengths = torch.tensor([c.shape[1] for c in codes], dtype=torch.long)
    out = torch.zeros(len(codes), codes[0].shape[0], int(lengths.max()), dtype=torch.long)
    for i, c in enumerate(codes):
        out[i, :, : c.shape[1]] = c
    return out, lengths
