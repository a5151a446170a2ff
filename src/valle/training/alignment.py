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
from dataclasses import dataclass, field

import torch
from torch import Tensor

from valle.errors import ConfigError


@dataclass
class GuidedAttentionConfig:
    """`training.guided_attention`: which AR heads are pushed onto the text diagonal, and how hard.

    Attributes:
        weight: the loss weight (0 = off).
        sigma: width g of the diagonal band, as a fraction of the utterance (DCTTS: 0.2).
        layers: transformer layers (0-based) whose heads are guided.
        heads: the first `heads` heads of each of those layers are guided; the others stay free.
    """

    weight: float = 0.0
    sigma: float = 0.2
    layers: list[int] = field(default_factory=lambda: [1])
    heads: int = 1

    def check(self, n_layers: int, n_heads: int) -> None:
        if self.weight <= 0:
            return
        if not self.layers or any(not 0 <= layer < n_layers for layer in self.layers):
            raise ConfigError(f"training.guided_attention.layers={list(self.layers)}: each must be a layer "
                              f"index in 0..{n_layers - 1} (model.scale.n_layers={n_layers})")
        if not 1 <= self.heads <= n_heads:
            raise ConfigError(f"training.guided_attention.heads={self.heads}: must be in 1..{n_heads} "
                              f"(model.scale.n_heads={n_heads})")
        if self.sigma <= 0:
            raise ConfigError(f"training.guided_attention.sigma={self.sigma}: must be > 0 (e.g. 0.2)")


def audio_progress(text_lengths: Tensor, prompt_lengths: Tensor, code_lengths: Tensor, prefix_rows: Tensor,
                   size: int) -> tuple[Tensor, Tensor]:
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
    total = (spoken_before + code_lengths[:, None]).clamp(min=1).float()
    in_response = (q >= start) & (q <= start + code_lengths[:, None])
    in_prompt = prefix_rows[:, None] & (q >= prompt_start) & (q < prompt_start + prompt_lengths[:, None])
    frame = torch.where(in_response, spoken_before + q - start, q - prompt_start)
    return (frame.float() / total).clamp(0.0, 1.0), in_response | in_prompt


def guided_attention_loss(attention: Sequence[Tensor], heads: int, sigma: float, text_lengths: Tensor,
                          prompt_lengths: Tensor, code_lengths: Tensor, prefix_rows: Tensor) -> Tensor:
    """Mean attention mass off the text diagonal, over the guided heads' audio queries.

    Args:
        attention: per guided layer, probabilities [B, H, S, S] of the AR rows (`build_ar` layout).
        heads: the first `heads` heads of each layer are guided.
        sigma: the band's width g: a text position t (of T) has weight exp(-(p - (t + ½)/T)² / 2g²) for
            a query at progress p; the loss per query is 1 - Σ_t A[t] · weight[t] (0 on the diagonal).
        text_lengths, prompt_lengths, code_lengths: [B] as in the batch.
        prefix_rows: [B] bool, rows whose prompt is their own utterance's beginning.

    Returns:
        a scalar in [0, 1].
    """
    size = attention[0].shape[-1]
    progress, valid = audio_progress(text_lengths, prompt_lengths, code_lengths, prefix_rows, size)
    keys = torch.arange(size, device=text_lengths.device)[None, :]
    centre = (keys + 0.5) / text_lengths[:, None].clamp(min=1).float()  # [B, S] text positions' progress
    band = torch.exp(-(progress[:, :, None] - centre[:, None, :]) ** 2 / (2 * sigma**2))  # [B, Sq, Sk]
    band = band * (keys < text_lengths[:, None])[:, None, :]
    on_diagonal = torch.stack([(a[:, :heads].float() * band[:, None]).sum(-1) for a in attention])  # [L, B, h, Sq]
    mask = valid[None, :, None, :].expand_as(on_diagonal)
    return (1.0 - on_diagonal[mask]).mean() if mask.any() else on_diagonal.new_zeros(())


def rolled_text(batch: dict) -> dict:
    """The batch with each row given the next row's text (the text-dependence gap's counterfactual)."""
    return {**batch, "text": batch["text"].roll(1, dims=0), "text_lengths": batch["text_lengths"].roll(1, dims=0)}
