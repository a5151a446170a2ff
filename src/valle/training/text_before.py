"""The text said before a row placed deep into a long output (`training.sliding_context.text_before`).

A shifted training row (`max_shift`) has its response placed s frames into a long output, but its text
is still one sentence. Decoding one long text is different: when the response is s frames in, the text
holds everything said before it too, and the model has to read on at the right symbol with all of that
in front of it. `precede_with_text` gives each shifted row that view: it puts about s frames' worth of
other rows' phonemes (at the row's own rate, frames per symbol) between the row's head ids (`<bos>`,
`<lang>`) and its own phonemes, the nearest row's sentence last, and moves the row's alignment with its
symbols. The text then keeps its own positions (`shift_text=False` in `Valle.forward`): the row's
symbols sit where a long text puts them, after the ones before.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from valle.text.symbols import HEAD_IDS, PAD, SPECIALS, TAIL_IDS
from valle.utils.batch import Batch
from valle.utils.padding import pad_1d


def symbols_before(batch: Batch, shifts: Tensor) -> Tensor:
    """[B] int64: how many symbols each row says in its `shifts` [B] frames, at its own rate (its
    phonemes over its frames)."""
    body = (batch.cond.text_lengths - HEAD_IDS - TAIL_IDS).clamp(min=0)
    frames = batch.code_lengths.clamp(min=1)
    return torch.div(shifts.to(body.device) * body * 2 + frames, 2 * frames, rounding_mode="floor")


def precede_with_text(batch: Batch, shifts: Tensor) -> Batch:
    """The batch with each row's text preceded by `symbols_before` symbols of the other rows' phonemes
    (cycled: rows b-1, b-2, ... with b-1's sentence last; a batch of one row repeats its own), its
    `frame_symbols` and `start_symbol` moved on by as many. A frame that said a head id (the silence
    before the first phoneme) now says the last symbol before the row's own, as in a long text."""
    cond = batch.cond
    wanted = symbols_before(batch, shifts).tolist()
    if not any(wanted):
        return batch
    lengths = cond.text_lengths.tolist()
    bodies = [cond.text[b, HEAD_IDS : max(n - TAIL_IDS, HEAD_IDS)] for b, n in enumerate(lengths)]
    texts = []
    for b, n in enumerate(lengths):
        own = cond.text[b, :n]
        texts.append(torch.cat([own[:HEAD_IDS], _said_before(bodies, b, wanted[b]), own[HEAD_IDS:]]))
    text, new_lengths = (t.to(cond.text.device) for t in pad_1d(texts, SPECIALS.index(PAD)))
    counts = new_lengths - cond.text_lengths
    return replace(
        batch,
        cond=replace(
            cond, text=text, text_lengths=new_lengths, start_symbol=_moved_on(cond.start_symbol, counts)
        ),
        frame_symbols=_frames_moved_on(batch.frame_symbols, counts, batch.code_lengths),
    )


def _said_before(bodies: list[Tensor], row: int, count: int) -> Tensor:
    """The last `count` (or fewer, if they are all empty) symbols of the other rows' bodies laid end to
    end, row-1's last."""
    others = [bodies[(row - k) % len(bodies)] for k in range(1, len(bodies))] or [bodies[row]]
    total = sum(len(o) for o in others)
    if count == 0 or total == 0:
        return bodies[row][:0]
    rounds = -(-count // total)  # enough whole cycles to hold `count`
    said = [body for _ in range(rounds) for body in others]
    return torch.cat(said[::-1])[-count:]


def _moved_on(positions: Tensor | None, counts: Tensor) -> Tensor | None:
    """Text positions [B, ...] after `counts` [B] symbols were put before each row's own: a head id's
    becomes the last symbol before the row's own (where one was put)."""
    if positions is None:
        return None
    shape = (-1,) + (1,) * (positions.dim() - 1)
    counts = counts.view(shape)
    head = torch.where(counts > 0, HEAD_IDS - 1 + counts, positions)
    return torch.where(positions >= HEAD_IDS, positions + counts, head)


def _frames_moved_on(frame_symbols: Tensor | None, counts: Tensor, code_lengths: Tensor) -> Tensor | None:
    """`frame_symbols` [B, T] moved on by `counts` [B] symbols, still 0 past each row's frames."""
    if frame_symbols is None:
        return None
    moved = _moved_on(frame_symbols, counts)
    assert moved is not None
    frames = torch.arange(frame_symbols.shape[1], device=frame_symbols.device)[None, :]
    return torch.where(frames < code_lengths[:, None], moved, 0)
