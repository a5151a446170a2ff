"""Uncertainty of a table figure: a 95 % percentile-bootstrap interval over the items it was computed from.

Items are resampled with replacement and the statistic recomputed on each resample, so a corpus-level
ratio (WER: total edits / total reference words) stays a ratio of sums on every resample rather than
becoming a mean of per-item rates. The seed is fixed: the same scores always give the same interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import TypeVar

import numpy as np

T = TypeVar("T")

N_RESAMPLES = 1000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A figure with its n and interval; all None (n = 0) when the column was not measured."""

    value: float | None
    low: float | None
    high: float | None
    n: int


NOT_MEASURED = Estimate(None, None, None, 0)


def bootstrap_ci(
    items: Sequence[T],
    statistic: Callable[[Sequence[T]], float],
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(items)`.

    Args:
        items: the per-item observations (numbers, edit counts, ...); at least one.
        statistic: items → the figure, e.g. `statistics.fmean` or a ratio of sums.
        n_resamples: how many resamples of len(items) items, drawn with replacement.
        seed: of the resampling generator.
        confidence: the interval's coverage, 0.95 for a 95 % interval.

    Returns:
        (low, high). One item gives (value, value): a single observation says nothing of its spread.

    Raises:
        ValueError: no items.
    """
    if not items:
        raise ValueError("bootstrap_ci needs at least one item")
    indices = np.random.default_rng(seed).integers(0, len(items), size=(n_resamples, len(items)))
    values = np.array([statistic([items[i] for i in row]) for row in indices], dtype=np.float64)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def estimate(
    items: Sequence[T],
    statistic: Callable[[Sequence[T]], float],
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> Estimate:
    """`statistic(items)` with its bootstrap interval and n; `NOT_MEASURED` for no items."""
    if not items:
        return NOT_MEASURED
    low, high = bootstrap_ci(items, statistic, n_resamples, seed)
    return Estimate(float(statistic(items)), low, high, len(items))


def mean_estimate(values: Sequence[float | None], n_resamples: int = N_RESAMPLES, seed: int = 0) -> Estimate:
    """The mean of the measured values (None = not measured for that item), with its interval."""
    return estimate([v for v in values if v is not None], fmean, n_resamples, seed)
