"""What a response frame says, with monotonic alignment (VALL-E R): the text symbol, and with
`said_context` (`ValleConfig.said_context`) the symbols before and after it, how many frames into the
symbol the frame is, and how many frames of it are left.

That is what a duration-informed acoustic model (HTS's frame context, FastSpeech's expanded phonemes)
tells each frame, so that the sound of a frame follows from its inputs rather than from the codes the AR
drew before it, whose errors compound in free running (docs/benchmarks.md, "Which part loses the words").

Everything is known while decoding, in the same order as in training: the text pointer
(`valle.sampling.ar.TextPointer`) draws a symbol's length on its first frame, so that frame is told
"length not known yet" (training does the same: `runs`), and the frames after it count down the draw.

A frame's reading travels through the decode loops as one int64, the *said code*: the symbol's text id
alone without the context (what those loops carried before), else the id and its context packed
(`Embeddings.said_code`), so that comparing two readings (speculative decoding's check of a guess) is
comparing two integers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

INTO_CLASSES = 32  # frames into the symbol before this one: 0..30, or ≥ 31
LEFT_CLASSES = 33  # frames of the symbol after this one: not known yet (its first frame), 0..30, or ≥ 31


class SaidContext(nn.Module):
    """The context tables: the symbol before, the symbol after, frames into it, frames left of it."""

    def __init__(self, n_text_tokens: int, d_model: int) -> None:
        super().__init__()
        self.n_text_tokens = n_text_tokens
        self.before = nn.Embedding(n_text_tokens, d_model)
        self.after = nn.Embedding(n_text_tokens, d_model)
        self.into = nn.Embedding(INTO_CLASSES, d_model)
        self.left = nn.Embedding(LEFT_CLASSES, d_model)

    def pack(self, ids: Tensor, before: Tensor, after: Tensor, into: Tensor, left: Tensor) -> Tensor:
        """Text ids, their neighbours' ids, frames into the symbol, frames left (-1: not known yet) → said
        codes (all the same shape)."""
        n = self.n_text_tokens
        place = into.clamp(0, INTO_CLASSES - 1) + INTO_CLASSES * (left + 1).clamp(0, LEFT_CLASSES - 1)
        return ids + n * (before + n * (after + n * place))

    def forward(self, codes: Tensor) -> Tensor:
        """Said codes [...] → the context's embedding [..., D] (the symbol's own is `Embeddings.said`)."""
        n = self.n_text_tokens
        rest = codes // n
        before, rest = rest % n, rest // n
        after, place = rest % n, rest // n
        into, left = place % INTO_CLASSES, place // INTO_CLASSES
        return self.before(before) + self.after(after) + self.into(into) + self.left(left)


def runs(said: Tensor, boundary: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Text positions [B, T] of consecutive frames → (frames into each frame's run of one position,
    frames left in it after the frame, -1 on a run's first frame), each [B, T].

    A run ends where the position changes and before `boundary` [B] (the AR's stop position, which
    decoding reaches with a pointer that has just moved on, as onto a new symbol). A run's first frame is
    told nothing of its length: decoding draws that length from the first frame's own output."""
    frames = torch.arange(said.shape[1], device=said.device)[None, :].expand_as(said)
    starts = torch.ones_like(said, dtype=torch.bool)
    starts[:, 1:] = said[:, 1:] != said[:, :-1]
    if boundary is not None:
        starts = starts | (frames == boundary[:, None])
    run = starts.long().cumsum(1) - 1  # each frame's run, counted from 0 within the row
    first = torch.full_like(said, said.shape[1]).scatter_reduce(1, run, frames, reduce="amin")
    last = torch.full_like(said, -1).scatter_reduce(1, run, frames, reduce="amax")
    into = frames - first.gather(1, run)
    left = torch.where(starts, -1, last.gather(1, run) - frames)
    return into, left
