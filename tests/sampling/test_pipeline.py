"""The sampler pipeline (order, modes, config) and the beam-search helpers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError
from torch.testing import assert_close

from valle.sampling import ArSampler, NarSampler, SamplerConfig, make_generator
from valle.sampling.beam import beam_step, best_beam, initial_scores

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
NEG_INF = -math.inf
STOP = 4


def log_probs(*probs) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float32).log()


def draw(sampler, logits, history, n=2000, seed=0, step=1, **kw) -> set[int]:
    """The set of tokens drawn over n identical rows (at step 1: at step 0 the stop token is masked)."""
    tokens = sampler(logits.expand(n, -1), history.expand(n, -1), step, make_generator(seed), **kw)
    return set(tokens.tolist())


# --- order ----------------------------------------------------------------------------------------


def test_repetition_penalty_comes_before_top_k():
    # penalised first, token 0 (3.0 -> 1.5) falls behind token 1 (2.5): top-1 keeps token 1
    sampler = ArSampler(SamplerConfig(repetition_penalty=2.0, top_k=1), stop_token=STOP)
    logits = torch.tensor([[3.0, 2.5, 0.0, 0.0, 0.0]])
    assert draw(sampler, logits, torch.tensor([[0]])) == {1}


def test_temperature_comes_before_top_p():
    # At T = 100 the distribution is near uniform, so top-p 0.5 keeps 3 tokens; applied to the
    # untempered (0.5, 0.3, 0.1, ...) it would keep token 0 alone.
    sampler = ArSampler(SamplerConfig(ar_temperature=100.0, top_p=0.5), stop_token=STOP)
    logits = log_probs([0.5, 0.3, 0.1, 0.05, 0.05])
    assert draw(sampler, logits, torch.full((1, 1), -1)) == {0, 1, 2}


def test_length_penalty_comes_before_temperature():
    # alpha * log(3 + 1) = 1 moves the stop logit 1 -> 0, and T = 0.5 then doubles the gap to token 0:
    # (1, 0) / 0.5 gives P(stop) = 1 / (1 + e^2) ~ 0.12, where the other order, (2, 2) - (0, 1), gives 0.27
    cfg = SamplerConfig(ar_temperature=0.5, length_penalty=1 / math.log(4))
    logits = torch.tensor([[1.0, NEG_INF, NEG_INF, NEG_INF, 1.0]]).expand(4000, -1)
    tokens = ArSampler(cfg, stop_token=STOP)(logits, torch.full((4000, 1), -1), 3, make_generator(0))
    assert abs((tokens == STOP).float().mean().item() - 1 / (1 + math.e**2)) < 0.03


def test_ras_resamples_from_the_untruncated_distribution():
    # top-k 1 always samples token 0; a history full of 0 triggers RAS, which samples 0 or 1
    sampler = ArSampler(SamplerConfig(top_k=1, ras_window=4, ras_threshold=0.5), stop_token=STOP)
    logits = torch.tensor([[1.0, 0.9, NEG_INF, NEG_INF, NEG_INF]])
    assert draw(sampler, logits, torch.tensor([[0, 0, 0, 0]])) == {0, 1}
    assert draw(sampler, logits, torch.tensor([[0, 0, 3, 3]])) == {0}


# --- modes ----------------------------------------------------------------------------------------


def test_greedy_ar_takes_the_argmax_after_the_penalties():
    sampler = ArSampler(SamplerConfig(ar_temperature=0.0, repetition_penalty=4.0), stop_token=STOP)
    tokens = sampler(torch.tensor([[3.0, 2.0, 0.0, 0.0, 0.0]] * 2), torch.tensor([[1], [0]]), 0)
    assert tokens.tolist() == [0, 1]


def test_seeded_ar_sampling_is_reproducible():
    sampler = ArSampler(SamplerConfig(top_p=0.9, ras_window=3), stop_token=STOP)
    logits, history = torch.randn(16, 5), torch.randint(0, 5, (16, 6))
    first = sampler(logits, history, 3, make_generator(11))
    assert torch.equal(first, sampler(logits, history, 3, make_generator(11)))
    assert make_generator(None) is None


def test_mirostat_through_the_sampler_needs_and_updates_its_state():
    sampler = ArSampler(SamplerConfig(mirostat_tau=1.25, mirostat_eta=0.1), stop_token=STOP)
    logits = log_probs([0.5, 0.25, 0.125, 0.0625, 0.0625]).expand(3, 5)
    with pytest.raises(ValueError, match="new_state"):
        sampler(logits, torch.full((3, 1), -1), 0)
    state = sampler.new_state(3)
    assert_close(state.mirostat.mu, torch.full((3,), 2.5))
    tokens = sampler(logits, torch.full((3, 1), -1), 0, make_generator(0), state=state)
    assert set(tokens.tolist()) <= {0, 1}
    assert not torch.equal(state.mirostat.mu, torch.full((3,), 2.5))


def test_nar_sampler_is_greedy_by_default_and_keeps_the_leading_shape():
    logits = torch.randn(2, 7, 5)
    assert torch.equal(NarSampler(SamplerConfig())(logits), logits.argmax(-1))
    sampled = NarSampler(SamplerConfig(nar_temperature=0.7, top_k=2))(logits, generator=make_generator(0))
    assert sampled.shape == (2, 7)
    assert (logits.topk(2, -1).indices == sampled[..., None]).any(-1).all()


def test_ar_step_limit_defaults_to_frames_per_phoneme():
    assert SamplerConfig().ar_step_limit(12) == 240
    assert SamplerConfig(max_ar_steps=100).ar_step_limit(12) == 100
    assert SamplerConfig(max_ar_steps_per_phoneme=7.5).ar_step_limit(torch.tensor([2, 3])).tolist() == [
        15,
        23,
    ]


# --- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(ar_temperature=-0.1), "ar_temperature=-0.1 must be >= 0"),
        (dict(expected_codewords=-0.3), "expected_codewords=-0.3 must be >= 0"),
        (dict(nar_temperature=0.5, min_nar_temperature=0.9), r"min_nar_temperature=0.9 must lie in \[0"),
        (dict(ar_temperature=0.0, min_ar_temperature=0.0), "means greedy"),
        (dict(top_p=0.0), r"top_p=0.0 must lie in \(0, 1\]"),
        (dict(top_p=1.5), r"top_p=1.5 must lie in \(0, 1\]"),
        (dict(top_k=-1), "top_k=-1"),
        (dict(repetition_penalty=0.8), "repetition_penalty=0.8 must be >= 1"),
        (dict(repetition_penalty_decay=1.5), "repetition_penalty_decay"),
        (dict(beam_width=4, mirostat_tau=3.0), "cannot be combined with mirostat_tau=3.0"),
        (dict(beam_width=4, top_p=0.8, ras_window=10), "cannot be combined with ras_window=10, top_p=0.8"),
        (dict(beam_width=0), "beam_width=0"),
        (dict(ar_temperature=0.0, mirostat_tau=3.0), "mirostat samples"),
        (dict(ar_temperature=0.0, ras_window=10), "RAS resamples"),
        (dict(ras_threshold=1.5), "ras_threshold"),
        (dict(mirostat_tau=3.0, mirostat_eta=0.0), "eta > 0"),
        (dict(max_ar_steps=0), "max_ar_steps=0"),
        (dict(max_ar_context=0), "max_ar_context=0"),
    ],
)
def test_config_rejects_inconsistent_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplerConfig(**kwargs)


def compose_sampler(name: str, *overrides: str) -> SamplerConfig:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        node = compose(overrides=[f"+sampler={name}", *overrides]).sampler
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SamplerConfig), node))


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONFIGS / "sampler").glob("*.yaml")))
def test_every_sampler_config_composes_into_the_schema(name):
    cfg = compose_sampler(name)
    assert isinstance(cfg, SamplerConfig)
    assert set(OmegaConf.load(CONFIGS / "sampler" / "default.yaml")) == set(vars(SamplerConfig()))


def test_sampler_presets_set_what_they_promise():
    assert compose_sampler("greedy").ar_temperature == 0
    ras = compose_sampler("ras")
    assert (ras.top_p, ras.ras_window, ras.ras_threshold) == (0.8, 10, 0.1)
    assert compose_sampler("beam").beam_width == 4


def test_a_typo_key_fails_at_start_up():
    with pytest.raises(ConfigKeyError, match="top_pp"):
        OmegaConf.merge(OmegaConf.structured(SamplerConfig), {"top_pp": 0.9})
    with pytest.raises(ValueError, match="cannot be combined"):
        compose_sampler("beam", "sampler.top_p=0.9")


# --- beam search (V = 5, W = 2, stop = 4) ---------------------------------------------------------


def test_beam_search_hand_case():
    scores, finished = initial_scores(1, 2), torch.zeros(1, 2, dtype=torch.bool)
    lengths = torch.zeros(1, 2, dtype=torch.long)
    # step 1: only beam 0 is live, so both new beams extend it: tokens 0 (0.5) and 1 (0.2)
    same = log_probs([0.5, 0.2, 0.1, 0.1, 0.1])
    step = beam_step(torch.stack([same, same], 1), scores, finished, STOP, lengths)
    assert step.tokens.tolist() == [[0, 1]] and step.parents.tolist() == [[0, 0]]
    assert_close(step.scores, torch.tensor([[0.5, 0.2]]).log())
    # step 2: beam 0 stops (0.5 * 0.6 = 0.3), beam 1 continues with token 0 (0.2 * 0.9 = 0.18)
    lp = torch.stack([log_probs([0.1, 0.1, 0.1, 0.1, 0.6]), log_probs([0.9, 0.025, 0.025, 0.025, 0.025])], 1)
    step = beam_step(lp, step.scores, step.finished, STOP, step.lengths)
    assert step.tokens.tolist() == [[STOP, 0]] and step.parents.tolist() == [[0, 1]]
    assert step.finished.tolist() == [[True, False]]
    assert_close(step.scores, torch.tensor([[0.3, 0.18]]).log())
    # step 3: the finished beam carries over unchanged (its log-probs are ignored); beam 1 goes on
    lp = torch.stack([log_probs([0.9, 0.025, 0.025, 0.025, 0.025]), log_probs([0.5, 0.1, 0.1, 0.1, 0.2])], 1)
    step = beam_step(lp, step.scores, step.finished, STOP, step.lengths)
    assert step.tokens.tolist() == [[STOP, 0]] and step.parents.tolist() == [[0, 1]]
    assert step.finished.tolist() == [[True, False]]
    assert_close(step.scores, torch.tensor([[0.3, 0.09]]).log())
    assert step.lengths.tolist() == [[2, 3]]
    assert best_beam(step.scores, step.lengths, step.finished).tolist() == [0]


def test_best_beam_normalises_by_length_and_prefers_finished_beams():
    scores = torch.tensor([[-3.0, -4.0], [-1.0, -10.0], [-1.0, -10.0]])
    lengths = torch.tensor([[2, 4], [1, 10], [1, 10]])
    finished = torch.tensor([[True, True], [False, True], [False, False]])
    assert best_beam(scores, lengths, finished).tolist() == [1, 1, 0]


def test_beam_rows_are_independent_and_the_sampler_feeds_log_probs():
    sampler = ArSampler(SamplerConfig(beam_width=2, length_penalty=1.0), stop_token=STOP)
    with pytest.raises(ValueError, match="beam_log_probs"):
        sampler(torch.zeros(2, 5), torch.full((2, 1), -1), 0)
    lp = sampler.beam_log_probs(torch.randn(4, 5), torch.full((4, 1), -1), 3).reshape(2, 2, 5)
    assert_close(lp.exp().sum(-1), torch.ones(2, 2))
    scores, finished = initial_scores(2, 2), torch.zeros(2, 2, dtype=torch.bool)
    both = beam_step(lp, scores, finished, STOP)
    alone = beam_step(lp[1:], scores[1:], finished[1:], STOP)
    assert torch.equal(both.tokens[1], alone.tokens[0]) and torch.equal(both.parents[1], alone.parents[0])


def test_the_stop_token_is_never_the_first_output():
    """An utterance has at least one frame: empty audio is neither decodable nor scorable."""
    import torch

    from valle.sampling.pipeline import ArSampler, SamplerConfig

    logits = torch.zeros(3, 9)
    logits[:, 8] = 50.0  # stop (id 8) is by far the likeliest
    for config in (SamplerConfig(ar_temperature=0.0), SamplerConfig(ar_temperature=1.0, top_p=0.9, seed=0)):
        sampler = ArSampler(config, stop_token=8)
        empty = torch.empty(3, 0, dtype=torch.long)
        assert (sampler(logits, empty, 0) != 8).all()
        assert (sampler(logits, torch.zeros(3, 1, dtype=torch.long), 1) == 8).all()
        per_row = sampler(logits, torch.zeros(3, 1, dtype=torch.long), torch.tensor([0, 1, 1]))
        assert per_row.tolist()[1:] == [8, 8] and per_row[0] != 8
