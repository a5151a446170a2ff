"""The sampler suite: each processor against a hand-computed 5-token case, plus batch properties."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

import valle.sampling.processors as processors

NEG_INF = -math.inf


def rows(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def log_probs(*probs) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float32).log()


# --- repetition penalty ---------------------------------------------------------------------------


def test_repetition_penalty_hand_case_divides_positive_and_multiplies_negative():
    logits = rows([2.0, -1.0, 0.5, -2.0, 1.0])
    before = logits.clone()
    # newest last: token 1 at d=1, token 0 at d=2, token 1 again at d=3 (nearest wins), token 3 at d=4
    history = torch.tensor([[-1, 3, 1, 0, 1]])
    out = processors.repetition_penalty(logits, history, penalty=2.0, decay=0.5)
    # p_1 = 2, p_2 = 1 + 0.5 = 1.5, p_4 = 1 + 0.5**3 = 1.125
    assert_close(out, rows([2.0 / 1.5, -1.0 * 2.0, 0.5, -2.0 * 1.125, 1.0]))
    assert torch.equal(logits, before)  # inputs are never mutated


def test_repetition_penalty_lowers_a_negative_logit_unlike_the_seed():
    out = processors.repetition_penalty(rows([-1.0, 0.0, 0.0, 0.0, 0.0]), torch.tensor([[0]]), 1.5)
    assert out[0, 0] == -1.5


def test_repetition_penalty_ignores_padding_wherever_it_sits():
    logits = rows([2.0, -1.0, 0.5, -2.0, 1.0])
    left = processors.repetition_penalty(logits, torch.tensor([[-1, -1, 3, 1, 0, 1]]), 2.0, 0.5)
    right = processors.repetition_penalty(logits, torch.tensor([[3, 1, 0, 1, -1, -1]]), 2.0, 0.5)
    assert_close(left, right)
    assert_close(processors.repetition_penalty(logits, torch.full((1, 3), -1), 2.0, 0.5), logits)


def test_repetition_penalty_decay_zero_penalises_only_the_previous_token():
    out = processors.repetition_penalty(rows([1.0, 1.0, 1.0, 1.0, 1.0]), torch.tensor([[0, 2]]), 2.0, 0.0)
    assert_close(out, rows([1.0, 1.0, 0.5, 1.0, 1.0]))


# --- length penalty -------------------------------------------------------------------------------


def test_length_penalty_hand_case_moves_only_the_stop_logit():
    logits = rows([0.0, 0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0, 1.0])
    out = processors.length_penalty(logits, stop_token=4, steps=torch.tensor([0, 3]), alpha=0.5)
    assert_close(out, rows([0.0, 0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0, 1.0 - 0.5 * math.log(4)]))
    shorter = processors.length_penalty(logits, stop_token=4, steps=3, alpha=-0.5)
    assert_close(shorter[:, 4], torch.full((2,), 1.0 + 0.5 * math.log(4)))


# --- temperature ----------------------------------------------------------------------------------


def test_temperature_hand_case():
    assert_close(
        processors.temperature(rows([1.0, 2.0, 3.0, 4.0, NEG_INF]), 2.0), rows([0.5, 1.0, 1.5, 2.0, NEG_INF])
    )
    with pytest.raises(ValueError, match="greedy"):
        processors.temperature(rows([1.0, 2.0, 3.0, 4.0, 5.0]), 0.0)


def test_dynamic_temperature_hand_case_counts_only_possible_tokens():
    # p = (1/2, 1/4, 1/4) over 3 possible tokens: H = 1.5 ln 2, V = 3, T = 0.5 + (1.5 - 0.5) H / ln 3
    peaked = log_probs([0.5, 0.25, 0.25, 0.0, 0.0])
    uniform = rows([0.3, 0.3, 0.3, 0.3, 0.3])
    one = rows([2.0, NEG_INF, NEG_INF, NEG_INF, NEG_INF])
    out = processors.dynamic_temperature(torch.cat([peaked, uniform, one]), min_t=0.5, max_t=1.5)
    t = 0.5 + 1.5 * math.log(2) / math.log(3)
    assert_close(out[0], peaked[0] / t)
    assert_close(out[1], uniform[0] / 1.5)  # maximal entropy: max_t
    assert_close(out[2], one[0] / 0.5)  # a certain row: min_t


def test_entropy_ignores_removed_tokens():
    assert_close(processors.entropy(log_probs([0.5, 0.5, 0.0, 0.0, 0.0])), torch.tensor([math.log(2)]))


# --- top-k / top-p --------------------------------------------------------------------------------


def test_top_k_hand_case_keeps_ties_at_the_boundary():
    logits = rows([1.0, 5.0, 3.0, 4.0, 2.0])
    assert_close(processors.top_k(logits, 2), rows([NEG_INF, 5.0, NEG_INF, 4.0, NEG_INF]))
    assert_close(processors.top_k(logits, 0), logits)
    tied = rows([1.0, 5.0, 3.0, 5.0, 2.0])
    assert_close(processors.top_k(tied, 1), rows([NEG_INF, 5.0, NEG_INF, 5.0, NEG_INF]))


@pytest.mark.parametrize(
    ("p", "kept"), [(0.3, [1]), (0.6, [1, 3]), (0.7, [1, 3, 2]), (1e-9, [1]), (1.0, [0, 1, 2, 3, 4])]
)
def test_top_p_hand_case_keeps_the_smallest_set_reaching_p(p, kept):
    # sorted: 0.4 (id 1), 0.25 (id 3), 0.2 (id 2), 0.1 (id 0), 0.05 (id 4); mass before: 0 .4 .65 .85 .95
    logits = log_probs([0.1, 0.4, 0.2, 0.25, 0.05])
    out = processors.top_p(logits, p)
    assert sorted(torch.isfinite(out[0]).nonzero().flatten().tolist()) == sorted(kept)
    assert_close(out[0, kept], logits[0, kept])


def test_top_p_breaks_ties_by_lowest_id():
    assert torch.isfinite(processors.top_p(torch.zeros(1, 5), 0.5)).tolist() == [
        [True, True, True, False, False]
    ]


def test_top_p_mass_reaches_p_with_a_minimal_set():
    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(0)) * 2
    for p in (0.05, 0.5, 0.9):
        out = processors.top_p(logits, p)
        probs = torch.softmax(logits, -1)
        kept = torch.isfinite(out)
        mass = (probs * kept).sum(-1)
        smallest_kept = torch.where(kept, probs, torch.ones_like(probs)).min(-1).values
        assert (kept.sum(-1) >= 1).all()
        assert (mass >= p - 1e-6).all()
        assert (mass - smallest_kept < p).all()  # dropping any kept token falls short of p


# --- sample / greedy ------------------------------------------------------------------------------


def test_greedy_hand_case_takes_the_lowest_id_on_ties():
    assert processors.greedy(rows([1.0, 5.0, 3.0, 5.0, 2.0], [9.0, 0.0, 0.0, 0.0, 0.0])).tolist() == [1, 0]


def test_sample_from_a_row_with_one_possible_token():
    logits = rows([NEG_INF, NEG_INF, 3.0, NEG_INF, NEG_INF], [NEG_INF, NEG_INF, NEG_INF, NEG_INF, -50.0])
    assert processors.sample(logits).tolist() == [2, 4]


def test_sample_frequencies_match_the_softmax():
    logits = log_probs([0.1, 0.2, 0.3, 0.4, 0.0]).expand(40_000, 5)
    tokens = processors.sample(logits, torch.Generator().manual_seed(0))
    freq = torch.bincount(tokens, minlength=5).float() / len(tokens)
    assert_close(freq, torch.tensor([0.1, 0.2, 0.3, 0.4, 0.0]), atol=0.01, rtol=0)


def test_seeded_sampling_is_reproducible():
    logits = torch.randn(8, 5, generator=torch.Generator().manual_seed(1))
    a = processors.sample(logits, torch.Generator().manual_seed(7))
    b = processors.sample(logits, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


# --- mirostat v2 ----------------------------------------------------------------------------------


def test_mirostat_hand_case_truncates_by_surprise_and_updates_mu_per_row():
    # surprises in bits: 1, 2, 3, 4, 4; mu = 2 tau = 2.5 keeps ids 0 and 1 (renormalised 2/3, 1/3)
    logits = log_probs([0.5, 0.25, 0.125, 0.0625, 0.0625]).expand(4000, 5)
    state = processors.MirostatState.initial(4000, tau=1.25)
    tokens = processors.mirostat_sample(
        logits, state, tau=1.25, eta=0.1, generator=torch.Generator().manual_seed(0)
    )
    assert set(tokens.tolist()) == {0, 1}
    assert abs((tokens == 0).float().mean().item() - 2 / 3) < 0.03
    expected_mu = torch.where(tokens == 0, 2.5 - 0.1 * (1 - 1.25), 2.5 - 0.1 * (2 - 1.25))
    assert_close(state.mu, expected_mu)


def test_mirostat_keeps_at_least_the_most_likely_token():
    logits = log_probs([0.5, 0.25, 0.125, 0.0625, 0.0625])
    state = processors.MirostatState(mu=torch.tensor([0.5]))
    assert processors.mirostat_sample(logits, state, tau=1.0, eta=0.1).tolist() == [0]
    assert_close(state.mu, torch.tensor([0.5 - 0.1 * (1.0 - 1.0)]))


def test_mirostat_average_surprise_tracks_tau():
    probs = 1.0 / torch.arange(1, 101, dtype=torch.float32)  # Zipf over 100 tokens: 2.4 to 9 bits
    logits = (probs / probs.sum()).log().expand(16, 100)
    surprise = processors.surprise(logits)
    state, g, tau = processors.MirostatState.initial(16, tau=4.0), torch.Generator().manual_seed(0), 4.0
    observed = []
    for _ in range(150):
        tokens = processors.mirostat_sample(logits, state, tau=tau, eta=0.2, generator=g)
        observed.append(surprise.gather(1, tokens[:, None]))
    # mu integrates the error, so the mean error is (mu_0 - mu_T) / (eta * steps): bounded mu => -> 0
    assert abs(torch.cat(observed).mean().item() - tau) < 0.15


# --- Repetition Aware Sampling --------------------------------------------------------------------


def test_ras_resamples_only_rows_whose_window_share_exceeds_the_threshold():
    # K=4 looks at the newest 4 entries: token 2 has share 1/4, 2/4 and 1/4 (the older 2s fall outside)
    history = torch.tensor([[2, 2, 1, 0, 3], [0, 2, 1, 2, 3], [2, 2, 0, 1, 3]])
    tokens = torch.tensor([2, 2, 2])
    full = rows(*[[NEG_INF, NEG_INF, NEG_INF, NEG_INF, 0.0]] * 3)  # a resample can only give id 4
    assert_close(processors.window_share(tokens, history, 4), torch.tensor([0.25, 0.5, 0.25]))
    out = processors.repetition_aware(tokens, full, history, window=4, threshold=0.25)
    assert out.tolist() == [2, 4, 2]
    assert processors.repetition_aware(tokens, full, history, window=4, threshold=0.2).tolist() == [4, 4, 4]


def test_ras_window_share_divides_by_k_and_skips_padding():
    history = torch.tensor([[-1, -1, -1, 2]])
    assert_close(processors.window_share(torch.tensor([2]), history, 4), torch.tensor([0.25]))
    assert_close(processors.window_share(torch.tensor([-1]), history, 4), torch.tensor([0.0]))


# --- every processor: rows are independent --------------------------------------------------------

PROCESSORS = {
    "repetition_penalty": lambda x, h: processors.repetition_penalty(x, h, 1.7, 0.8),
    "length_penalty": lambda x, h: processors.length_penalty(x, 4, torch.tensor([3, 7])[: len(x)], 0.7),
    "temperature": lambda x, h: processors.temperature(x, 0.7),
    "dynamic_temperature": lambda x, h: processors.dynamic_temperature(x, 0.3, 1.2),
    "top_k": lambda x, h: processors.top_k(x, 2),
    "top_p": lambda x, h: processors.top_p(x, 0.6),
}


@pytest.mark.parametrize("name", PROCESSORS)
def test_each_row_is_processed_independently(name):
    fn = PROCESSORS[name]
    g = torch.Generator().manual_seed(3)
    logits, history = torch.randn(2, 5, generator=g), torch.tensor([[0, 1, 1], [3, 3, 2]])
    together = fn(logits, history)
    changed = logits.clone()
    changed[0] = torch.tensor([9.0, -9.0, 0.0, 3.0, NEG_INF])
    assert_close(fn(changed, torch.tensor([[4, 4, 4], [3, 3, 2]]))[1], together[1])
    # row 1 alone (the length penalty's steps index with it) equals row 1 in the batch
    alone = (
        fn(logits[1:], history[1:])
        if name != "length_penalty"
        else processors.length_penalty(logits[1:], 4, torch.tensor([7]), 0.7)
    )
    assert_close(alone[0], together[1])
