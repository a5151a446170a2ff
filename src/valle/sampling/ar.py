"""The AR loop: level-0 codes one step at a time, with the backbone's incremental state.

Prefill once with `[text ; sep ; prompt ; sep ; start]` (built by `valle.models.sequence`, as in
training), then each step feeds one code per row. Rows stop on their own (stop token or the step
limit); the only host sync per step is the "all rows finished?" check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from valle.models.backbones import ContextWindow, DecodeCache
from valle.models.valle import Valle
from valle.sampling.compiled import fast_step, static_capacity
from valle.sampling.pipeline import ArSampler
from valle.utils.batch import Conditioning


@dataclass(frozen=True)
class DecodeLimits:
    """How far the AR may run and how much of its past it sees.

    Attributes:
        max_steps: the most codes per row (a row that reaches it has `hit_limit`); the cache is sized by it.
        row_limits: [B] optional smaller per-row limits (e.g. a multiple of each text's length; beam
            search has one limit for all and ignores them).
        max_context: keep only this many most recent response positions in context (`max_ar_context`).
    """

    max_steps: int
    row_limits: Tensor | None = None
    max_context: int | None = None


@dataclass
class ArResult:
    codes: Tensor  # [B, T] level-0 codes, 0 after each row's end
    lengths: Tensor  # [B] frames per row
    hit_limit: Tensor  # [B] bool: the row reached max_steps without a stop token
    # [B, T] the text id each frame says (monotonic alignment: the AR's own pointer; else None)
    frame_symbols: Tensor | None = None


class TextPointer:
    """Monotonic alignment while decoding: which text id each row's next frame says.

    It starts at `cond.starts`. On the first frame of each symbol it draws how many more frames the symbol
    lasts (the AR's frames-left head) and counts them down; on the symbol's last frame it moves on by a
    draw from the advance head's "move on by 1, 2, ≥3" classes, never past the row's last id (`<eos>`).

    A duration drawn once per symbol rather than a stay-or-go decision every frame: a per-frame decision
    learns to wait for the sound of the next phone, which in teacher forcing is in the input codes, but
    which the model's own codes only start once the pointer has moved, so every symbol comes out too long
    (1.1–1.4 × on the demo's held-out voices, more with a sharper draw). The decode's generator draws,
    so a seeded decode repeats. When `<eos>`'s drawn frames (the final silence) are over, the row's next
    output is the stop token (`read_all`).
    """

    def __init__(
        self, model: Valle, cond: Conditioning, max_steps: int, generator: torch.Generator | None = None
    ) -> None:
        self.model, self.text, self.generator = model, cond.text, generator
        self.last = cond.last_symbol
        self.at = torch.minimum(cond.starts, self.last)
        self.left = torch.full_like(self.at, -1)  # frames the current symbol lasts after this one; -1: new
        self.read_all = torch.zeros_like(self.at, dtype=torch.bool)  # `<eos>`'s frames are over
        self.history = torch.zeros(cond.size, max_steps, dtype=torch.long, device=cond.device)

    def advance(self, step: int, hidden: Tensor) -> Tensor:
        """Record where frame `step` was, move on as the AR's pointer heads say from its hidden state
        [B, D]; return the text ids [B] the next frame says."""
        self.history[:, step] = self.at
        advance, remaining = (logits.float() for logits in self.model.ar_pointer(hidden))
        drawn = torch.multinomial(remaining.softmax(-1), 1, generator=self.generator)[:, 0]
        self.left = torch.where(self.left < 0, drawn, self.left)
        moving = self.left == 0
        jump = 1 + torch.multinomial(advance[:, 1:].softmax(-1), 1, generator=self.generator)[:, 0]
        self.read_all = self.read_all | (moving & (self.at == self.last))
        self.at = torch.where(moving, torch.minimum(self.at + jump, self.last), self.at)
        self.left = torch.where(moving, -1, self.left - 1)
        return self.said()

    def said(self) -> Tensor:
        """The text ids [B] the next frame says."""
        return self.text.gather(1, self.at[:, None])[:, 0]

    def reorder(self, parents: Tensor) -> None:
        """Beam search: each row continues its parent's reading."""
        self.at, self.left = self.at.index_select(0, parents), self.left.index_select(0, parents)
        self.read_all = self.read_all.index_select(0, parents)
        self.history = self.history.index_select(0, parents)
        self.text, self.last = self.text.index_select(0, parents), self.last.index_select(0, parents)


def _pointer(
    model: Valle, cond: Conditioning, max_steps: int, generator: torch.Generator | None = None
) -> TextPointer | None:
    return TextPointer(model, cond, max_steps, generator) if model.config.monotonic_alignment else None


def _start(
    model: Valle, cond: Conditioning, limits: DecodeLimits, capacity: Callable[[int], int] | None = None
) -> tuple[DecodeCache, Tensor]:
    """Prefill: cache holding the prefix, and the hidden state [B, D] that predicts the first code.

    `capacity` maps the positions needed to the cache size (the fast path rounds it up)."""
    packed = model.ar_prefix(cond)
    max_context = limits.max_context
    window = ContextWindow(max_context, packed.lengths) if max_context else None
    room = (max_context + 1) if max_context else limits.max_steps + 1
    backbone = model.ar.backbone
    needed = int(packed.lengths.max()) + room
    cache = backbone.new_cache(cond.size, capacity(needed) if capacity else needed, window=window)
    prefix = packed.prefix_lengths if model.config.prefix_lm else None
    hidden = backbone.step(packed.x, cache, lengths=packed.lengths, prefix_lengths=prefix)
    return cache, hidden[torch.arange(cond.size, device=cond.device), packed.lengths - 1]


@torch.inference_mode()
def decode_ar(
    model: Valle,
    cond: Conditioning,
    sampler: ArSampler,
    limits: DecodeLimits,
    *,
    generator: torch.Generator | None = None,
    on_step: Callable[[int], None] | None = None,
    fast: bool = False,
) -> ArResult:
    """Sample level-0 codes for a batch.

    Args:
        model: the model, in eval mode.
        cond: the text and prompt of each row (`cond.continues` marks continuation rows: it places the
            text's positions when the model has `segment_positions`).
        sampler: the AR sampler pipeline (its per-row state, e.g. mirostat's, lives here in the loop).
        limits: the step limits and the context window.
        generator: the random source of sampling (None: torch's global one).
        on_step: called after every step (progress bars).
        fast: run each step through one compiled static graph (`valle.sampling.compiled`); the same
            tokens, falling back to eager decoding with a log line where it cannot apply.
    """
    batch, stop, max_steps, device = cond.size, model.config.stop_token, limits.max_steps, cond.device
    fast_path = fast_step(model, limits.max_context) if fast else None
    cache, hidden = _start(model, cond, limits, static_capacity if fast_path else None)
    logits, pointer = model.ar_logits(hidden), _pointer(model, cond, max_steps, generator)
    said = None
    step_fn = fast_path.bind(cache) if fast_path else None
    history = torch.full((batch, max_steps), -1, dtype=torch.long, device=device)
    lengths = torch.full((batch,), max_steps, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    row_limits = limits.row_limits if limits.row_limits is not None else lengths
    hit_limit = torch.zeros_like(finished)
    state = sampler.new_state(batch, device)
    for step in range(max_steps):
        codes = sampler(logits, history[:, :step], step, generator, state)
        if pointer is not None:  # the text is read, its final silence said: this frame is the stop
            codes = torch.where(pointer.read_all, stop, codes)
        at_limit = ~finished & (step >= row_limits)
        hit_limit = hit_limit | at_limit
        codes = torch.where(finished | at_limit, stop, codes)
        lengths = torch.where(~finished & (codes == stop), step, lengths)
        finished = finished | (codes == stop)
        history[:, step] = torch.where(finished, -1, codes)
        if pointer is not None:
            said = pointer.advance(step, hidden)
        if on_step is not None:
            on_step(step)
        if bool(finished.all()):
            break
        if step_fn is not None:
            logits = step_fn(codes)
        else:
            hidden = model.ar.backbone.step(model.ar_step_input(codes, step, said), cache)[:, 0]
            logits = model.ar_logits(hidden)
    width = int(lengths.max()) if batch else 0
    out = history[:, :width].clamp(min=0)
    frame_symbols = pointer.history[:, :width] if pointer is not None else None
    return ArResult(out, lengths, hit_limit | ~finished, frame_symbols)


@torch.inference_mode()
def decode_ar_beam(
    model: Valle,
    cond: Conditioning,
    sampler: ArSampler,
    limits: DecodeLimits,
    *,
    on_step: Callable[[int], None] | None = None,
    generator: torch.Generator | None = None,
) -> ArResult:
    """Beam search of `width` over accumulated log-probabilities (docs/design.md, "Beam search").

    Each row is expanded to `sampler.cfg.beam_width` beams (scored after the repetition and length
    penalties); after every step the cache rows are reordered so each
    beam continues its parent. Finished beams are kept until all are done or `limits.max_steps` (the
    per-row limits are not applied); the best beam by length-normalised score is returned. With monotonic
    alignment, `generator` draws each beam's text pointer (`TextPointer`).
    """
    from valle.sampling.beam import beam_step, best_beam, initial_scores

    batch, stop, width = cond.size, model.config.stop_token, sampler.cfg.beam_width
    max_steps, device = limits.max_steps, cond.device
    beams = cond.repeat_rows(width)
    cache, hidden = _start(model, beams, limits)
    logits, pointer = model.ar_logits(hidden), _pointer(model, beams, max_steps, generator)
    said = None
    scores = initial_scores(batch, width, device)
    finished = torch.zeros(batch, width, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch, width, dtype=torch.long, device=device)
    history = torch.full((batch * width, max_steps), -1, dtype=torch.long, device=device)
    rows = torch.arange(batch, device=device)[:, None] * width
    for step in range(max_steps):
        log_probs = sampler.beam_log_probs(logits, history[:, :step], step).view(batch, width, -1)
        chosen = beam_step(log_probs, scores, finished, stop, lengths)
        parents = (rows + chosen.parents).view(-1)
        if pointer is not None:
            pointer.advance(step, hidden)  # each beam's own reading, then carried to its children
            pointer.reorder(parents)
            said = pointer.said()
        cache, history = cache.reorder(parents), history.index_select(0, parents)
        assert chosen.lengths is not None  # lengths passed in come back extended
        scores, finished, lengths = chosen.scores, chosen.finished, chosen.lengths
        history[:, step] = torch.where(finished.view(-1), -1, chosen.tokens.view(-1))
        if on_step is not None:
            on_step(step)
        if bool(finished.all()):
            break
        hidden = model.ar.backbone.step(model.ar_step_input(chosen.tokens.view(-1), step, said), cache)[:, 0]
        logits = model.ar_logits(hidden)
    best = best_beam(scores, lengths, finished)
    pick = rows[:, 0] + best
    done = finished.gather(1, best[:, None])[:, 0]
    frames = torch.where(done, lengths.gather(1, best[:, None])[:, 0] - 1, max_steps)
    width_out = int(frames.max()) if batch else 0
    frame_symbols = pointer.history.index_select(0, pick)[:, :width_out] if pointer is not None else None
    return ArResult(history.index_select(0, pick)[:, :width_out].clamp(min=0), frames, ~done, frame_symbols)
