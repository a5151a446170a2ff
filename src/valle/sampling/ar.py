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

from valle.models.backbones import ContextWindow
from valle.models.valle import Valle
from valle.sampling.compiled import fast_step, static_capacity
from valle.sampling.pipeline import ArSampler


@dataclass
class ArResult:
    codes: Tensor  # [B, T] level-0 codes, 0 after each row's end
    lengths: Tensor  # [B] frames per row
    hit_limit: Tensor  # [B] bool: the row reached max_steps without a stop token


def _start(
    model: Valle,
    text: Tensor,
    text_lengths: Tensor,
    prompt: Tensor,
    prompt_lengths: Tensor,
    max_steps: int,
    max_context: int | None,
    capacity: Callable[[int], int] | None = None,
    continues: Tensor | None = None,
):
    """Prefill: cache holding the prefix, and the logits [B, V + 1] of the first code.

    `capacity` maps the positions needed to the cache size (the fast path rounds it up)."""
    packed = model.ar_prefix(text, text_lengths, prompt, prompt_lengths, continues)
    window = ContextWindow(max_context, packed.lengths) if max_context else None
    room = (max_context + 1) if max_context else max_steps + 1
    backbone = model.ar.backbone
    needed = int(packed.lengths.max()) + room
    cache = backbone.new_cache(text.shape[0], capacity(needed) if capacity else needed, window=window)
    prefix = packed.prefix_lengths if model.config.prefix_lm else None
    hidden = backbone.step(packed.x, cache, lengths=packed.lengths, prefix_lengths=prefix)
    last = hidden[torch.arange(text.shape[0], device=text.device), packed.lengths - 1]
    return cache, model.ar_logits(last)


@torch.inference_mode()
def decode_ar(
    model: Valle,
    text: Tensor,
    text_lengths: Tensor,
    prompt: Tensor,
    prompt_lengths: Tensor,
    sampler: ArSampler,
    max_steps: int,
    max_context: int | None = None,
    generator: torch.Generator | None = None,
    on_step: Callable[[int], None] | None = None,
    row_limits: Tensor | None = None,
    fast: bool = False,
    continues: Tensor | None = None,
) -> ArResult:
    """Sample level-0 codes for a batch.

    Args:
        model: the model, in eval mode.
        text: [B, N] ids; prompt: [B, L, Tp] codes; *_lengths: [B].
        sampler: the AR sampler pipeline (its per-row state, e.g. mirostat's, lives here in the loop).
        max_steps: the most codes per row (a row that reaches it has `hit_limit`).
        row_limits: [B] optional smaller per-row limits (e.g. a multiple of each text's length).
        max_context: keep only this many most recent response positions in context (`max_ar_context`).
        on_step: called after every step (progress bars).
        fast: run each step through one compiled static graph (`valle.sampling.compiled`); the same
            tokens, falling back to eager decoding with a log line where it cannot apply.
        continues: [B] bool, rows whose prompt is the beginning of their text's utterance (continuation
            mode; it places the text's positions when the model has `segment_positions`).
    """
    batch, stop = text.shape[0], model.config.stop_token
    fast_path = fast_step(model, max_context) if fast else None
    cache, logits = _start(
        model,
        text,
        text_lengths,
        prompt,
        prompt_lengths,
        max_steps,
        max_context,
        static_capacity if fast_path else None,
        continues,
    )
    step_fn = fast_path.bind(cache) if fast_path else None
    history = torch.full((batch, max_steps), -1, dtype=torch.long, device=text.device)
    lengths = torch.full((batch,), max_steps, dtype=torch.long, device=text.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=text.device)
    limits = row_limits if row_limits is not None else lengths
    hit_limit = torch.zeros_like(finished)
    state = sampler.new_state(batch, text.device)
    for step in range(max_steps):
        codes = sampler(logits, history[:, :step], step, generator, state)
        at_limit = ~finished & (step >= limits)
        hit_limit = hit_limit | at_limit
        codes = torch.where(finished | at_limit, stop, codes)
        lengths = torch.where(~finished & (codes == stop), step, lengths)
        finished = finished | (codes == stop)
        history[:, step] = torch.where(finished, -1, codes)
        if on_step is not None:
            on_step(step)
        if bool(finished.all()):
            break
        if step_fn is not None:
            logits = step_fn(codes)
        else:
            hidden = model.ar.backbone.step(model.ar_step_input(codes, step), cache)
            logits = model.ar_logits(hidden[:, 0])
    width = int(lengths.max()) if batch else 0
    out = history[:, :width].clamp(min=0)
    return ArResult(out, lengths, hit_limit | ~finished)


@torch.inference_mode()
def decode_ar_beam(
    model: Valle,
    text: Tensor,
    text_lengths: Tensor,
    prompt: Tensor,
    prompt_lengths: Tensor,
    sampler: ArSampler,
    max_steps: int,
    max_context: int | None = None,
    on_step: Callable[[int], None] | None = None,
    continues: Tensor | None = None,
) -> ArResult:
    """Beam search of `width` over accumulated log-probabilities (docs/design.md, "Beam search").

    Each row is expanded to `sampler.cfg.beam_width` beams (scored after the repetition and length
    penalties); after every step the cache rows are reordered so each
    beam continues its parent. Finished beams are kept until all are done or `max_steps`; the best
    beam by length-normalised score is returned.
    """
    from valle.sampling.beam import beam_step, best_beam, initial_scores

    batch, stop, width = text.shape[0], model.config.stop_token, sampler.cfg.beam_width
    expand = lambda x: x.repeat_interleave(width, dim=0)  # noqa: E731
    cache, logits = _start(
        model,
        expand(text),
        expand(text_lengths),
        expand(prompt),
        expand(prompt_lengths),
        max_steps,
        max_context,
        continues=None if continues is None else expand(continues),
    )
    scores = initial_scores(batch, width, text.device)
    finished = torch.zeros(batch, width, dtype=torch.bool, device=text.device)
    lengths = torch.zeros(batch, width, dtype=torch.long, device=text.device)
    history = torch.full((batch * width, max_steps), -1, dtype=torch.long, device=text.device)
    rows = torch.arange(batch, device=text.device)[:, None] * width
    for step in range(max_steps):
        log_probs = sampler.beam_log_probs(logits, history[:, :step], step).view(batch, width, -1)
        chosen = beam_step(log_probs, scores, finished, stop, lengths)
        parents = (rows + chosen.parents).view(-1)
        cache, history = cache.reorder(parents), history.index_select(0, parents)
        assert chosen.lengths is not None  # lengths passed in come back extended
        scores, finished, lengths = chosen.scores, chosen.finished, chosen.lengths
        history[:, step] = torch.where(finished.view(-1), -1, chosen.tokens.view(-1))
        if on_step is not None:
            on_step(step)
        if bool(finished.all()):
            break
        hidden = model.ar.backbone.step(model.ar_step_input(chosen.tokens.view(-1), step), cache)
        logits = model.ar_logits(hidden[:, 0])
    best = best_beam(scores, lengths, finished)
    pick = rows[:, 0] + best
    done = finished.gather(1, best[:, None])[:, 0]
    frames = torch.where(done, lengths.gather(1, best[:, None])[:, 0] - 1, max_steps)
    width_out = int(frames.max()) if batch else 0
    return ArResult(history.index_select(0, pick)[:, :width_out].clamp(min=0), frames, ~done)
