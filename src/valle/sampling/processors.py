"""Pure, batched logit processors and samplers (docs/design.md, "Sampler pipeline").

Every function takes logits of shape [B, V] (one row per sequence being decoded), never mutates its
inputs and has no Python loop over the vocabulary or over rows. The order in which they are applied
is set in one place only: `valle.sampling.pipeline`.

Conventions:
    history: [B, T] int64 token ids, oldest first, `EMPTY` (-1) for "no token". Empty entries are
        skipped wherever they sit (left padding, right padding or holes), so rows of different
        lengths share one tensor.
    A removed token has logit -inf; every row must keep at least one finite logit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

EMPTY = -1  # history filler: no token at this position
_MIN_DYNAMIC_T = 1e-4  # floor for the dynamic temperature, so a near-zero-entropy row never divides by 0


def _distance_from_end(history: Tensor) -> Tensor:
    """Distance of each history entry from the newest one, counting only non-empty entries.

    Args:
        history: [B, T] int64, `EMPTY` for no token.

    Returns:
        [B, T] float: 1 for the newest token of the row, 2 for the one before, ...; inf where empty.
    """
    valid = history != EMPTY
    # A reversed cumulative sum counts the valid entries at or after each position, so padding
    # anywhere in the row does not shift the distances of the real tokens.
    d = valid.flip(1).cumsum(1).flip(1).to(torch.float32)
    return torch.where(valid, d, torch.full_like(d, math.inf))


def repetition_penalty(logits: Tensor, history: Tensor, penalty: float, decay: float = 1.0) -> Tensor:
    """Make tokens seen in the history less likely, the more so the more recent (docs/design.md,
    "Sampler pipeline", step 1).

    A token last seen at distance d (1 = previous step) gets `p_d = 1 + (penalty - 1) * decay**(d - 1)`;
    each token counts once, at its nearest distance. Positive logits are divided by `p_d` and negative
    ones multiplied, so with `penalty >= 1` the token always loses probability (the seed divided both,
    which raises negative logits).

    Args:
        logits: [B, V] float.
        history: [B, T] int64 ids, `EMPTY` (-1) for no token.
        penalty: p >= 1 (1 = off).
        decay: in [0, 1]; 1 = the same penalty for every distance, 0 = only the previous token.

    Returns:
        [B, V] penalised logits (a new tensor).
    """
    if history.numel() == 0 or penalty == 1.0:
        return logits
    dist = _distance_from_end(history)
    nearest = torch.full(logits.shape, math.inf, dtype=torch.float32, device=logits.device)
    # Empty entries point at id 0 with distance inf, which never wins the min.
    ids = history.clamp_min(0)
    nearest = nearest.scatter_reduce(1, ids, dist, reduce="amin", include_self=True)
    seen = torch.isfinite(nearest)
    exponent = torch.where(seen, nearest - 1, torch.zeros_like(nearest))
    factor = 1 + (penalty - 1) * torch.pow(decay, exponent)  # 0 ** 0 = 1: decay 0 keeps d = 1
    factor = torch.where(seen, factor, torch.ones_like(factor)).to(logits.dtype)
    return torch.where(logits > 0, logits / factor, logits * factor)


def length_penalty(logits: Tensor, stop_token: int, steps: Tensor | int, alpha: float) -> Tensor:
    """Shift the stop logit with the number of steps taken (docs/design.md, "Sampler pipeline", step 2).

    `stop_logit -= alpha * log(steps + 1)`: alpha > 0 delays the stop (longer outputs), alpha < 0
    hastens it, the sign convention of the seed's flag.

    Args:
        logits: [B, V] float.
        stop_token: id of the stop token in the vocabulary.
        steps: steps decoded so far, an int for every row or a [B] tensor.
        alpha: strength; 0 = off.

    Returns:
        [B, V] logits (a new tensor).
    """
    steps_t = torch.as_tensor(steps, dtype=torch.float32, device=logits.device)
    shift = (alpha * torch.log1p(steps_t)).reshape(-1, 1).to(logits.dtype)  # [B or 1, 1]
    is_stop = torch.arange(logits.shape[-1], device=logits.device) == stop_token
    return torch.where(is_stop, logits - shift, logits)


def temperature(logits: Tensor, t: float) -> Tensor:
    """Divide the logits by a temperature (docs/design.md, "Sampler pipeline", step 3).

    Args:
        logits: [B, V] float.
        t: temperature > 0 (T = 0, greedy, is chosen by the pipeline, not here).

    Returns:
        [B, V] logits / t.

    Raises:
        ValueError: if t <= 0.
    """
    if t <= 0:
        raise ValueError(f"temperature must be > 0, got {t}; use greedy() for T = 0")
    return logits / t


def entropy(logits: Tensor) -> Tensor:
    """Entropy in nats of softmax(logits) per row; -inf entries contribute 0.

    Args:
        logits: [B, V] float.

    Returns:
        [B] float32.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    # where() rather than p * logp: 0 * -inf is nan for removed tokens.
    return -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(-1)


def dynamic_temperature(logits: Tensor, min_t: float, max_t: float) -> Tensor:
    """Temperature that grows with the row's uncertainty (docs/design.md, "Sampler pipeline", step 3).

    `T_dyn = min_t + (max_t - min_t) * H / log V` per row, H the entropy of the untempered
    distribution. V is the number of finite logits in the row (the tokens still possible), so
    H / log V is the normalised entropy in [0, 1] even after earlier processors removed tokens; a row
    with a single possible token gets T = min_t. T_dyn is floored at 1e-4 so it never divides by 0.

    Args:
        logits: [B, V] float.
        min_t: temperature of a certain (one-hot) row, >= 0.
        max_t: temperature of a uniform row, >= min_t.

    Returns:
        [B, V] logits / T_dyn[:, None].
    """
    n_possible = torch.isfinite(logits).sum(-1).clamp_min(1).to(torch.float32)
    log_v = torch.log(n_possible)
    ratio = torch.where(log_v > 0, entropy(logits) / log_v.clamp_min(1e-12), torch.zeros_like(log_v))
    t = (min_t + (max_t - min_t) * ratio.clamp(0, 1)).clamp_min(_MIN_DYNAMIC_T)
    return logits / t.unsqueeze(-1).to(logits.dtype)


def top_k(logits: Tensor, k: int) -> Tensor:
    """Keep the k largest logits of each row (docs/design.md, "Sampler pipeline", step 4).

    Tokens tied with the k-th largest logit are all kept, so the result does not depend on how
    `torch.topk` orders ties.

    Args:
        logits: [B, V] float.
        k: tokens to keep; k <= 0 or k >= V = off.

    Returns:
        [B, V] logits with the rest at -inf.
    """
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # [B, 1]
    return logits.masked_fill(logits < kth, -math.inf)


def top_p(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose mass reaches p (step 4).

    A token is kept when the mass of the tokens ranked above it is below p, so the most likely token
    is always kept. Ties are ranked by token id (a stable sort), so among equally likely tokens at
    the boundary the lower ids are kept.

    Args:
        logits: [B, V] float.
        p: mass in (0, 1]; p >= 1 = off.

    Returns:
        [B, V] logits with the rest at -inf.
    """
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    mass_before = probs.cumsum(-1) - probs
    keep_sorted = mass_before < p
    keep_sorted[:, 0] = True  # guards p <= 0 and rounding; keep_sorted is our own tensor
    keep = torch.zeros_like(keep_sorted).scatter(1, order, keep_sorted)
    return logits.masked_fill(~keep, -math.inf)


class RowGenerators:
    """One seeded generator per row: each row draws from its own stream, so what a row samples does not
    depend on which other rows share its batch (continuous batching in `valle.serving`: requests join and
    leave a running batch, and a request's seed must still mean the same output).

    Every draw of the sampler pipeline and the text pointer goes through `multinomial`, which takes either
    this or one `torch.Generator` (or None) for the whole batch.
    """

    def __init__(self, generators: Sequence[torch.Generator]) -> None:
        self.generators = list(generators)

    @classmethod
    def seeded(cls, seeds: Sequence[int], device: torch.device | str = "cpu") -> RowGenerators:
        return cls([torch.Generator(device=device).manual_seed(seed) for seed in seeds])

    def __len__(self) -> int:
        return len(self.generators)

    def index_select(self, index: Tensor) -> RowGenerators:
        """The generators of rows `index` (the rows that stay, or beams that continue a parent)."""
        return RowGenerators([self.generators[i] for i in index.tolist()])

    def join(self, other: RowGenerators) -> RowGenerators:
        return RowGenerators(self.generators + other.generators)


Generators = torch.Generator | RowGenerators | None


def multinomial(probs: Tensor, generator: Generators = None) -> Tensor:
    """One draw per row of `probs` [B, V] → [B] int64, from one generator or from each row's own."""
    if isinstance(generator, RowGenerators):
        if len(generator) != probs.shape[0]:
            raise ValueError(f"{len(generator)} row generators for {probs.shape[0]} rows")
        draws = [
            torch.multinomial(row, 1, generator=g) for row, g in zip(probs, generator.generators, strict=True)
        ]
        return torch.cat(draws) if draws else probs.new_zeros(0, dtype=torch.long)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def sample(logits: Tensor, generator: Generators = None) -> Tensor:
    """Draw one token per row from softmax(logits) (docs/design.md, "Sampler pipeline", step 5).

    Args:
        logits: [B, V] float; at least one finite entry per row.
        generator: source of randomness (`Generators`); None = torch's global one.

    Returns:
        [B] int64 token ids.
    """
    return multinomial(torch.softmax(logits.float(), dim=-1), generator)


def greedy(logits: Tensor) -> Tensor:
    """The most likely token per row (T = 0); ties go to the lowest id.

    Args:
        logits: [B, V] float.

    Returns:
        [B] int64 token ids.
    """
    return logits.argmax(dim=-1)


@dataclass
class MirostatState:
    """Mirostat v2's running surprise bound, one per row.

    Attributes:
        mu: [B] float32 maximum surprise in bits; starts at 2 * tau.
    """

    mu: Tensor

    @classmethod
    def initial(cls, batch: int, tau: float, device: torch.device | str = "cpu") -> MirostatState:
        """The state before the first step: mu = 2 * tau for every row."""
        return cls(mu=torch.full((batch,), 2.0 * tau, dtype=torch.float32, device=device))


def surprise(logits: Tensor) -> Tensor:
    """Surprise in bits, -log2 p, of every token under softmax(logits).

    Args:
        logits: [B, V] float.

    Returns:
        [B, V] float32 (inf for removed tokens).
    """
    return -torch.log_softmax(logits.float(), dim=-1) / math.log(2.0)


def mirostat_sample(
    logits: Tensor,
    state: MirostatState,
    tau: float,
    eta: float,
    generator: Generators = None,
) -> Tensor:
    """Mirostat v2: sample among tokens whose surprise is at most mu, then steer mu towards tau.

    Tokens with `-log2 p <= mu` are kept (the most likely one always), one is sampled from the
    renormalised set, and `mu <- mu - eta * (surprise(sampled) - tau)` per row. The surprise of the
    sampled token is taken under the distribution before truncation, as in the paper's reference
    code, so the average observed surprise converges to tau.

    The state is explicit and updated here: `state.mu` is rebound to a new tensor (the old tensor is
    not written to).

    Args:
        logits: [B, V] float (after temperature and top-k/top-p).
        state: per-row mu, [B].
        tau: target surprise in bits, > 0.
        eta: learning rate, > 0.
        generator: source of randomness.

    Returns:
        [B] int64 token ids.
    """
    s = surprise(logits)  # [B, V]
    best = s.argmin(dim=-1, keepdim=True)
    keep = s <= state.mu.unsqueeze(-1)
    keep = keep.scatter(1, best, True)
    tokens = sample(logits.masked_fill(~keep, -math.inf), generator)
    observed = s.gather(1, tokens.unsqueeze(-1)).squeeze(-1)
    state.mu = state.mu - eta * (observed - tau)
    return tokens


def window_share(tokens: Tensor, history: Tensor, window: int) -> Tensor:
    """Share of the last `window` history entries equal to each row's token.

    The window is the K entries before the new token (the token itself is not counted) and the
    denominator is always K, as in VALL-E 2 (r = sum_{i=t-K}^{t-1} 1[c_i = c_t] / K): a short history
    cannot inflate the ratio. Empty entries never match.

    Args:
        tokens: [B] int64, the freshly sampled tokens.
        history: [B, T] int64, `EMPTY` for no token; the last column is the newest.
        window: K > 0.

    Returns:
        [B] float32 ratio in [0, 1].
    """
    recent = history[:, -window:]
    hits = (recent == tokens.unsqueeze(-1)) & (recent != EMPTY)
    return hits.sum(-1).to(torch.float32) / window


def repetition_aware(
    tokens: Tensor,
    full_logits: Tensor,
    history: Tensor,
    window: int,
    threshold: float,
    generator: Generators = None,
) -> Tensor:
    """Repetition Aware Sampling (VALL-E 2, docs/design.md, "Sampler pipeline", step 6).

    Rows whose sampled token's share of the last `window` history tokens exceeds `threshold`
    (strictly, r > t_r) are resampled from the full, untruncated distribution; the other rows keep
    their token. A replacement is drawn for every row and selected with `torch.where`, so the number
    of random draws, and hence seeded reproducibility, does not depend on the data.

    Args:
        tokens: [B] int64 tokens from the (truncated) sampler.
        full_logits: [B, V] logits after temperature, before top-k/top-p.
        history: [B, T] int64, `EMPTY` for no token; the newest last.
        window: K > 0.
        threshold: t_r in [0, 1].
        generator: source of randomness.

    Returns:
        [B] int64 tokens.
    """
    repetitive = window_share(tokens, history, window) > threshold
    resampled = sample(full_logits, generator)
    return torch.where(repetitive, resampled, tokens)
