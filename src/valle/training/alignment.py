"""Text–audio alignment during training: the guided-attention loss and the text-dependence gap.

A decoder-only VALL-E must discover by itself which text position each audio frame says. Until it
does, it is a next-frame predictor conditioned on the prompt: its loss falls, yet it ignores the text
(docs/training.md, "Does it read the text?"). Two tools here:

- `guided_attention_loss` (Tachibana et al. 2017, DCTTS) pushes some heads' attention from each audio
  frame onto the text near the diagonal: a frame `f` of an utterance of `F` frames should look at text
  position `t` of `T` where `t / T ≈ f / F`. It is written as the attention mass that lands *off* a
  Gaussian band around the diagonal, counting attention to non-text keys (the prompt, earlier frames) as
  off too, so a guided head becomes a text-reading head, which a decoder-only model otherwise lacks.
- `rolled_text` builds the text-dependence gap's counterfactual: each row with another row's text.
  CE(other text) − CE(own text) of the teacher-forced AR is ≈ 0 for a model that ignores the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from valle.errors import ConfigError
from valle.utils.batch import Batch


@dataclass
class GuidedAttentionConfig:
    """`training.guided_attention`: which AR heads are pushed onto the text diagonal, and how hard.

    Attributes:
        weight: the loss weight (0 = off).
        sigma: width g of the diagonal band, as a fraction of the utterance (DCTTS: 0.2).
        layers: transformer layers (0-based) whose heads are guided.
        heads: the first `heads` heads of each of those layers are guided; the others stay free.
        prior: where the diagonal puts each text symbol: "linear" (symbol t of T at t / T, DCTTS) or
            "durations" (at its expected start, `DurationPrior`, learned from the training batches).
    """

    weight: float = 0.0
    sigma: float = 0.2
    layers: list[int] = field(default_factory=lambda: [1])
    heads: int = 1
    prior: str = "linear"

    def check(self, n_layers: int, n_heads: int) -> None:
        if self.weight <= 0:
            return
        if not self.layers or any(not 0 <= layer < n_layers for layer in self.layers):
            raise ConfigError(
                f"training.guided_attention.layers={list(self.layers)}: each must be a layer "
                f"index in 0..{n_layers - 1} (model.scale.n_layers={n_layers})"
            )
        if not 1 <= self.heads <= n_heads:
            raise ConfigError(
                f"training.guided_attention.heads={self.heads}: must be in 1..{n_heads} "
                f"(model.scale.n_heads={n_heads})"
            )
        if self.sigma <= 0:
            raise ConfigError(f"training.guided_attention.sigma={self.sigma}: must be > 0 (e.g. 0.2)")
        if self.prior not in PRIORS:
            raise ConfigError(f"training.guided_attention.prior={self.prior!r}: choose one of {PRIORS}")


PRIORS = ("linear", "durations")


class DurationPrior(nn.Module):
    """Expected frames per text symbol, fitted to the utterances' lengths as training goes.

    An utterance's frames are about the sum of its symbols' durations, so the durations are the ridge
    regression of frames on symbol counts. Its sufficient statistics (counts' Gram matrix and their
    moments with the frames) accumulate over every training batch and travel in checkpoints, so the fit
    costs one V × V solve a step and a resumed run goes on where it stopped. The ridge pulls each duration
    towards the mean frames per symbol: with no data the prior is the linear diagonal, and a symbol
    seldom seen stays near the mean. The start and end markers (<bos>, the language, <eos>) are in every
    utterance, so they share its silences between them.

    On the demo corpus this halves how far the diagonal is from where pocketsphinx's forced alignment
    puts each word (docs/training.md).
    """

    gram: Tensor  # [V, V] float64 buffers, registered in __init__
    moments: Tensor  # [V]
    totals: Tensor  # [2]: frames, symbols

    def __init__(self, n_symbols: int, shrinkage: float = 10.0) -> None:
        super().__init__()
        self.shrinkage = shrinkage  # in utterances' worth of evidence
        self.register_buffer("gram", torch.zeros(n_symbols, n_symbols, dtype=torch.float64))
        self.register_buffer("moments", torch.zeros(n_symbols, dtype=torch.float64))
        self.register_buffer("totals", torch.zeros(2, dtype=torch.float64))  # frames, symbols

    @torch.no_grad()
    def update(self, text: Tensor, text_lengths: Tensor, frames: Tensor) -> None:
        """Add a batch: text [B, N] ids, text_lengths [B], frames [B] (what the text spans)."""
        valid = torch.arange(text.shape[1], device=text.device)[None, :] < text_lengths[:, None]
        counts = torch.zeros(text.shape[0], self.moments.numel(), dtype=torch.float64, device=text.device)
        counts.scatter_add_(1, text * valid, valid.double())
        self.gram += counts.T @ counts
        self.moments += counts.T @ frames.double()
        self.totals += torch.stack([frames.sum(), text_lengths.sum()]).double()

    def durations(self) -> Tensor:
        """[V] expected frames of each symbol id (all equal before any update)."""
        mean = self.totals[0] / self.totals[1] if self.totals[1] > 0 else self.totals.new_tensor(1.0)
        ridge = self.shrinkage * torch.eye(len(self.moments), dtype=self.gram.dtype, device=self.gram.device)
        fitted = torch.linalg.solve(self.gram + ridge, self.moments + self.shrinkage * mean)
        return fitted.clamp(min=0.05 * float(mean)).float()  # every symbol takes some time

    def centres(self, text: Tensor, text_lengths: Tensor, size: int) -> Tensor:
        """[B, size]: the progress (0..1) at the middle of each text position; 0 past the text."""
        valid = torch.arange(text.shape[1], device=text.device)[None, :] < text_lengths[:, None]
        length = self.durations()[text] * valid
        middle = (length.cumsum(1) - length / 2) / length.sum(1, keepdim=True).clamp(min=1e-6)
        return nn.functional.pad(middle * valid, (0, max(0, size - text.shape[1])))[:, :size]


def audio_progress(
    text_lengths: Tensor, prompt_lengths: Tensor, code_lengths: Tensor, prefix_rows: Tensor, size: int
) -> tuple[Tensor, Tensor]:
    """How far through its utterance each AR position's prediction is, in the `build_ar` layout.

    Layout: `text (T) ; sep ; prompt (Tp) ; sep ; start, codes (N)`. The response input at `start + j`
    predicts frame j (j = N predicts stop): progress j / N. In a prefix row the prompt is the
    utterance's own beginning and the text covers it too: prompt frame i is at i / (Tp + N), response
    frame j at (Tp + j) / (Tp + N).

    Returns:
        (progress [B, size] in [0, 1], valid [B, size] bool: the positions that say part of the text).
    """
    q = torch.arange(size, device=text_lengths.device)[None, :]
    prompt_start = (text_lengths + 1)[:, None]
    start = (text_lengths + prompt_lengths + 2)[:, None]
    spoken_before = torch.where(prefix_rows, prompt_lengths, 0)[:, None]  # frames of the text before start
    total = spoken_frames(prompt_lengths, code_lengths, prefix_rows)[:, None].clamp(min=1).float()
    in_response = (q >= start) & (q <= start + code_lengths[:, None])
    in_prompt = prefix_rows[:, None] & (q >= prompt_start) & (q < prompt_start + prompt_lengths[:, None])
    frame = torch.where(in_response, spoken_before + q - start, q - prompt_start)
    return (frame.float() / total).clamp(0.0, 1.0), in_response | in_prompt


def guided_attention_loss(
    attention: Sequence[Tensor],
    heads: int,
    sigma: float,
    text_lengths: Tensor,
    prompt_lengths: Tensor,
    code_lengths: Tensor,
    prefix_rows: Tensor,
    centres: Tensor | None = None,
) -> Tensor:
    """Mean attention mass off the text diagonal, over the guided heads' audio queries.

    Args:
        attention: per guided layer, probabilities [B, H, S, S] of the AR rows (`build_ar` layout).
        heads: the first `heads` heads of each layer are guided.
        sigma: the band's width g: a text position t (of T) has weight exp(-(p - (t + ½)/T)² / 2g²) for
            a query at progress p; the loss per query is 1 - Σ_t A[t] · weight[t] (0 on the diagonal).
        text_lengths, prompt_lengths, code_lengths: [B] as in the batch.
        prefix_rows: [B] bool, rows whose prompt is their own utterance's beginning.
        centres: [B, S] where on the diagonal each text position is said (progress 0..1, from
            `DurationPrior.centres`); default linear, position t of T at (t + ½) / T.

    Returns:
        a scalar in [0, 1].
    """
    size = attention[0].shape[-1]
    progress, valid = audio_progress(text_lengths, prompt_lengths, code_lengths, prefix_rows, size)
    keys = torch.arange(size, device=text_lengths.device)[None, :]
    if centres is None:
        centres = (keys + 0.5) / text_lengths[:, None].clamp(min=1).float()  # [B, S] text positions' progress
    band = torch.exp(-((progress[:, :, None] - centres[:, None, :]) ** 2) / (2 * sigma**2))  # [B, Sq, Sk]
    band = band * (keys < text_lengths[:, None])[:, None, :]
    on_diagonal = torch.stack(
        [(a[:, :heads].float() * band[:, None]).sum(-1) for a in attention]
    )  # [L, B, h, Sq]
    mask = valid[None, :, None, :].expand_as(on_diagonal)
    return (1.0 - on_diagonal[mask]).mean() if mask.any() else on_diagonal.new_zeros(())


def spoken_frames(prompt_lengths: Tensor, code_lengths: Tensor, prefix_rows: Tensor) -> Tensor:
    """[B] frames the text spans: the response, and in a prefix row the prompt before it too."""
    return code_lengths + torch.where(prefix_rows, prompt_lengths, 0)


def rolled_text(batch: Batch) -> Batch:
    """The batch with each row given the previous row's text (the text-dependence gap's counterfactual)."""
    return replace(batch, cond=batch.cond.with_text_rolled())
