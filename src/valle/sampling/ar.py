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
from valle.models.backbones import ContextWindow, DecodeCache, TreeStepping
from valle.models.cache import SpeculativeCache
from valle.models.valle import Valle
from valle.sampling import processors
from valle.sampling.candidates import CandidateTree, candidate_tree
from valle.sampling.compiled import fast_step, static_capacity
from valle.sampling.pipeline import ArSampler, SamplerConfig
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

    def select(self, rows: Tensor) -> ArResult:
        """The rows `rows` [R] int64, in that order."""
        symbols = None if self.frame_symbols is None else self.frame_symbols.index_select(0, rows)
        pick = lambda t: t.index_select(0, rows)  # noqa: E731
        return ArResult(pick(self.codes), pick(self.lengths), pick(self.hit_limit), symbols)


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
        duration_temperature: float = 1.0,
    ) -> None:
        self.model, self.text, self.generator, self.speed = model, cond.text, generator, speed
        self.duration_temperature = duration_temperature
        self.last = cond.last_symbol
        self.at = torch.minimum(cond.starts, self.last)
        self.left = torch.full_like(self.at, -1)  # frames the current symbol lasts after this one; -1: new
        self.into = torch.zeros_like(self.at)  # frames of the current symbol before the next one
        self.read_all = torch.zeros_like(self.at, dtype=torch.bool)  # `<eos>`'s frames are over
        self.history = torch.zeros(cond.size, max_steps, dtype=torch.long, device=cond.device)

    def advance(
        self,
        step: int | Tensor,
        hidden: Tensor,
        active: Tensor | None = None,
        generator: processors.Generators = None,
    ) -> Tensor:
        """Record where frame `step` (an int, or [B] per row) was, move on as the AR's pointer heads say
        from its hidden state [B, D]; return the text ids [B] the next frame says.

        `active` [B] bool: only those rows move (speculative decoding's sub-steps; the caller points the
        others' `step` at the history's spare last column); `generator`: the draws' source for this call
        (default the pointer's own)."""
        generator = self.generator if generator is None else generator
        _write(self.history, step, self.at)
        advance, remaining = (logits.float() for logits in self.model.ar_pointer(hidden))
        drawn = self._duration(remaining, generator)
        if self.speed != 1.0:  # the symbol's frames, this one included, scaled; at least this one
            drawn = (torch.round((drawn + 1).double() / self.speed).long() - 1).clamp(min=0)
        left = torch.where(self.left < 0, drawn, self.left)
        moving = left == 0
        jump = 1 + processors.multinomial(advance[:, 1:].softmax(-1), generator)
        read_all = self.read_all | (moving & (self.at == self.last))
        at = torch.where(moving, torch.minimum(self.at + jump, self.last), self.at)
        left = torch.where(moving, -1, left - 1)
        into = torch.where(moving, 0, self.into + 1)
        if active is None:
            self.left, self.read_all, self.at, self.into = left, read_all, at, into
        else:
            self.into = torch.where(active, into, self.into)
            self.left = torch.where(active, left, self.left)
            self.read_all = torch.where(active, read_all, self.read_all)
            self.at = torch.where(active, at, self.at)
        return self.said()

    def _duration(self, remaining: Tensor, generator: processors.Generators) -> Tensor:
        """The frames-left draw [B] from the frames-left head's logits [B, C] at `duration_temperature`."""
        if self.duration_temperature == 0.0:
            return remaining.argmax(-1)
        if self.duration_temperature != 1.0:
            remaining = remaining / self.duration_temperature
        return processors.multinomial(remaining.softmax(-1), generator)

    def guess_said(self, frames: int) -> Tensor:
        """[B, frames]: the said codes of the `frames` frames after the next one, probably: the current
        symbol while its drawn frames last, then the first frame of the next one (speculative decoding
        checks the guess)."""
        ahead = torch.arange(1, frames + 1, device=self.at.device)[None, :]
        stays = self.left[:, None] >= ahead
        at = torch.where(stays, self.at[:, None], torch.minimum(self.at + 1, self.last)[:, None])
        into = torch.where(stays, self.into[:, None] + ahead, 0)
        left = torch.where(stays, self.left[:, None] - ahead, -1)
        return self.model.ar.embeddings.said_code(self.text, at, self.last[:, None], into, left)

    def said(self) -> Tensor:
        """The said codes [B] of the next frame (valle.models.said: its text id, with the model's
        `said_context` packed with its context)."""
        return self.model.ar.embeddings.said_code(self.text, self.at, self.last, self.into, self.left)

    def reorder(self, parents: Tensor) -> None:
        """The pointers of rows `parents` (beam search: each row continues its parent's reading; serving:
        the rows that stay)."""
        self.at, self.left = self.at.index_select(0, parents), self.left.index_select(0, parents)
        self.into = self.into.index_select(0, parents)
        self.read_all = self.read_all.index_select(0, parents)
        self.history = self.history.index_select(0, parents)
        self.text, self.last = self.text.index_select(0, parents), self.last.index_select(0, parents)
        if isinstance(self.generator, processors.RowGenerators):
            self.generator = self.generator.index_select(parents)

    def join(self, other: TextPointer) -> None:
        """Append `other`'s rows (their generators: `ArRows.join`)."""
        self.at, self.left = torch.cat([self.at, other.at]), torch.cat([self.left, other.left])
        self.into = torch.cat([self.into, other.into])
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


def check_durations(model: Valle, cfg: SamplerConfig) -> None:
    """Refuse duration settings (`speed`, `duration_temperature`) other than 1 for a model that draws no
    durations (no monotonic alignment).

    Raises:
        ConfigError: naming the setting and the fix.
    """
    if model.config.monotonic_alignment:
        return
    for key in ("speed", "duration_temperature"):
        value = getattr(cfg, key)
        if value != 1.0:
            raise ConfigError(
                f"{key}={value}: this model has no monotonic alignment, so no durations to draw; "
                f"use {key}=1 (or a model trained with model.monotonic_alignment=true)"
            )


def _pointer(
    model: Valle,
    cond: Conditioning,
    max_steps: int,
    cfg: SamplerConfig,
    generator: processors.Generators = None,
) -> TextPointer | None:
    """The text pointer of a model with monotonic alignment, drawing durations as `cfg` says (its `speed`
    and `duration_temperature`); else None.

    Raises:
        ConfigError: `check_durations`'s, for a model that has no durations.
    """
    check_durations(model, cfg)
    if model.config.monotonic_alignment:
        return TextPointer(model, cond, max_steps, generator, cfg.speed, cfg.duration_temperature)
    return None


def _start(
    model: Valle,
    cond: Conditioning,
    limits: DecodeLimits,
    capacity: Callable[[int], int] | None = None,
    ahead: int = 0,
) -> tuple[DecodeCache, Tensor]:
    """Prefill: cache holding the prefix, and the hidden state [B, D] that predicts the first code.

    `capacity` maps the positions needed to the cache size (the fast path rounds it up); `ahead` more
    positions hold guesses a speculative pass checks before it forgets the rejected ones."""
    packed = model.ar_prefix(cond)
    max_context = limits.max_context
    window = ContextWindow(max_context, packed.lengths) if max_context else None
    room = ((max_context + 1) if max_context else limits.max_steps + 1) + ahead
    backbone = model.ar.backbone
    needed = int(packed.lengths.max()) + room
    cache = backbone.new_cache(cond.size, capacity(needed) if capacity else needed, window=window)
    prefix = packed.prefix_lengths if model.config.prefix_lm else None
    hidden = backbone.step(packed.x, cache, lengths=packed.lengths, prefix_lengths=prefix)
    return cache, hidden[torch.arange(cond.size, device=cond.device), packed.lengths - 1]


class Guide:
    """Classifier-free guidance (`sampler.cfg_scale` = w ≠ 1): the same rows shown no text
    (`Conditioning.without_text`) decode beside the real ones, fed the same codes, and every step's logits
    become `unconditional + w · (conditional − unconditional)` (audiocraft's `cfg_coef`) before the
    sampler pipeline sees them. What the text adds is amplified, so a model drifting on its own codes is
    pulled back towards the words. It needs a model trained with text dropout (`model.text_dropout`).

    Its rows mirror the decode's: `join` and `keep` take the same rows in the same order.
    """

    def __init__(self, model: Valle, cond: Conditioning, limits: DecodeLimits, scale: float) -> None:
        check_guidance(model, scale)
        self.model, self.scale = model, scale
        self.cache, hidden = _start(model, cond.without_text(), limits)
        self.logits = model.ar_logits(hidden)

    def mix(self, logits: Tensor) -> Tensor:
        """The conditional logits [B, V + 1] → the guided ones."""
        return self.logits + self.scale * (logits - self.logits)

    def step(self, codes: Tensor, step: int | Tensor) -> None:
        """Feed the codes [B] just decoded at `step` (the real rows' own) to the unconditional rows."""
        x = self.model.ar_step_input(codes, step, text_shown=False)
        self.logits = self.model.ar_logits(self.model.ar.backbone.step(x, self.cache)[:, 0])

    def join(self, other: Guide) -> None:
        self.cache = self.cache.join(other.cache)
        self.logits = torch.cat([self.logits, other.logits])

    def reorder(self, rows: Tensor) -> None:
        self.cache = self.cache.reorder(rows)
        self.logits = self.logits.index_select(0, rows)


def check_guidance(model: Valle, scale: float) -> None:
    """Raise ConfigError when `scale` ≠ 1 asks a model never trained without text to guide."""
    if scale != 1.0 and model.config.text_dropout <= 0:
        raise ConfigError(
            f"sampler.cfg_scale={scale}: classifier-free guidance needs a model trained with text dropout "
            "(model.text_dropout > 0, e.g. 0.15); this one never saw rows without text. Use cfg_scale=1"
        )


def _guide(model: Valle, cond: Conditioning, limits: DecodeLimits, sampler: ArSampler) -> Guide | None:
    """The decode's classifier-free guide, or None when `sampler.cfg_scale` is 1 (off)."""
    scale = sampler.cfg.cfg_scale
    return Guide(model, cond, limits, scale) if scale != 1.0 else None


class ArRows:
    """The AR's rows in flight: everything sampling level 0 keeps between steps.

    The one AR decode: `decode_ar` advances a batch until every row has stopped (one frame a row per
    `step`, or several with Medusa heads: `speculate`, `Speculation`); `Synthesizer.stream` and the
    server (`valle.serving`) step it themselves, read each step's codes as they come, `join` rows that
    arrive while others decode and `keep` only the rows still running.

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
        speculate: check the model's Medusa heads' guesses each `advance` (`Speculation`); the same
            frames. Such rows cannot join, leave or `step`.
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
        speculate: bool = False,
    ) -> None:
        batch, device = cond.size, cond.device
        self.model, self.sampler, self.generator = model, sampler, generator
        self.stop = model.config.stop_token
        self.guide = _guide(model, cond, limits, sampler)
        fast_path = fast_step(model, limits.max_context, self.guide is not None, speculate) if fast else None
        tree = candidate_tree(model, sampler.cfg, cond.device) if speculate else None
        ahead = tree.size if tree is not None else 0
        self.cache, self.hidden = _start(model, cond, limits, static_capacity if fast_path else None, ahead)
        self.step_fn = fast_path.bind(self.cache) if fast_path else None
        self.logits = model.ar_logits(self.hidden)
        self.pointer = _pointer(model, cond, limits.max_steps + 1, sampler.cfg, generator)
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
        self.speculation = Speculation(model, tree, self) if tree is not None else None

    @property
    def size(self) -> int:
        return int(self.steps.shape[0])

    def step(self) -> Tensor:
        """Decode one frame of every row: its code [B] (the stop token for a row that stopped now or
        before). A row stops on the stop token, at its step limit, or when its text pointer has read all."""
        if self.speculation is not None:
            raise ValueError("a speculative (Medusa) decode moves on by `advance`, several frames a row")
        step: int | Tensor = self.steps if self.common_step is None else self.common_step
        logits = self.guide.mix(self.logits) if self.guide is not None else self.logits
        codes, said = self.frame(logits, self.hidden)
        if not self.done:
            if self.step_fn is not None:
                self.logits = self.step_fn(codes)
            else:
                x = self.model.ar_step_input(codes, step, said)
                self.hidden = self.model.ar.backbone.step(x, self.cache)[:, 0]
                self.logits = self.model.ar_logits(self.hidden)
            if self.guide is not None:
                self.guide.step(codes, step)
        return codes

    def advance(self) -> None:
        """Decode the next frames of every row: one (`step`), or with Medusa heads (`speculate`) one
        backbone pass that checks their guesses and keeps 1 .. K + 1 frames a row (`Speculation`)."""
        if self.speculation is None:
            self.step()
        else:
            self.speculation.advance(self)

    def frame(
        self, logits: Tensor, hidden: Tensor, active: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Sample and record one frame of each row from its logits [B, V + 1] and the hidden state [B, D]
        they came from: (codes [B], the text ids [B] the next frame says, or None without a pointer).

        `active` [B] bool: only those rows take a frame (a speculative sub-step; the others, and rows
        that stopped before, get the stop id and keep their state). Every row draws from its own
        generator, the inactive ones from a spare one, so a row's draws are those of a plain decode."""
        # the plain step (active None) stays as lean as before: no mask ops on the decode's hot path
        whole = active is None
        step: int | Tensor = self.steps if self.common_step is None or not whole else self.common_step
        live = ~self.finished if active is None else active & ~self.finished
        generator = self.generator if active is None else _only(self.generator, active)
        codes = self.sampler(logits, self.recent(), step, generator, self.state)
        if self.pointer is not None:  # the text is read, its final silence said: this frame is the stop
            codes = torch.where(self.pointer.read_all, self.stop, codes)
        at_limit = live & (self.steps >= self.row_limits)
        self.hit_limit = self.hit_limit | at_limit
        codes = torch.where(~live | at_limit, self.stop, codes)
        self.lengths = torch.where(live & (codes == self.stop), self.steps, self.lengths)
        self.finished = self.finished | (live & (codes == self.stop))
        if active is None:
            column: int | Tensor = step
            _write(self.history, column, torch.where(self.finished, -1, codes))
            self.steps = self.steps + 1
        else:  # rows sitting this sub-step out write their marker in the history's spare last column
            column = torch.where(active, self.steps, self.history.shape[1] - 1)
            _write(self.history, column, torch.where(self.finished | ~active, -1, codes))
            self.steps = self.steps + active.long()
        said = None
        if self.pointer is not None:
            said = self.pointer.advance(column, hidden, active, generator)
        if self.common_step is not None:
            self.common_step = self.common_step + 1 if whole else None
        self.done = bool(self.finished.all())
        return codes, said

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
        if self.speculation is not None or other.speculation is not None:
            raise ValueError("rows cannot join a speculative (Medusa) decode; decode with medusa=false")
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
        if self.guide is not None and other.guide is not None:  # the same cfg_scale: the batch key has it
            self.guide.join(other.guide)
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
        if self.speculation is not None:
            raise ValueError("a speculative (Medusa) decode keeps its rows; decode with medusa=false")
        self.cache = self.cache.reorder(rows)
        if self.guide is not None:
            self.guide.reorder(rows)
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
        frame_symbols = None
        if self.pointer is not None:  # 0 past each row's end, as the codes
            frames = torch.arange(width, device=out.device)[None, :]
            frame_symbols = torch.where(frames < self.lengths[:, None], self.pointer.history[:, :width], 0)
        return ArResult(out, self.lengths, self.hit_limit | ~self.finished, frame_symbols)


def _only(generator: processors.Generators, active: Tensor) -> processors.Generators:
    """Per-row generators where only the `active` rows draw from their own (the others from spare ones,
    so that sitting a sub-step out leaves a row's stream where it was); one shared generator as it is."""
    if not isinstance(generator, processors.RowGenerators):
        return generator
    own = active.tolist()
    return processors.RowGenerators(
        [
            g if mine else torch.Generator(device=g.device)
            for g, mine in zip(generator.generators, own, strict=True)
        ]
    )


class Speculation:
    """Medusa's multi-token decoding for `ArRows` (docs/design.md, "Medusa").

    Each pass feeds every row its newest frame (the root) and the candidate tree's guesses, in one
    backbone call; then the row draws frame after frame: from the root's logits, then from the logits of
    the root's child whose guess equals that draw (and, with monotonic alignment, whose guessed symbol
    the text pointer says), and so on down the tree, while such a child exists. A pass keeps 1 .. depth + 1
    frames a row, and the cache keeps that branch's positions (`SpeculativeCache.accept`).

    Every frame is drawn by the sampler pipeline from the logits a plain decode would have had, with the
    row's own draws (`ArRows.frame`): greedy decoding gives the plain tokens, and so does sampling when
    each row has its own generator (a single row always has). The guesses only decide how far one pass
    gets: exact-match acceptance, never an approximation of the distribution.
    """

    def __init__(self, model: Valle, tree: CandidateTree, rows: ArRows) -> None:
        backbone, cache = model.ar.backbone, rows.cache
        # checked once here (`candidate_tree`), not every pass: a protocol isinstance costs ~20 µs
        assert model.ar.medusa is not None and isinstance(backbone, TreeStepping)
        assert isinstance(cache, SpeculativeCache)  # rows that speculate never join or leave: the same cache
        self.model, self.heads, self.tree = model, model.ar.medusa, tree
        self.backbone, self.cache = backbone, cache
        # each node's children, a missing one pointing past the last node, at a code no row draws
        self.children = torch.where(tree.children >= 0, tree.children, tree.size)
        self.rows = torch.arange(rows.size, device=rows.steps.device)
        self.pending: Tensor | None = None  # [B] each row's newest frame, not yet fed
        self.said: Tensor | None = None  # [B] the said codes of the frame after it (monotonic alignment)
        self.guesses = self._guess(rows.hidden)  # [B, n - 1] the tree's candidates
        self.passes = 0
        self._row_passes = torch.zeros((), dtype=torch.long, device=rows.steps.device)
        self._kept = torch.zeros_like(self._row_passes)

    def _guess(self, hidden: Tensor) -> Tensor:
        """[B, D] → [B, n - 1]: each candidate's code, one of its head's most likely (never the stop id)."""
        tree, depth = self.tree, len(self.tree.widths)
        logits = self.heads(hidden)[:depth, :, : self.model.config.codebook_size]  # [depth, B, V]
        top = logits.topk(max(tree.widths), dim=-1).indices  # [depth, B, W]
        return top[tree.depth[1:] - 1, :, tree.rank[1:]].t()

    def advance(self, rows: ArRows) -> None:
        if self.pending is None:  # the first frame comes from the prefill's logits, as in a plain decode
            self.pending, self.said = rows.frame(rows.logits, rows.hidden)
            if rows.done:
                return
        self._pass(rows)

    def _pass(self, rows: ArRows) -> None:
        assert self.pending is not None
        model, tree, depth, batch = self.model, self.tree, len(self.tree.widths), self.rows
        running = ~rows.finished
        feed = torch.cat([self.pending[:, None], self.guesses], dim=1)  # [B, n]
        said = None
        if rows.pointer is not None:
            assert self.said is not None
            guessed = torch.cat([self.said[:, None], rows.pointer.guess_said(depth)], dim=1)  # by depth
            said = guessed[:, tree.depth]
        steps = (rows.steps - 1)[:, None] + tree.depth[None, :]  # the root's step is the pending frame's
        x = model.ar_step_input(feed, steps, said)
        hidden = self.backbone.tree_step(x, self.cache, tree.depth, tree.sees)
        logits = model.ar_logits(hidden)
        # row b's node j is entry b * n + j of the flattened passes (index_select: cheaper than [rows, node])
        flat_logits, flat_hidden = logits.flatten(0, 1), hidden.flatten(0, 1)
        first = batch * tree.size
        nowhere = torch.full_like(feed[:, :1], -2)  # what a missing child guessed: never a code or symbol
        feed = torch.cat([feed, nowhere], dim=1)
        said = torch.cat([said, nowhere], dim=1) if said is not None else None
        node = torch.zeros_like(rows.steps)  # where each row is in the tree (a row no longer `ok`: anywhere)
        path = torch.zeros(feed.shape[0], depth + 1, dtype=torch.long, device=feed.device)
        kept = torch.zeros_like(rows.steps)
        ok, newest = running, self.pending
        for i in range(depth + 1):
            at = first + node
            codes, next_said = rows.frame(
                flat_logits.index_select(0, at), flat_hidden.index_select(0, at), ok
            )
            newest = torch.where(ok, codes, newest)
            kept = kept + ok  # `ok` only ever turns off: it counts the frames kept
            if i == depth:
                break
            below = self.children[node]  # [B, W]
            right = feed.gather(1, below) == codes[:, None]
            if said is not None and next_said is not None:
                right = right & (said.gather(1, below) == next_said[:, None])
            ok = ok & right.any(dim=1) & ~rows.finished
            node = below.gather(1, right.long().argmax(dim=1, keepdim=True))[:, 0]
            path[:, i + 1] = node
            if not bool(ok.any()):
                break
        last = path.gather(1, (kept - 1).clamp(min=0)[:, None])[:, 0]  # the node that drew the newest frame
        self.cache.accept(tree.size, path, kept)  # stopped rows (kept 0) keep none
        # rows sitting sub-steps out kept their pointer: it says what follows each row's newest frame
        self.pending, self.said = newest, rows.pointer.said() if rows.pointer is not None else None
        self.guesses = self._guess(flat_hidden.index_select(0, first + last))
        self.passes += 1
        self._row_passes += running.sum()  # tensors: no host sync a pass
        self._kept += kept.sum()

    @property
    def row_passes(self) -> int:
        """Passes summed over the rows still running in each."""
        return int(self._row_passes)

    @property
    def kept(self) -> int:
        """Frames kept over every pass and running row (a pass's mean: kept / row_passes)."""
        return int(self._kept)


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
    rows = ArRows(model, cond, sampler, limits, generator=generator, fast=fast, speculate=sampler.cfg.medusa)
    for step in range(limits.max_steps):
        rows.advance()
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
    guide = _guide(model, beams, limits, sampler)
    pointer = _pointer(model, beams, max_steps, sampler.cfg, generator)
    logits = model.ar_logits(hidden)
    said = None
    scores = initial_scores(batch, width, device)
    finished = torch.zeros(batch, width, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch, width, dtype=torch.long, device=device)
    history = torch.full((batch * width, max_steps), -1, dtype=torch.long, device=device)
    rows = torch.arange(batch, device=device)[:, None] * width
    for step in range(max_steps):
        if guide is not None:
            logits = guide.mix(logits)
        log_probs = sampler.beam_log_probs(logits, history[:, :step], step).view(batch, width, -1)
        chosen = beam_step(log_probs, scores, finished, stop, lengths)
        parents = (rows + chosen.parents).view(-1)
        if pointer is not None:
            pointer.advance(step, hidden)  # each beam's own reading, then carried to its children
            pointer.reorder(parents)
            said = pointer.said()
        cache, history = cache.reorder(parents), history.index_select(0, parents)
        if guide is not None:
            guide.reorder(parents)
        assert chosen.lengths is not None  # lengths passed in come back extended
        scores, finished, lengths = chosen.scores, chosen.finished, chosen.lengths
        history[:, step] = torch.where(finished.view(-1), -1, chosen.tokens.view(-1))
        if on_step is not None:
            on_step(step)
        if bool(finished.all()):
            break
        tokens = chosen.tokens.view(-1)
        hidden = model.ar.backbone.step(model.ar_step_input(tokens, step, said), cache)[:, 0]
        logits = model.ar_logits(hidden)
        if guide is not None:
            guide.step(tokens, step)
    best = best_beam(scores, lengths, finished)
    pick = rows[:, 0] + best
    done = finished.gather(1, best[:, None])[:, 0]
    frames = torch.where(done, lengths.gather(1, best[:, None])[:, 0] - 1, max_steps)
    width_out = int(frames.max()) if batch else 0
    frame_symbols = pointer.history.index_select(0, pick)[:, :width_out] if pointer is not None else None
    return ArResult(history.index_select(0, pick)[:, :width_out].clamp(min=0), frames, ~done, frame_symbols)
