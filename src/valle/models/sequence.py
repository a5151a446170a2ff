"""The one place that lays out model inputs, for training and for decoding alike (docs/design.md,
"Sequence layout").

Each row is `[text ; sep ; prompt ; sep ; response]`, packed without gaps and right-padded, with the
level embedding of the level being predicted added at every position.

- AR (level 0): response = `[start, E(R0[0]), ..., E(R0[T-1])]`, targets `R0[0..T-1], stop`.
  For decoding, the prefix is the same layout with only `[start]` as response, and each step feeds
  `E(code) + E_level[0]` (`ar_step_input`).
- NAR (level k): response = `Σ_{l<k} E_l(R[l])`, targets `R[k]`.

With `segment_positions = r > 0` (`ValleConfig.segment_positions`), each segment also gets sinusoidal
positions of its own, as in the VALL-E paper, on one time line: the response's frames count from 0
(the AR's start vector is at 0, its code j at j + 1), the prompt's frames are at -Tp .. -1 just before
it, and text symbol t is at t·r, r being about the audio frames per text symbol, so that a frame and the
symbol it says have similar positions. In a continuation row (the prompt is the utterance's own
beginning, which the text covers too) the text is shifted by -Tp, so the response's first frame lines
up with the first symbol it still has to say.

A training row may be placed as if deep into a long output (`position_shift`, the
`training.sliding_context.max_shift` key): its response's positions, and its text's, move on by s frames
while the prompt stays at -Tp .. -1, and the backbone moves the response's rotary (or sinusoidal)
positions on by s too (`shifted_positions`). Decoding a long output then meets positions and distances to
the prompt that training has shown. With `shift_text=False` the text keeps its own positions: the row's
text is then preceded by about s frames' worth of other text (`training.sliding_context.text_before`),
so its symbols already sit where a long text puts them.

With monotonic alignment (`ValleConfig.monotonic_alignment`, VALL-E R), every response position also
gets `E_said(text[s_j])`, the embedding of the text id `s_j` that frame j says (`frame_symbols`, from a
forced alignment; the stop position says the last id, `<eos>`), and the AR is trained to predict
`min(s_{j+1} - s_j, ADVANCE_CLASSES - 1)` at position j (how far the next frame moves on through the
text) and how many more frames say `s_j` (`REMAINING_CLASSES`). Decoding follows its own prediction (a
pointer that only moves forward), so the text is read once, in order, and the frame always knows which
symbol it is saying. The NAR's frames get the same embedding. With `ValleConfig.said_context` a frame is
also told the symbols around `s_j` and its place in `s_j`'s frames (valle.models.said).

Rows of `cond.text_dropped` are shown no text: the text segment is empty and no frame gets `E_said`. The
AR is trained on a share of them (`ValleConfig.text_dropout`), so it also learns what comes next from
the voice and the codes alone: the unconditional model that classifier-free guidance steers away from
(`valle.sampling.ar`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from valle.models.embeddings import Embeddings, sinusoidal
from valle.models.said import runs
from valle.utils.batch import Conditioning

IGNORE = -100  # targets at positions without a loss
# monotonic alignment: the next frame moves on by 0, 1, 2 or ≥ 3 text ids (ids of no frames, e.g. a word
# separator without a pause, are skipped)
ADVANCE_CLASSES = 4
# monotonic alignment: how many more frames the current text id lasts after this one (0..30, or ≥ 31)
REMAINING_CLASSES = 32


@dataclass
class Packed:
    """A batch of packed sequences."""

    x: Tensor  # [B, S, D]
    lengths: Tensor  # [B] valid positions per row
    prefix_lengths: Tensor  # [B] positions of text ; sep ; prompt ; sep (the response starts here)
    targets: Tensor | None  # [B, S] int64, IGNORE except at response positions
    # [B, S] int64 (AR with monotonic alignment): how far the next frame moves on through the text
    advance_targets: Tensor | None = None
    # [B, S] int64 (AR with monotonic alignment): how many more frames say the current text id
    remaining_targets: Tensor | None = None


def pack(segments: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Concatenate right-padded segments row by row without gaps.

    Args:
        segments: (values [B, T_k, ...], lengths [B]) pairs, in sequence order.

    Returns:
        (packed [B, S, ...] zero-padded, lengths [B], start offset of each segment [B]).
    """
    batch = segments[0][0].shape[0]
    device = segments[0][0].device
    offsets, total = [], torch.zeros(batch, dtype=torch.long, device=device)
    for _, lengths in segments:
        offsets.append(total)
        total = total + lengths
    size = int(total.max())
    first = segments[0][0]
    out = first.new_zeros((batch, size + 1, *first.shape[2:]))  # column `size` swallows padding writes
    for (values, lengths), start in zip(segments, offsets, strict=True):
        steps = torch.arange(values.shape[1], device=device)[None, :]
        index = torch.where(steps < lengths[:, None], start[:, None] + steps, size)
        index = index.view(*index.shape, *([1] * (values.dim() - 2))).expand_as(values)
        out.scatter_(1, index, values)
    return out[:, :size], total, offsets


def _prefix_segments(
    emb: Embeddings,
    cond: Conditioning,
    scale: float = 0.0,
    position_shift: Tensor | None = None,
    shift_text: bool = True,
) -> list[tuple[Tensor, Tensor]]:
    text, prompt = cond.text, cond.prompt
    batch = cond.size
    ones = torch.ones(batch, dtype=torch.long, device=text.device)
    sep = emb.separator.expand(batch, 1, -1)
    text_x, prompt_x = emb.text(text), emb.embed_prompt(prompt)
    if scale > 0:
        shift = torch.where(cond.continuing, cond.prompt_lengths, 0)
        if position_shift is not None and shift_text:  # the text moves on with the response it says
            shift = shift - position_shift
        text_at = torch.arange(text.shape[1], device=text.device)[None, :] * scale - shift[:, None]
        prompt_at = torch.arange(prompt.shape[2], device=text.device)[None, :] - cond.prompt_lengths[:, None]
        text_x = text_x + sinusoidal(text_at, text_x.shape[-1]).to(text_x.dtype)
        prompt_x = prompt_x + sinusoidal(prompt_at, prompt_x.shape[-1]).to(prompt_x.dtype)
    return [(text_x, cond.shown_text_lengths), (sep, ones), (prompt_x, cond.prompt_lengths), (sep, ones)]


def response_positions(
    emb_dim: int, first: int, length: int, device: torch.device, shift: Tensor | None = None
) -> Tensor:
    """[1 or B, length, D] sinusoidal positions first .. first + length - 1 of the response segment,
    each row's moved on by `shift` [B] when given (`position_shift`)."""
    at = torch.arange(first, first + length, device=device)[None, :]
    return sinusoidal(at if shift is None else at + shift[:, None], emb_dim)


def shifted_positions(position_shift: Tensor, prefix_lengths: Tensor, size: int) -> Tensor:
    """[B, size] the backbone's position offsets (`Backbone.forward`'s `position_offsets`) for a
    `position_shift` [B]: 0 on the prefix, the row's shift from its response on."""
    steps = torch.arange(size, device=position_shift.device)[None, :]
    return torch.where(steps >= prefix_lengths[:, None], position_shift[:, None], 0)


def _add_level(emb: Embeddings, packed: Tensor, levels: Tensor) -> Tensor:
    return packed + emb.level(levels)[:, None, :]


def build_ar(
    emb: Embeddings,
    cond: Conditioning,
    codes: Tensor | None = None,
    code_lengths: Tensor | None = None,
    *,
    stop_token: int = 0,
    segment_positions: float = 0.0,
    input_dropout: float = 0.0,
    frame_symbols: Tensor | None = None,
    input_codes: Tensor | None = None,
    position_shift: Tensor | None = None,
    shift_text: bool = True,
) -> Packed:
    """AR inputs (and targets when `codes` is given) for level 0.

    Args:
        cond: the text and prompt of each row (`cond.continues` places the text's positions in
            continuation rows when `segment_positions` is on).
        codes: [B, L, T] target codes (None when decoding: the response is then only the start vector,
            and the next output is the first code); code_lengths: [B] their valid frames.
        stop_token: the id of the stop target (the codebook size).
        segment_positions: r > 0 adds the per-segment sinusoidal positions (module docstring).
        input_dropout: training only: the share of response inputs whose code embedding is dropped
            (zeroed; its position stays), so the next frame cannot simply be copied from the last one.
            The targets are unchanged.
        frame_symbols: [B, T] the text id each target frame says (monotonic alignment: needed with
            `codes` when the embeddings have a `said` table; decoding starts at `cond.starts`).
        input_codes: training only: [B, T] level-0 codes fed as the response's inputs in place of
            `codes[:, 0]` (scheduled sampling feeds some of the model's own draws); the targets stay.
        position_shift: training only: [B] int64, each row's response (and, with `segment_positions`,
            its text) placed that many frames further on, as deep into a long output (module
            docstring); the backbone moves the response's own positions with `shifted_positions`.
        shift_text: False: the text keeps its own positions under `position_shift`, because the text
            said before the row already precedes it (`training.sliding_context.text_before`).
    """
    batch, device = cond.size, cond.device
    start = emb.start.expand(batch, 1, -1)
    if codes is None:
        response, response_lengths = start, torch.ones(batch, dtype=torch.long, device=device)
    else:
        if code_lengths is None:
            raise ValueError("build_ar: codes need their code_lengths")
        inputs = emb.embed_level0(codes[:, 0] if input_codes is None else input_codes)
        if input_dropout > 0:
            kept = torch.rand(inputs.shape[:2], device=inputs.device) >= input_dropout
            inputs = inputs * kept[..., None].to(inputs.dtype)
        response = torch.cat([start, inputs], dim=1)
        response_lengths = code_lengths + 1
    if segment_positions > 0:
        response = response + response_positions(
            response.shape[-1], 0, response.shape[1], device, position_shift
        )
    said = None
    if emb.said is not None:
        said = _said_positions(cond, codes, code_lengths, frame_symbols)
        response = response + said_embedding(emb, cond, said, code_lengths)
    segments = _prefix_segments(emb, cond, segment_positions, position_shift, shift_text)
    x, lengths, offsets = pack([*segments, (response, response_lengths)])
    x = _add_level(emb, x, torch.zeros(batch, dtype=torch.long, device=device))
    targets = advance = remaining = None
    if codes is not None and code_lengths is not None:
        stop = torch.full((batch, 1), stop_token, dtype=torch.long, device=codes.device)
        level0 = torch.cat([codes[:, 0], stop], dim=1)
        level0 = level0.scatter(1, code_lengths[:, None], stop)  # stop right after each row's last code
        targets = place_targets(level0, response_lengths, offsets[-1], x.shape[1])
        if said is not None:
            steps = (said[:, 1:] - said[:, :-1]).clamp(0, ADVANCE_CLASSES - 1)
            advance = place_targets(steps, code_lengths, offsets[-1], x.shape[1])
            left = frames_left(said[:, :-1], code_lengths).clamp(max=REMAINING_CLASSES - 1)
            remaining = place_targets(left, code_lengths, offsets[-1], x.shape[1])
    return Packed(x, lengths, offsets[-1], targets, advance, remaining)


def said_embedding(
    emb: Embeddings, cond: Conditioning, said: Tensor, boundary: Tensor | None = None
) -> Tensor:
    """[B, T, D] what consecutive frames at text positions `said` [B, T] say (valle.models.said; a run of
    one position also ends before `boundary` [B], the AR's stop position); zero in rows shown no text
    (`cond.text_dropped`: they must not learn, or be told, which symbol a frame says)."""
    into, left = runs(said, boundary) if emb.said_context is not None else (None, None)
    out = emb.embed_said(emb.said_code(cond.text, said, cond.last_symbol[:, None], into, left))
    if cond.text_dropped is not None:
        out = out * (~cond.text_dropped)[:, None, None].to(out.dtype)
    return out


def frames_left(said: Tensor, lengths: Tensor) -> Tensor:
    """[B, T] text positions of each frame → [B, T] how many of the following frames (before `lengths`)
    still say the same position: the frames left in each run (0 on a run's last frame)."""
    frames = torch.arange(said.shape[1], device=said.device)[None, :].expand_as(said)
    starts = torch.ones_like(said, dtype=torch.bool)
    starts[:, 1:] = said[:, 1:] != said[:, :-1]
    run = starts.long().cumsum(1) - 1  # each frame's run, counted from 0 within the row
    last = torch.where(frames < lengths[:, None], frames, -1)
    run_end = torch.full_like(said, -1).scatter_reduce(1, run, last, reduce="amax")
    return (run_end.gather(1, run) - frames).clamp(min=0)


def _said_positions(
    cond: Conditioning, codes: Tensor | None, code_lengths: Tensor | None, frame_symbols: Tensor | None
) -> Tensor:
    """[B, T + 1] the text position each AR response input says: frame j's, then `<eos>` at the stop
    position (decoding: [B, 1], the row's start)."""
    last = cond.last_symbol[:, None]
    if codes is None:
        return torch.minimum(cond.starts[:, None], last)
    if frame_symbols is None or code_lengths is None:
        raise ValueError("a model with monotonic alignment needs the batch's frame_symbols to train")
    said = torch.cat([frame_symbols[:, : codes.shape[2]], last], dim=1)
    said = said.scatter(1, code_lengths[:, None], last)  # the stop position says `<eos>`
    return torch.minimum(said, last)


def build_nar(
    emb: Embeddings,
    cond: Conditioning,
    codes: Tensor,
    code_lengths: Tensor,
    levels: Tensor,
    *,
    with_targets: bool = True,
    segment_positions: float = 0.0,
    frame_symbols: Tensor | None = None,
    position_shift: Tensor | None = None,
    shift_text: bool = True,
) -> Packed:
    """NAR inputs for level `levels[b]` of each row (>= 1): the response sums the levels below it.

    Args:
        cond: the text and prompt of each row; codes: [B, L, T] (levels < `levels[b]` are read);
        code_lengths: [B] valid frames; levels: [B] int64.
        with_targets: also place `codes[b, levels[b]]` as targets at the response positions.
        segment_positions: as in `build_ar`.
        frame_symbols: [B, T] the text id each frame says (needed when the embeddings have `said`).
        position_shift, shift_text: as in `build_ar`.
    """
    response = emb.embed_levels_below(codes, levels)
    if emb.said is not None:
        if frame_symbols is None:
            raise ValueError("a model with monotonic alignment needs frame_symbols for the NAR")
        said = torch.minimum(frame_symbols[:, : codes.shape[2]], cond.last_symbol[:, None])
        response = response + said_embedding(emb, cond, said)
    if segment_positions > 0:  # frame j at j + 1, where the AR feeds it
        response = response + response_positions(
            response.shape[-1], 1, response.shape[1], codes.device, position_shift
        )
    segments = _prefix_segments(emb, cond, segment_positions, position_shift, shift_text)
    x, lengths, offsets = pack([*segments, (response, code_lengths)])
    x = _add_level(emb, x, levels)
    targets = None
    if with_targets:
        wanted = codes.gather(1, levels[:, None, None].expand(-1, 1, codes.shape[2]))[:, 0]  # [B, T]
        targets = place_targets(wanted, code_lengths, offsets[-1], x.shape[1])
    return Packed(x, lengths, offsets[-1], targets)


def prefix_targets(cond: Conditioning, size: int) -> tuple[Tensor, Tensor]:
    """Optional AR targets on the prefix: the next text id at text positions, the next prompt frame's
    level-0 code at prompt positions (each [B, size], IGNORE elsewhere)."""
    text_lengths, prompt_lengths = cond.shown_text_lengths, cond.prompt_lengths
    text_targets = place_targets(
        cond.text[:, 1:], (text_lengths - 1).clamp(min=0), torch.zeros_like(text_lengths), size
    )
    prompt_targets = place_targets(
        cond.prompt[:, 0, 1:], (prompt_lengths - 1).clamp(min=0), text_lengths + 1, size
    )
    return text_targets, prompt_targets


def place_targets(values: Tensor, lengths: Tensor, start: Tensor, size: int) -> Tensor:
    """Place `values` [B, T] at positions start[b] .. start[b] + lengths[b] of a [B, size] row of IGNORE."""
    out = torch.full((values.shape[0], size + 1), IGNORE, dtype=torch.long, device=values.device)
    steps = torch.arange(values.shape[1], device=values.device)[None, :]
    index = torch.where(steps < lengths[:, None], start[:, None] + steps, size)  # padding → dropped column
    out.scatter_(1, index, values)
    return out[:, :size]
