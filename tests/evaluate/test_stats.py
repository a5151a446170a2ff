from __future__ import annotations

from statistics import fmean

import pytest

from valle.evaluate.edits import EditCount, char_edits, error_rate, word_edits
from valle.evaluate.stats import NOT_MEASURED, bootstrap_ci, estimate, mean_estimate
from valle.evaluate.text import cer, wer


def test_interval_contains_the_point_estimate_and_narrows_with_n():
    small = [float(i % 5) for i in range(20)]
    large = [float(i % 5) for i in range(500)]
    widths = []
    for values in (small, large):
        low, high = bootstrap_ci(values, fmean)
        assert low < fmean(values) < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 3  # ~ 1/sqrt(n): sqrt(25) = 5 times narrower


def test_interval_is_reproducible_and_depends_on_the_seed():
    values = [float(i * 37 % 11) + 0.1 * i for i in range(15)]
    assert bootstrap_ci(values, fmean) == bootstrap_ci(values, fmean)
    assert bootstrap_ci(values, fmean, seed=1) != bootstrap_ci(values, fmean, seed=0)


def test_one_item_has_no_spread_and_no_items_are_refused():
    assert bootstrap_ci([0.7], fmean) == (0.7, 0.7)
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_ci([], fmean)
    assert estimate([], fmean) == NOT_MEASURED
    assert mean_estimate([None, 2.0, None, 4.0]).n == 2 and mean_estimate([None, 2.0, 4.0]).value == 3.0


def test_error_rate_interval_resamples_items_and_recomputes_the_ratio_of_sums():
    # a long clean item and a short wrong one: the corpus rate is 10 / 110, not the mean of 0 and 1
    counts = [EditCount(0, 100), EditCount(10, 10)]
    figure = estimate(counts, error_rate)
    assert figure.value == pytest.approx(10 / 110) and figure.n == 2
    # each resample is both-clean (0), both-wrong (1) or mixed (10 / 110)
    assert figure.low == 0.0 and figure.high == 1.0


def test_per_item_counts_give_the_same_corpus_rates_as_wer_and_cer():
    refs, hyps = ["the cat sat", "on the mat", "a b"], ["the cat sat down", "on mat", ""]
    assert error_rate([word_edits(r, h) for r, h in zip(refs, hyps, strict=True)]) == pytest.approx(
        wer(refs, hyps)
    )
    assert error_rate([char_edits(r, h) for r, h in zip(refs, hyps, strict=True)]) == pytest.approx(
        cer(refs, hyps)
    )
