"""Training and decoding lay out the same AR sequence: teacher-forced logits agree step by step."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from valle.data.batching import collate
from valle.models.config import BackboneConfig, ValleConfig
from valle.models.sequence import IGNORE
from valle.models.valle import Valle, _rows
from valle.sampling.ar import DecodeLimits, _start
from valle.utils.batch import Batch


def random_batch(levels: int = 3, codebook: int = 16, n_text: int = 20, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    items = []
    for i, (n, tp, t) in enumerate([(5, 3, 7), (8, 4, 2), (3, 6, 5)]):
        # row 1 is a continuation: its prompt is cut from its own utterance
        items.append(
            {
                "key": f"k{i}",
                "prompt_key": f"k{i}" if i == 1 else f"p{i}",
                "speaker": "s",
                "language": "en",
                "text": torch.randint(1, n_text, (n,), generator=g),
                "prompt": torch.randint(0, codebook, (levels, tp), generator=g),
                "codes": torch.randint(0, codebook, (levels, t), generator=g),
                # which text id each frame says: forward only, as an alignment reads (row 1 starts late)
                "frame_symbols": torch.randint(int(i == 1), n, (t,), generator=g).sort().values,
                "aligned": i != 2,
            }
        )
    return collate(items, 0)


@pytest.mark.parametrize(
    "config",
    [
        ValleConfig.tiny(),
        ValleConfig.tiny(prefix_lm=True),
        ValleConfig.tiny(
            shared=False,
            backbone=BackboneConfig("retnet", 0.0),
            nar_backbone=BackboneConfig("transformer", 0.0),
        ),
        ValleConfig.tiny(segment_positions=4.0),
        ValleConfig.tiny(monotonic_alignment=True),
    ],
    ids=["transformer", "transformer-prefixlm", "retnet", "segment-positions", "monotonic-alignment"],
)
def test_training_and_decoding_build_the_same_ar_sequence(config):
    torch.manual_seed(0)
    model = Valle(config.with_data(20, 3, 16)).eval()
    batch = random_batch()
    with torch.no_grad():
        [out] = model(batch, torch.zeros(3, dtype=torch.long)).levels  # [sum(T + 1), V + 1] in row order
        assert batch.cond.continuing.tolist() == [False, True, False]
        cache, hidden = _start(model, batch.cond, DecodeLimits(max_steps=8))
        steps = [model.ar_logits(hidden)]
        assert batch.frame_symbols is not None
        for t in range(int(batch.code_lengths.max())):
            # the next frame's text id (the stop position says the last one, as in training)
            at = torch.where(
                t + 1 < batch.code_lengths,
                batch.frame_symbols[:, min(t + 1, batch.frame_symbols.shape[1] - 1)],
                batch.cond.text_lengths - 1,
            )
            said = batch.cond.text.gather(1, at[:, None])[:, 0] if config.monotonic_alignment else None
            hidden = model.ar.backbone.step(model.ar_step_input(batch.codes[:, 0, t], t, said), cache)
            steps.append(model.ar_logits(hidden[:, 0]))
    incremental = torch.stack(steps, dim=1)  # [B, T_max + 1, V + 1]
    expected = torch.cat([incremental[b, : int(n) + 1] for b, n in enumerate(batch.code_lengths)])
    torch.testing.assert_close(expected, out.logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("segment_positions", [0.0, 4.0])
def test_nar_logits_match_the_training_forward(segment_positions):
    torch.manual_seed(0)
    model = Valle(ValleConfig.tiny(segment_positions=segment_positions).with_data(20, 3, 16)).eval()
    batch = random_batch()
    with torch.no_grad():
        [out] = model(batch, torch.full((3,), 2)).levels
        logits = model.nar_logits(batch.cond, batch.codes, batch.code_lengths, level=2)
    expected = torch.cat([logits[b, : int(n)] for b, n in enumerate(batch.code_lengths)])
    torch.testing.assert_close(expected, out.logits[:, :16], atol=1e-5, rtol=1e-5)


def test_segment_positions_line_a_frame_up_with_the_text_it_says():
    """Text symbol t sits at t·r (shifted back by the prompt in a continuation row), the response's
    code j input at j + 1, the prompt just before the response: the diagonal is where they meet."""
    from valle.models.embeddings import sinusoidal
    from valle.models.sequence import build_ar

    torch.manual_seed(0)
    model = Valle(ValleConfig.tiny(segment_positions=2.0).with_data(20, 3, 16)).eval()
    batch = random_batch()
    emb = model.ar.embeddings
    with torch.no_grad():
        plain = build_ar(emb, batch.cond, batch.codes, batch.code_lengths, stop_token=16)
        continues = torch.tensor([False, True, False])
        cond = replace(batch.cond, continues=continues)
        placed = build_ar(emb, cond, batch.codes, batch.code_lengths, stop_token=16, segment_positions=2.0)
    added = placed.x - plain.x
    d = added.shape[-1]
    for b in range(3):
        n, tp = int(batch.cond.text_lengths[b]), int(batch.cond.prompt_lengths[b])
        shift = tp if continues[b] else 0
        expected_text = sinusoidal(torch.arange(n) * 2.0 - shift, d)
        torch.testing.assert_close(added[b, :n], expected_text, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            added[b, n + 1 : n + 1 + tp], sinusoidal(torch.arange(-tp, 0), d), atol=1e-5, rtol=1e-5
        )
        start = n + tp + 2
        torch.testing.assert_close(
            added[b, start : start + 3], sinusoidal(torch.arange(0, 3), d), atol=1e-5, rtol=1e-5
        )
        assert added[b, n].abs().max() == 0  # separators carry no position


def test_prefix_targets_are_the_next_text_id_and_the_next_prompt_code():
    from valle.models.sequence import IGNORE, prefix_targets

    batch = random_batch()
    text_t, prompt_t = prefix_targets(batch.cond, 30)
    n, tp = int(batch.cond.text_lengths[0]), int(batch.cond.prompt_lengths[0])
    assert (
        text_t[0, : n - 1].tolist() == batch.cond.text[0, 1:n].tolist()
        and (text_t[0, n - 1 :] == IGNORE).all()
    )
    assert prompt_t[0, n + 1 : n + tp].tolist() == batch.cond.prompt[0, 0, 1:tp].tolist()
    assert (prompt_t[0, : n + 1] == IGNORE).all() and (prompt_t[0, n + tp :] == IGNORE).all()


def test_ar_input_dropout_drops_whole_response_inputs_and_keeps_every_target():
    from valle.models.sequence import build_ar

    model = Valle(ValleConfig.tiny().with_data(20, 3, 16))
    batch = random_batch()
    args = (model.ar.embeddings, batch.cond, batch.codes, batch.code_lengths)
    with torch.no_grad():
        clean = build_ar(*args, stop_token=model.config.stop_token)
        torch.manual_seed(0)
        dropped = build_ar(*args, stop_token=model.config.stop_token, input_dropout=0.5)
    assert torch.equal(clean.targets, dropped.targets) and torch.equal(clean.lengths, dropped.lengths)
    changed = (clean.x != dropped.x).any(-1)  # [B, S]: positions whose input differs
    level = model.ar.embeddings.level.weight[0]  # what _add_level gives every AR position
    for b in range(3):
        response = slice(int(clean.lengths[b]) - int(batch.code_lengths[b]), int(clean.lengths[b]))
        assert not changed[b, : response.start].any()  # text, prompt and start vector untouched
        # a dropped input is its level embedding alone: the code's embedding is gone, not scaled
        for q in changed[b, response].nonzero().squeeze(1).tolist():
            assert torch.allclose(dropped.x[b, response.start + q], level)
    share = changed.sum() / batch.code_lengths.sum()
    assert 0.2 < share < 0.8


def test_ar_codes_without_their_lengths_are_refused():
    from valle.models.sequence import build_ar

    model = Valle(ValleConfig.tiny().with_data(20, 3, 16))
    batch = random_batch()
    with pytest.raises(ValueError, match="codes need their code_lengths"):
        build_ar(model.ar.embeddings, batch.cond, batch.codes)


def test_pointer_targets_say_how_far_the_next_frame_moves_and_how_long_each_symbol_lasts():
    from valle.models.sequence import frames_left

    said = torch.tensor([[2, 2, 2, 3, 3, 5, 5, 0], [4, 4, 6, 6, 6, 6, 0, 0]])
    lengths = torch.tensor([7, 6])
    assert frames_left(said, lengths).tolist() == [[2, 1, 0, 1, 0, 1, 0, 0], [1, 0, 3, 2, 1, 0, 0, 0]]
    batch = random_batch()
    model = Valle(ValleConfig.tiny(monotonic_alignment=True).with_data(20, 3, 16))
    packed = model.ar_packed(_rows(batch, torch.arange(batch.size)), 0.0)  # the training layout of every row
    assert packed.advance_targets is not None and packed.remaining_targets is not None
    for row in range(batch.size):
        n, start = int(batch.code_lengths[row]), int(packed.prefix_lengths[row])
        said = torch.cat([batch.frame_symbols[row, :n], batch.cond.text_lengths[row : row + 1] - 1])
        advance = packed.advance_targets[row, start : start + n]
        assert torch.equal(advance, (said[1:] - said[:-1]).clamp(0, 3))
        assert (packed.advance_targets[row, start + n :] == IGNORE).all()  # none at the stop position
