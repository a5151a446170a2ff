"""The NAR level loop: one full forward per level 1..L-1, for the whole batch at once."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from valle.models.valle import Valle
from valle.sampling.pipeline import NarSampler
from valle.utils.batch import Conditioning


@torch.inference_mode()
def decode_nar(
    model: Valle,
    cond: Conditioning,
    level0: Tensor,
    lengths: Tensor,
    sampler: NarSampler,
    *,
    generator: torch.Generator | None = None,
    on_level: Callable[[int], None] | None = None,
    frame_symbols: Tensor | None = None,
    fixed: Tensor | None = None,
    fixed_lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Fill levels 1..L-1 given level 0.

    Args:
        cond: the text and prompt of each row, as the AR decoded them.
        level0: [B, T] level-0 codes; lengths: [B] valid frames per row.
        sampler: logits [N, V] → codes [N] (the NAR sampler: argmax at temperature 0).
        generator: the random source of sampling (None: torch's global one).
        on_level: called after every level (progress bars).
        frame_symbols: [B, T] the text id each frame says (monotonic alignment: the AR's pointer).
        fixed: [B, L, F] codes of the first F frames, kept as they are and heard by the later levels
            (streaming: frames already played); `fixed_lengths` [B]: of row b only the first
            `fixed_lengths[b]` (default: all F).

    Returns:
        codes [B, L, T] (0 past each row's length), and with the sampler's `expected_codewords` the
        distributions [B, L - 1, T, K] over each level's codes that the codec decodes (`Codec.decode`'s
        `expected`), else None. Each level hears the codes drawn for the levels below it.
    """
    batch, frames = level0.shape
    codes = torch.zeros(batch, model.config.n_levels, frames, dtype=torch.long, device=level0.device)
    codes[:, 0] = level0
    valid = torch.arange(frames, device=level0.device)[None, :] < lengths[:, None]
    expected: list[Tensor] = []
    for level in range(1, model.config.n_levels):
        logits = model.nar_logits(cond, codes, lengths, level, frame_symbols)
        distribution = sampler.expected(logits)
        if distribution is not None:
            expected.append(distribution)
        sampled = sampler(logits, generator=generator)
        codes[:, level] = torch.where(valid, sampled, 0)
        if fixed is not None:
            kept = codes[:, level, : fixed.shape[2]]
            if fixed_lengths is not None:
                keep = torch.arange(fixed.shape[2], device=kept.device)[None] < fixed_lengths[:, None]
                kept.copy_(torch.where(keep, fixed[:, level], kept))
            else:
                kept.copy_(fixed[:, level])
        if on_level is not None:
            on_level(level)
    return codes, torch.stack(expected, dim=1) if expected else None
