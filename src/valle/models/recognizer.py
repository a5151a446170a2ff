"""A small recognizer of level-0 codes: how clearly do a row's codes say its text? (docs/inference.md,
"Best of N").

The AR's free running is where the words are lost (docs/benchmarks.md, "Which part loses the words"): two
draws of the same sentence differ in how clearly they say it, and the one the instrument identifies varies
from draw to draw. Drawing N candidates and keeping the one that says its text best is the reranking that
Tortoise does with CLVP; here the judge is a CTC recognizer of the corpus's own symbols, trained on the
training shards only (never on the held-out sentences or voices, and independent of the evaluation's
pocketsphinx), so what it picks is not tuned to the instrument.

Level 0 alone, because it carries the words (the true level 0 alone is identified 90 % of the time on
the demo's held-out voices) and because the candidates can then be judged before the NAR runs: the NAR
only fills in the winner. The network is a stack of residual 1-D convolutions (a phone lasts ~4 frames at
50 frames/s; five layers of kernel 5 see ±10 frames) over the codes' embeddings, with a CTC output over
the symbol map's ids plus a blank: one forward over the candidates, small beside the AR's steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from valle.errors import ConfigError


@dataclass
class RecognizerConfig:
    d_model: int = 192
    n_layers: int = 5
    kernel_size: int = 5
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.d_model < 1 or self.n_layers < 1 or self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(
                f"recognizer: d_model={self.d_model} and n_layers={self.n_layers} must be >= 1, "
                f"kernel_size={self.kernel_size} odd and >= 1"
            )
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"recognizer: dropout={self.dropout} must lie in [0, 1)")


class CodeRecognizer(nn.Module):
    """Level-0 codes [B, T] → per-frame log-probabilities [B, T, S + 1] over the S text ids and a blank.

    Args:
        config: the network's size.
        codebook_size: level 0's codes (the model's codec).
        n_symbols: the text ids it reads out (the model's symbol map: a row's text ids are its targets).
    """

    def __init__(self, config: RecognizerConfig, codebook_size: int, n_symbols: int) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.embedding = nn.Embedding(codebook_size, d)
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(config.n_layers))
        self.convs = nn.ModuleList(
            nn.Conv1d(d, d, config.kernel_size, padding=config.kernel_size // 2)
            for _ in range(config.n_layers)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(d, n_symbols + 1)

    @property
    def blank(self) -> int:
        return self.out.out_features - 1

    @property
    def codebook_size(self) -> int:
        return self.embedding.num_embeddings

    def forward(self, codes: Tensor, lengths: Tensor) -> Tensor:
        """codes [B, T] (any value past a row's length) → log-probabilities [B, T, S + 1]."""
        frames = torch.arange(codes.shape[1], device=codes.device)
        valid = (frames[None, :] < lengths[:, None]).unsqueeze(-1)  # padding must not leak into the convs
        h = self.embedding(codes.clamp(0, self.embedding.num_embeddings - 1)) * valid
        for norm, conv in zip(self.norms, self.convs, strict=True):
            h = h + self.dropout(F.gelu(conv(norm(h).transpose(1, 2)).transpose(1, 2))) * valid
        return self.out(h).log_softmax(-1)

    def ctc(
        self, codes: Tensor, lengths: Tensor, targets: Tensor, target_lengths: Tensor, trainable: bool = True
    ) -> Tensor:
        """[B] CTC negative log-likelihood of each row's `targets` [B, N] (right-padded) in nats. Rows too
        short to say their targets give inf, or 0 with `trainable` (no gradient from them)."""
        log_probs = self(codes, lengths).transpose(0, 1).float()  # [T, B, S + 1], as ctc_loss wants
        return F.ctc_loss(
            log_probs,
            targets,
            lengths,
            target_lengths,
            blank=self.blank,
            reduction="none",
            zero_infinity=trainable,
        )

    @torch.inference_mode()
    def read_scores(self, codes: Tensor, lengths: Tensor, targets: Tensor, target_lengths: Tensor) -> Tensor:
        """[B] how clearly each row says its targets: log-likelihood per target symbol (higher is clearer;
        −inf for codes too short to say them at all)."""
        nll = self.ctc(codes, lengths, targets, target_lengths, trainable=False)
        return -nll / target_lengths.clamp(min=1).to(nll.dtype)
