"""Beam search over accumulated log-probabilities, one step at a time (docs/design.md, "Beam search").

The AR loop owns the model and its cache; these helpers only choose tokens. Per step the loop
calls `beam_step` on the log-probabilities of its B * W live beams, reorders its cache and token
history with the returned `parents`, and after the last step picks `best_beam`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor


class BeamStep(NamedTuple):
    """The outcome of one beam step; every field is [B, W].

    Attributes:
        tokens: int64 token appended to each new beam (the stop token again for a finished beam).
        parents: int64 index in [0, W) of the beam each new beam extends; reorder the cache with it.
        scores: float32 accumulated log-probability of each new beam.
        finished: bool, the beam has emitted the stop token.
        lengths: int64 tokens in each new beam, stop included (None when no lengths were passed).
    """

    tokens: Tensor
    parents: Tensor
    scores: Tensor
    finished: Tensor
    lengths: Tensor | None


def initial_scores(batch: int, width: int, device: torch.device | str = "cpu") -> Tensor:
    """Scores before the first step: 0 for beam 0, -inf for the others.

    Only beam 0 is live at first, so the W copies of the same prefix do not fill the beam with W
    identical hypotheses.

    Returns:
        [B, W] float32.
    """
    scores = torch.full((batch, width), -math.inf, device=device)
    scores[:, 0] = 0.0
    return scores


def beam_step(
    log_probs: Tensor,
    scores: Tensor,
    finished: Tensor,
    stop_token: int,
    lengths: Tensor | None = None,
) -> BeamStep:
    """Choose the W best continuations per batch row over accumulated log-probabilities.

    A live beam w proposes `scores[w] + log_probs[w, v]` for every token v. A finished beam proposes
    only itself, carried over with its score unchanged (not extended) and the stop token, so it
    competes for a slot with the live candidates until every beam has finished or the loop stops.

    Args:
        log_probs: [B, W, V] float log-probabilities of the next token for each beam.
        scores: [B, W] float accumulated log-probabilities (-inf for an empty slot).
        finished: [B, W] bool.
        stop_token: id of the stop token.
        lengths: optional [B, W] int64 tokens per beam so far; carried and extended when given.

    Returns:
        BeamStep with [B, W] tokens, parents, scores, finished and lengths.
    """
    batch, width, vocab = log_probs.shape
    candidates = scores.unsqueeze(-1) + log_probs.float()  # [B, W, V]
    is_stop = torch.arange(vocab, device=log_probs.device) == stop_token
    carried = torch.where(is_stop, scores.unsqueeze(-1), torch.full_like(candidates, -math.inf))
    candidates = torch.where(finished.unsqueeze(-1), carried, candidates)
    new_scores, flat = candidates.reshape(batch, width * vocab).topk(width, dim=-1)
    parents = torch.div(flat, vocab, rounding_mode="floor")
    tokens = flat % vocab
    was_finished = finished.gather(1, parents)
    new_finished = was_finished | (tokens == stop_token)
    new_lengths = None
    if lengths is not None:
        new_lengths = lengths.gather(1, parents) + (~was_finished).long()
    return BeamStep(tokens, parents, new_scores, new_finished, new_lengths)


def best_beam(scores: Tensor, lengths: Tensor, finished: Tensor) -> Tensor:
    """Index of the best beam per row by length-normalised score, `score / length`.

    Finished beams are preferred: a row with at least one finished beam picks among those; a row
    with none (the loop hit its step limit) picks among all.

    Args:
        scores: [B, W] float accumulated log-probabilities.
        lengths: [B, W] int64 tokens per beam (clamped to >= 1).
        finished: [B, W] bool.

    Returns:
        [B] int64 beam indices.
    """
    normalised = scores.float() / lengths.clamp_min(1).to(torch.float32)
    eligible = finished | ~finished.any(dim=-1, keepdim=True)
    return normalised.masked_fill(~eligible, -math.inf).argmax(dim=-1)
