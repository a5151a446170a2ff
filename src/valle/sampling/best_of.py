"""Best of N: draw N level-0 candidates for each row, keep the one the recognizer hears its text in best.

The AR's draws of one sentence differ in how clearly they say it (docs/benchmarks.md, "Best of N"), so
drawing several and keeping the clearest says more of the words. The candidates are judged on level 0
alone by `valle.models.recognizer.CodeRecognizer` (trained on the model's training shards, never on the
instrument): only the winner goes on to the NAR, so N candidates cost N AR rows, decoded as one batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from valle.errors import ConfigError
from valle.models.recognizer import CodeRecognizer
from valle.recognizer_card import LoadedRecognizer
from valle.sampling.ar import ArResult
from valle.text.symbols import HEAD_IDS, TAIL_IDS
from valle.utils.batch import Conditioning


def recognizer_rows(cond: Conditioning, ar: ArResult) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """What the recognizer reads of each decoded row: (codes [B, T], lengths, targets [B, N], their lengths).

    A continuation row's text covers its prompt too, so its codes are the prompt's level 0 followed by the
    response; a cross-utterance row's prompt says another sentence and is left out.
    """
    continuing = cond.continuing
    prompt_lengths = torch.where(continuing, cond.prompt_lengths, torch.zeros_like(cond.prompt_lengths))
    lengths = prompt_lengths + ar.lengths
    codes = torch.zeros(cond.size, int(lengths.max()), dtype=torch.long, device=ar.codes.device)
    for b in range(cond.size):
        p, n = int(prompt_lengths[b]), int(ar.lengths[b])
        codes[b, :p] = cond.prompt[b, 0, :p]
        codes[b, p : p + n] = ar.codes[b, :n]
    # the symbols between <bos> <lang> and <eos>
    target_lengths = (cond.text_lengths - HEAD_IDS - TAIL_IDS).clamp(min=0)
    targets = cond.text[:, HEAD_IDS : HEAD_IDS + max(1, int(target_lengths.max()))]
    return codes, lengths, targets, target_lengths


def keep_clearest(recognizer: CodeRecognizer, candidates: Conditioning, ar: ArResult, n: int) -> ArResult:
    """Of each `n` consecutive candidate rows (`Conditioning.repeat_rows(n)`), the one whose level 0 says its
    text best; a candidate that hit the step limit loses to any that stopped."""
    scores = recognizer.read_scores(*recognizer_rows(candidates, ar)).to(ar.codes.device)
    scores = scores.masked_fill(ar.hit_limit, -torch.inf)
    groups = scores.view(-1, n)
    # all -inf (every candidate too short or stuck): the first, as best_of=1 would
    best = torch.where(torch.isinf(groups).all(1), 0, groups.argmax(1))
    return ar.select(torch.arange(groups.shape[0], device=best.device) * n + best)


def check_best_of(best_of: int, recognizer: CodeRecognizer | LoadedRecognizer | None) -> None:
    if best_of > 1 and recognizer is None:
        raise ConfigError(
            f"sampler.best_of={best_of} needs a recognizer to judge the candidates: pass recognizer=PATH "
            "(python -m valle.recognizer data.root=... out=PATH trains one), or set best_of=1"
        )
