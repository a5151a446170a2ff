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

from valle.errors import ConfigError
from valle.models.backbones import ContextWindow, DecodeCache
from valle.models.valle import Valle
from valle.sampling import processors
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
    so a seeded decode repeats. When `<eos>`'s frames (the final silence) are over, the row's next
    output is the stop token (`read_all`).
    """

    def __init__(
        self,
        model: Valle,
        cond: Conditioning,
        max_steps: int,
        generator: processors.Generators = None,
        speed: float = 1.0,
    ) -> None:
        self.model, self.text, self.generator, self.speed = model, cond.text, generator, speed
        self.last = cond.last_symbol
        self.at = torch.minimum(cond.starts, self.last)
        self.left = torch.full_like(self.at, -1)  # frames the current symbol lasts after this one; -1: new
        self.read_all = torch.zeros_like(self.at, dtype=torch.bool)  # `<eos>`'s frames are over
        self.history = torch.zeros(cond.size, max_steps, dtype=torch.long, device=cond.device)

    def advance(self, step: int | Tensor, hidden: Tensor) -> Tensor:
        """Record where frame `step` (an int, or [B] per row) was, move on as the AR's pointer heads say
        from its hidden state [B, D]; return the text ids [B] the next frame says."""
        _write(self.history, step, self.at)
        advance, remaining = (logits.float() for logits in self.model.ar_pointer(hidden))
        drawn = processors.multinomial(remaining.softmax(-1), self.generator)
        if self.speed != 1.0:  # the symbol's frames, this one included, scaled; at least this one
            drawn = (torch.round((drawn + 1).double() / self.speed).long() - 1).clamp(min=0)
        self.left = torch.where(self.left < 0, drawn, self.left)
        moving = self.left == 0
        jump = 1 + processors.multinomial(advance[:, 1:].softmax(-1), self.generator)
        self.read_all = self.read_all | (moving & (self.at == self.last))
        self.at = torch.where(moving, torch.minimum(self.at + jump, self.last), self.at)
        self.left = torch.where(moving, -1, self.left - 1)
        return self.said()

    def said(self) -> Tensor:
        """The text ids [B] the next frame says."""
        return self.text.gather(1, self.at[:, None])[:, 0]

    def reorder(self, parents: Tensor) -> None:
        """The pointers of rows `parents` (beam search: each row continues its parent's reading; serving:
        the rows that stay)."""
        self.at, self.left = self.at.index_select(0, parents), self.left.index_select(0, parents)
        self.read_all = self.read_all.index_select(0, parents)
        self.history = self.history.index_select(0, parents)
        self.text, self.last = self.text.index_select(0, parents), self.last.index_select(0, parents)
        if isinstance(self.generator, processors.RowGenerators):
            self.generator = self.generator.index_select(parents)

    def join(self, other: TextPointer) -> None:
        """Append `other`'s rows (their generators: `ArRows.join`)."""
        self.at, self.left = torch.cat([self.at, other.at]), torch.cat([self.left, other.left])
        self.read_all, self.last = (
            torch.cat([self.read_all, other.read_all]),
            torch.cat([self.last, other.last]),
        )
        self.text = _cat_padded(self.text, other.text, 0)
        self.history = _cat_padded(self.history, other.history, 0)


def _write(history: Tensor, step: int | Tensor, values: Tensor) -> None:
    """history[b, step[b]] = values[b]; past its width a row's write goes to the last column (only
    finished rows, which write their empty marker, step on that far)."""
    if isinstance(step, int):
        history[:, step] = values
    else:
        index = step.clamp(max=history.shape[1] - 1)[:, None]
        history.scatter_(1, index, values[:, None].to(history.dtype))


def _cat_padded(a: Tensor, b: Tensor, fill: int) -> Tensor:
    """Rows of `a` then rows of `b` [*, T], the narrower right-padded with `fill`."""
    width = max(a.shape[1], b.shape[1])
    pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]), value=fill)  # noqa: E731
    return torch.cat([pad(a), pad(b)])


def _pointer(
    model: Valle,
    cond: Conditioning,
    max_steps: int,
    generator: processors.Generators = None,
    speed: float = 1.0,
) -> TextPointer | None:
    """The text pointer of a model with monotonic alignment, else None (and `speed` must be 1).

    Raises:
        ConfigError: `speed` != 1 for a model that has no durations to scale.
    """
    if model.config.monotonic_alignment:
        return TextPointer(model, cond, max_steps, generator, speed)
    if speed != 1.0:
        raise ConfigError(
            f"speed={speed}: this model has no monotonic alignment, so no durations to scale; "
            "use speed=1 (or a model trained with model.monotonic_alignment=true)"
        )
    return None


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


class ArRows:
    """The AR's rows in flight: everything sampling level 0 keeps between steps.

    The one AR decode: `decode_ar` steps a batch until every row has stopped; `Synthesizer.stream` and
    the server (`valle.serving`) step it themselves, read each step's codes as they come, `join` rows
    that arrive while others decode and `keep` only the rows still running.

    Each row counts its own steps (`steps`): rows that joined later are at earlier steps, and their
    positions, step limits, length penalty and history window are their own. While every row started
    together, the step is one int, as it always was for a batch.

    Args:
        model: the model, in eval mode.
        cond: the text and prompt of each row (prefilled here).
        sampler: the AR sampler pipeline (its per-row state, e.g. mirostat's, lives here).
        limits: the step limits and the context window.
        generator: the random source of sampling: one generator, `RowGenerators` (one per row, needed
            to `join`), or None (torch's global one).
        fast: step through one compiled static graph (`valle.sampling.compiled`); the same tokens,
            eager with a log line where it cannot apply. Rows cannot join a fast batch.
    """

    def __init__(
        self,
        model: Valle,
        cond: Conditioning,
        sampler: ArSampler,
        limits: DecodeLimits,
        *,
        generator: processors.Generators = None,
        fast: bool = False,
    ) -> None:
        batch, device = cond.size, cond.device
        self.model, self.sampler, self.generator = model, sampler, generator
        self.stop = model.config.stop_token
        fast_path = fast_step(model, limits.max_context) if fast else None
        self.cache, self.hidden = _start(model, cond, limits, static_capacity if fast_path else None)
        self.step_fn = fast_path.bind(self.cache) if fast_path else None
        self.logits = model.ar_logits(self.hidden)
        self.pointer = _pointer(model, cond, limits.max_steps + 1, generator, sampler.cfg.speed)
        # one column more than the limit: the step at which a row is stopped by its limit writes there
        self.history = torch.full((batch, limits.max_steps + 1), -1, dtype=torch.long, device=device)
        self.row_limits = torch.full((batch,), limits.max_steps, dtype=torch.long, device=device)
        if limits.row_limits is not None:
            self.row_limits = torch.minimum(self.row_limits, limits.row_limits.to(device))
        self.lengths = torch.full((batch,), limits.max_steps, dtype=torch.long, device=device)
        self.finished = torch.zeros(batch, dtype=torch.bool, device=device)
        self.hit_limit = torch.zeros_like(self.finished)
        self.state = sampler.new_state(batch, device)
        self.steps = torch.zeros(batch, dtype=torch.long, device=device)
        self.common_step: int | None = 0  # every row's step while they all started together
        self.done = False  # every row has stopped (kept here: one host sync a step, in `step`)

    @property
    def size(self) -> int:
        return int(self.steps.shape[0])

    def step(self) -> Tensor:
        """Decode one frame of every row: its code [B] (the stop token for a row that stopped now or
        before). A row stops on the stop token, at its step limit, or when its text pointer has read all."""
        step: int | Tensor = self.steps if self.common_step is None else self.common_step
        history = self.recent()
        codes = self.sampler(self.logits, history, step, self.generator, self.state)
        if self.pointer is not None:  # the text is read, its final silence said: this frame is the stop
            codes = torch.where(self.pointer.read_all, self.stop, codes)
        at_limit = ~self.finished & (self.steps >= self.row_limits)
        self.hit_limit = self.hit_limit | at_limit
        codes = torch.where(self.finished | at_limit, self.stop, codes)
        self.lengths = torch.where(~self.finished & (codes == self.stop), self.steps, self.lengths)
        self.finished = self.finished | (codes == self.stop)
        _write(self.history, step, torch.where(self.finished, -1, codes))
        said = self.pointer.advance(step, self.hidden) if self.pointer is not None else None
        self.steps = self.steps + 1
        if self.common_step is not None:
            self.common_step += 1
        self.done = bool(self.finished.all())
        if not self.done:
            if self.step_fn is not None:
                self.logits = self.step_fn(codes)
            else:
                x = self.model.ar_step_input(codes, step, said)
                self.hidden = self.model.ar.backbone.step(x, self.cache)[:, 0]
                self.logits = self.model.ar_logits(self.hidden)
        return codes

    def last_symbols(self) -> list[int | None]:
        """The text id each row's newest frame says (monotonic alignment), else None per row; one read
        for the whole batch."""
        if self.pointer is None:
            return [None] * self.size
        column = (self.steps - 1).clamp(0, self.pointer.history.shape[1] - 1)
        return self.pointer.history.gather(1, column[:, None])[:, 0].tolist()

    def recent(self) -> Tensor:
        """Each row's codes so far [B, T], newest last (right-aligned, `processors.EMPTY` before a row's
        first code): what the repetition penalty and RAS look back on."""
        if self.common_step is not None:
            return self.history[:, : self.common_step]
        width = min(int(self.steps.max()), self.history.shape[1])
        columns = torch.arange(width, device=self.steps.device) - width + self.steps[:, None]
        taken = self.history.gather(1, columns.clamp(0, self.history.shape[1] - 1))
        return torch.where(columns >= 0, taken, -1)

    def join(self, other: ArRows) -> None:
        """Append `other`'s rows (prefilled with the same model and sampler settings): from the next
        `step` on they decode with these, each at its own step.

        Raises:
            ValueError: either is a fast (compiled) batch, their sampler settings differ (but for the seed
                and the step limits, which are each row's own), or they do not
                both draw from per-row generators (`RowGenerators`), so a row's draws would depend on
                its neighbours.
        """
        if self.step_fn is not None or other.step_fn is not None:
            raise ValueError("rows cannot join a compiled (fast) decode; decode eagerly to join rows")
        if self.sampler.cfg.batch_key() != other.sampler.cfg.batch_key():
            raise ValueError(
                "rows join a batch with the same sampler settings only (seed and step limits aside)"
            )
        if not (
            isinstance(self.generator, processors.RowGenerators)
            and isinstance(other.generator, processors.RowGenerators)
        ):
            raise ValueError("rows join a batch only when every row draws from its own generator")
        self.generator = self.generator.join(other.generator)
        if self.pointer is not None and other.pointer is not None:
            self.pointer.join(other.pointer)
            self.pointer.generator = self.generator
        self.cache = self.cache.join(other.cache)
        self.hidden, self.logits = (
            torch.cat([self.hidden, other.hidden]),
            torch.cat([self.logits, other.logits]),
        )
        self.history = _cat_padded(self.history, other.history, -1)
        for name in ("row_limits", "lengths", "finished", "hit_limit", "steps"):
            setattr(self, name, torch.cat([getattr(self, name), getattr(other, name)]))
        self.state = self.sampler.join_states(self.state, other.state)
        if self.common_step != other.common_step:
            self.common_step = None
        self.done = self.done and other.done

    def keep(self, rows: Tensor) -> None:
        """Only rows `rows` [B'] (int64 indices, in that order) decode on; the others are dropped."""
        self.cache = self.cache.reorder(rows)
        if isinstance(self.generator, processors.RowGenerators):
            self.generator = self.generator.index_select(rows)
        if self.pointer is not None:
            self.pointer.reorder(rows)
            self.pointer.generator = self.generator
        for name in (
            "hidden",
            "logits",
            "history",
            "row_limits",
            "lengths",
            "finished",
            "hit_limit",
            "steps",
        ):
            setattr(self, name, getattr(self, name).index_select(0, rows))
        self.state = self.sampler.select_state(self.state, rows)
        self.done = bool(self.finished.all())

    def result(self) -> ArResult:
        """Every row's codes so far, as `decode_ar` returns them."""
        width = int(self.lengths.max()) if self.size else 0
        out = self.history[:, :width].clamp(min=0)
        frame_symbols = self.pointer.history[:, :width] if self.pointer is not None else None
        return ArResult(out, self.lengths, self.hit_limit | ~self.finished, frame_symbols)


@torch.inference_mode()
def decode_ar(
    model: Valle,
    cond: Conditioning,
    sampler: ArSampler,
    limits: DecodeLimits,
    *,
    generator: processors.Generators = None,
    on_step: Callable[[int], None] | None = None,
    fast: bool = False,
) -> ArResult:
    """Sample level-0 codes for a batch: `ArRows` stepped until every row has stopped.

    Args:
        model: the model, in eval mode.
        cond: the text and prompt of each row (`cond.continues` marks continuation rows: it places the
            text's positions when the model has `segment_positions`).
        sampler: the AR sampler pipeline (its per-row state, e.g. mirostat's, lives in the rows).
        limits: the step limits and the context window.
        generator: the random source of sampling (None: torch's global one).
        on_step: called after every step (progress bars).
        fast: run each step through one compiled static graph (`valle.sampling.compiled`); the same
            tokens, falling back to eager decoding with a log line where it cannot apply.
    """
    rows = ArRows(model, cond, sampler, limits, generator=generator, fast=fast)
    for step in range(limits.max_steps):
        rows.step()
        if on_step is not None:
            on_step(step)
        if rows.done:
            break
    return rows.result()


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
    pointer = _pointer(model, beams, max_steps, generator, sampler.cfg.speed)
    logits = model.ar_logits(hidden)
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
