"""The guided-attention loss and the text-dependence gap (valle.training.alignment)."""

import re

import pytest
import torch

from valle.data.batching import collate
from valle.errors import ConfigError
from valle.models.backbones.transformer import TransformerBackbone
from valle.training.alignment import (
    DurationPrior,
    GuidedAttentionConfig,
    audio_progress,
    guided_attention_loss,
    rolled_text,
)

T, TP, N = 6, 4, 12  # text, prompt and response lengths of one row


def lengths(prefix: bool):
    return (torch.tensor([T]), torch.tensor([TP]), torch.tensor([N]), torch.tensor([prefix]))


def size() -> int:
    return T + 1 + TP + 1 + N + 1  # text ; sep ; prompt ; sep ; start, codes


def attention_onto(targets: dict[int, int], n_heads: int = 2) -> torch.Tensor:
    """[1, H, S, S] attention where query q puts all its mass on key targets[q] (others on key 0)."""
    s = size()
    a = torch.zeros(1, n_heads, s, s)
    a[..., 0] = 1.0
    for q, k in targets.items():
        a[..., q, :] = 0.0
        a[..., q, k] = 1.0
    return a


def diagonal_targets(prefix: bool) -> dict[int, int]:
    progress, valid = audio_progress(*lengths(prefix), size())
    return {q: min(int(progress[0, q] * T), T - 1) for q in range(size()) if valid[0, q]}


def test_progress_runs_from_0_to_1_over_the_response_and_covers_the_prompt_only_in_prefix_rows():
    progress, valid = audio_progress(*lengths(False), size())
    start = T + TP + 2
    assert valid[0].nonzero().squeeze(1).tolist() == list(range(start, start + N + 1))
    assert progress[0, start] == 0 and progress[0, start + N] == 1
    progress, valid = audio_progress(*lengths(True), size())
    assert valid[0, T + 1] and progress[0, T + 1] == 0  # the prompt's first frame starts the text
    assert torch.isclose(progress[0, start], torch.tensor(TP / (TP + N)))
    assert not valid[0, : T + 1].any()  # text and separator positions say nothing


def test_diagonal_attention_scores_far_lower_than_attention_elsewhere():
    for prefix in (False, True):
        args = (1, 0.2, *lengths(prefix))
        diagonal = guided_attention_loss([attention_onto(diagonal_targets(prefix))], *args)
        reversed_ = guided_attention_loss(
            [attention_onto({q: T - 1 - k for q, k in diagonal_targets(prefix).items()})], *args
        )
        on_audio = guided_attention_loss([attention_onto({q: q for q in diagonal_targets(prefix)})], *args)
        assert diagonal < 0.2 < reversed_ and on_audio > 0.99  # attending to audio counts as off the text


def test_only_the_guided_heads_count():
    a = attention_onto(diagonal_targets(False))
    a[:, 1] = attention_onto({q: q for q in diagonal_targets(False)})[:, 1]  # head 1 looks at the audio
    args = (0.2, *lengths(False))
    assert guided_attention_loss([a], 1, *args) < 0.2 < guided_attention_loss([a], 2, *args)


def test_backbone_returns_the_probabilities_it_attends_with():
    torch.manual_seed(0)
    backbone = TransformerBackbone(d_model=32, n_heads=4, n_layers=3, dropout=0.0).eval()
    x, lens = torch.randn(2, 9, 32), torch.tensor([9, 6])
    plain = backbone(x, lens, causal=True)
    out = backbone(x, lens, causal=True, attention_layers=[0, 2])
    assert len(out.attention) == 2 and out.attention[0].shape == (2, 4, 9, 9)
    torch.testing.assert_close(out.hidden, plain.hidden, atol=1e-5, rtol=1e-4)
    probs = out.attention[1]
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4, 9))
    assert probs[0].triu(1).abs().max() == 0  # causal
    assert probs[1, :, :, 6:].abs().max() == 0  # no padding key is attended


def test_gradient_moves_a_guided_head_toward_the_diagonal():
    torch.manual_seed(0)
    logits = torch.zeros(1, 1, size(), size(), requires_grad=True)
    causal = torch.ones(size(), size(), dtype=torch.bool).tril()
    optimizer = torch.optim.SGD([logits], lr=50.0)
    losses = []
    for _ in range(30):
        probs = logits.masked_fill(~causal, float("-inf")).softmax(-1)
        loss = guided_attention_loss([probs], 1, 0.2, *lengths(False))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_rolled_text_gives_each_row_another_rows_text_and_prefix_rows_are_found():
    items = [
        {
            "key": k,
            "prompt_key": p,
            "speaker": "s",
            "language": "en",
            "text": torch.tensor(text),
            "prompt": torch.zeros(2, 3, dtype=torch.long),
            "codes": torch.zeros(2, 4, dtype=torch.long),
        }
        for k, p, text in (("a", "a", [1, 2]), ("b", "c", [3, 4, 5]))
    ]
    batch = collate(items, 0)
    assert batch.cond.text.tolist() == [[1, 2, 0], [3, 4, 5]]
    rolled = rolled_text(batch).cond
    assert rolled.text.tolist() == [[3, 4, 5], [1, 2, 0]] and rolled.text_lengths.tolist() == [3, 2]
    assert batch.cond.continues is not None
    assert batch.cond.continues.tolist() == [True, False]  # prefix prompts are found


@pytest.mark.parametrize(
    "settings, field",
    [
        ({"layers": [3]}, "layers=[3]"),
        ({"heads": 5}, "heads=5"),
        ({"sigma": 0.0}, "sigma=0.0"),
        ({"prior": "mfa"}, "prior='mfa'"),
    ],
)
def test_a_guided_attention_setting_the_model_cannot_take_names_the_field(settings, field):
    with pytest.raises(ConfigError, match=f"training.guided_attention.{re.escape(field)}"):
        GuidedAttentionConfig(weight=1.0, **settings).check(n_layers=3, n_heads=4)
    GuidedAttentionConfig(weight=0.0, **settings).check(n_layers=3, n_heads=4)  # off: nothing to check


def test_duration_prior_learns_symbol_lengths_from_utterance_lengths_and_starts_linear():
    """Symbol 1 lasts 2 frames, 2 lasts 8, 3 (a pause) 12: only whole-utterance lengths are shown."""
    prior = DurationPrior(n_symbols=5)
    text, text_lengths = torch.tensor([[1, 2, 1, 3, 0]]), torch.tensor([4])
    linear = (torch.arange(4) + 0.5) / 4
    assert torch.allclose(prior.centres(text, text_lengths, 6)[0, :4], linear)  # nothing seen yet: linear
    generator = torch.Generator().manual_seed(0)
    truth = torch.tensor([0.0, 2.0, 8.0, 12.0, 0.0])
    for _ in range(50):
        batch = torch.randint(1, 4, (16, 7), generator=generator)
        lengths_ = torch.randint(3, 8, (16,), generator=generator)
        valid = torch.arange(7)[None, :] < lengths_[:, None]
        frames = (truth[batch] * valid).sum(1) + torch.randn(16, generator=generator)  # noisy totals
        prior.update(batch * valid, lengths_, frames.round())
    assert torch.allclose(prior.durations()[1:4], truth[1:4], atol=0.3)
    centres = prior.centres(text, text_lengths, 6)[0]
    expected = torch.tensor([1.0, 6.0, 11.0, 18.0]) / 24  # middles of 2, 8, 2, 12 frames of 24
    assert torch.allclose(centres[:4], expected, atol=0.02) and (centres[4:] == 0).all()


def test_duration_prior_statistics_travel_in_the_state_dict():
    prior = DurationPrior(n_symbols=4)
    prior.update(torch.tensor([[1, 2, 3]]), torch.tensor([3]), torch.tensor([30]))
    restored = DurationPrior(n_symbols=4)
    restored.load_state_dict(prior.state_dict())
    assert torch.equal(restored.durations(), prior.durations())
