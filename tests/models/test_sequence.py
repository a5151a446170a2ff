"""Training and decoding lay out the same AR sequence: teacher-forced logits agree step by step."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from valle.data.batching import collate
from valle.models.cache import ContextWindow
from valle.models.config import BackboneConfig, ValleConfig
from valle.models.sequence import IGNORE, build_ar
from valle.models.valle import Valle, _rows
from valle.sampling.ar import DecodeLimits, _start
from valle.training.text_before import precede_with_text
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
        ValleConfig.tiny(monotonic_alignment=True, said_context=True),
    ],
    ids=[
        "transformer",
        "transformer-prefixlm",
        "retnet",
        "segment-positions",
        "monotonic-alignment",
        "said-context",
    ],
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
            said = said_as_a_pointer_tells_it(model, batch, t + 1) if config.monotonic_alignment else None
            hidden = model.ar.backbone.step(model.ar_step_input(batch.codes[:, 0, t], t, said), cache)
            steps.append(model.ar_logits(hidden[:, 0]))
    incremental = torch.stack(steps, dim=1)  # [B, T_max + 1, V + 1]
    expected = torch.cat([incremental[b, : int(n) + 1] for b, n in enumerate(batch.code_lengths)])
    torch.testing.assert_close(expected, out.logits, atol=1e-4, rtol=1e-4)


def said_as_a_pointer_tells_it(model: Valle, batch: Batch, frame: int) -> torch.Tensor:
    """The said codes [B] of response position `frame` as a text pointer reading the true alignment
    tells them: the frame's text position (the stop position says the last), and with said_context the
    frames of it before this one, and the frames left after it except on its first frame (not drawn yet)."""
    assert batch.frame_symbols is not None and batch.code_lengths is not None
    rows = []
    for b in range(batch.cond.size):
        length, last = int(batch.code_lengths[b]), int(batch.cond.text_lengths[b]) - 1
        symbols = [min(int(s), last) for s in batch.frame_symbols[b, :length]]
        at, into, left = last, 0, -1  # the stop position: the pointer has just moved on
        if frame < length:
            at = symbols[frame]
            first = frame
            while first > 0 and symbols[first - 1] == at:
                first -= 1
            end = frame
            while end + 1 < length and symbols[end + 1] == at:
                end += 1
            into, left = frame - first, (end - frame if frame > first else -1)
        rows.append((at, into, left))
    at, into, left = (torch.tensor(column) for column in zip(*rows, strict=True))
    return model.ar.embeddings.said_code(batch.cond.text, at, batch.cond.text_lengths - 1, into, left)


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


@pytest.mark.parametrize("monotonic", [False, True], ids=["transformer", "monotonic-alignment"])
def test_rows_shown_no_text_train_as_classifier_free_guidance_decodes_them(monotonic):
    """Training's text dropout and decoding's guide (valle.sampling.ar.Guide) lay out the same unconditional
    rows: no text segment, no `said` embedding; and what such a row predicts does not depend on its text."""
    torch.manual_seed(0)
    config = ValleConfig.tiny(monotonic_alignment=monotonic, segment_positions=4.0, text_dropout=0.2)
    model = Valle(config.with_data(20, 3, 16)).eval()
    batch = random_batch()
    unconditional = replace(batch, cond=batch.cond.without_text())
    other_text = random_batch(seed=5).cond  # other ids and lengths
    swapped = replace(
        unconditional,
        cond=replace(unconditional.cond, text=other_text.text, text_lengths=other_text.text_lengths),
    )
    levels = torch.zeros(3, dtype=torch.long)
    with torch.no_grad():
        [out] = model(unconditional, levels).levels
        [out_swapped] = model(swapped, levels).levels
        [conditional] = model(batch, levels).levels
        cache, hidden = _start(model, unconditional.cond, DecodeLimits(max_steps=8))
        steps = [model.ar_logits(hidden)]
        for t in range(int(batch.code_lengths.max())):
            x = model.ar_step_input(batch.codes[:, 0, t], t, text_shown=False)
            steps.append(model.ar_logits(model.ar.backbone.step(x, cache)[:, 0]))
    incremental = torch.stack(steps, dim=1)
    expected = torch.cat([incremental[b, : int(n) + 1] for b, n in enumerate(batch.code_lengths)])
    torch.testing.assert_close(expected, out.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out_swapped.logits, out.logits, atol=1e-5, rtol=1e-5)
    assert (conditional.logits - out.logits).abs().max() > 1e-3  # the text does reach the others


def test_text_dropout_shows_a_share_of_the_ar_training_rows_no_text():
    torch.manual_seed(0)
    model = Valle(ValleConfig.tiny(monotonic_alignment=True, text_dropout=0.5).with_data(20, 3, 16)).train()
    batch = random_batch()
    other = replace(batch, cond=replace(batch.cond, text=random_batch(seed=5).cond.text))
    levels = torch.zeros(3, dtype=torch.long)
    unchanged, advance_rows = 0, []
    for seed in range(12):
        torch.manual_seed(seed)
        output = model(batch, levels)
        torch.manual_seed(seed)  # the same rows dropped
        [swapped] = model(other, levels).levels
        row_of = torch.repeat_interleave(torch.arange(3), batch.code_lengths + 1)
        for b in range(3):
            same = torch.allclose(output.levels[0].logits[row_of == b], swapped.logits[row_of == b])
            unchanged += same
        assert output.advance is not None
        advance_rows.append(len(output.advance.targets))
    # about half the rows never saw their text; the others did (row 2 is not aligned: no pointer targets)
    assert 8 <= unchanged <= 28
    # dropped rows teach no durations: the pointer's targets come and go with them
    assert len(set(advance_rows)) > 1 and min(advance_rows) < int(batch.code_lengths[:2].sum())


def test_scheduled_sampling_feeds_draws_that_only_saw_the_true_frames_before_them():
    """`ar_self_feed`: input code j becomes a draw for frame j given the recording's frames < j, the input
    the model would have fed itself; the targets stay the recording's."""
    torch.manual_seed(0)
    model = Valle(ValleConfig.tiny(monotonic_alignment=True).with_data(20, 3, 16)).train()
    batch = random_batch()
    rows = _rows(batch, torch.arange(3))
    torch.manual_seed(1)
    fed = model.ar_self_fed_inputs(rows, 1.0)
    assert fed.shape == batch.codes[:, 0].shape and int(fed.max()) < 16  # codes, never the stop id
    assert (fed != batch.codes[:, 0]).any()
    later = batch.codes.clone()
    later[:, 0, 4:] = (later[:, 0, 4:] + 1) % 16  # other frames from frame 4 on
    torch.manual_seed(1)
    fed_later = model.ar_self_fed_inputs(replace(rows, codes=later), 1.0)
    for b, n in enumerate(batch.code_lengths.tolist()):
        assert torch.equal(fed[b, : min(n, 5)], fed_later[b, : min(n, 5)])  # frame 4 saw frames 0..3 only
    assert torch.equal(model.ar_self_fed_inputs(rows, 0.0), batch.codes[:, 0])
    torch.manual_seed(2)
    [fed_out] = model(batch, torch.zeros(3, dtype=torch.long), ar_self_feed=0.5).levels
    [plain_out] = model(batch, torch.zeros(3, dtype=torch.long)).levels
    assert torch.equal(fed_out.targets, plain_out.targets)
    assert not torch.allclose(fed_out.logits, plain_out.logits)


def test_a_training_window_is_what_decoding_with_max_ar_context_sees():
    """`training.sliding_context`: the AR trained on a window of the last W response positions sees
    exactly what decoding with `max_ar_context=W` sees, positions unchanged."""
    torch.manual_seed(0)
    model = Valle(ValleConfig.tiny(segment_positions=4.0).with_data(20, 3, 16)).eval()
    batch = random_batch()
    window = 2
    with torch.no_grad():
        [out] = model(batch, torch.zeros(3, dtype=torch.long), ar_context=window).levels
        [full] = model(batch, torch.zeros(3, dtype=torch.long)).levels
        cache, hidden = _start(model, batch.cond, DecodeLimits(max_steps=8, max_context=window))
        steps = [model.ar_logits(hidden)]
        for t in range(int(batch.code_lengths.max())):
            x = model.ar_step_input(batch.codes[:, 0, t], t)
            steps.append(model.ar_logits(model.ar.backbone.step(x, cache)[:, 0]))
    incremental = torch.stack(steps, dim=1)
    expected = torch.cat([incremental[b, : int(n) + 1] for b, n in enumerate(batch.code_lengths)])
    torch.testing.assert_close(expected, out.logits, atol=1e-4, rtol=1e-4)
    assert (full.logits - out.logits).abs().max() > 1e-3  # the window hides something


@pytest.mark.parametrize("text_before", [False, True])
@pytest.mark.parametrize("positions", ["rotary", "sinusoidal"])
def test_a_shifted_training_row_is_what_decoding_sees_that_far_into_an_output(positions, text_before):
    """`training.sliding_context.max_shift`: a training row moved s frames on (its response and text,
    not its prompt) gives the logits of a decode whose response starts s positions later, through the
    same window: the positions a long output reaches are the ones the shifted row trained on. With
    `text_before` the row's text is preceded by the text said before it and keeps its own positions, as
    the text of one long output does."""
    torch.manual_seed(0)
    backbone = BackboneConfig("transformer", 0.0, {"positions": positions})
    config = ValleConfig.tiny(segment_positions=4.0, backbone=backbone)
    model = Valle(config.with_data(20, 3, 16)).eval()
    batch, window = random_batch(), 3
    shift = torch.tensor([40, 0, 700])
    if text_before:
        batch = precede_with_text(batch, shift)
        assert batch.cond.text_lengths.tolist() != random_batch().cond.text_lengths.tolist()
    levels = torch.zeros(3, dtype=torch.long)
    with torch.no_grad():
        [out] = model(
            batch, levels, ar_context=window, position_shift=shift, shift_text=not text_before
        ).levels
        [unmoved] = model(batch, levels, ar_context=window).levels
    ends = (batch.code_lengths + 1).cumsum(0)
    for b, s in enumerate(shift.tolist()):
        cond, n = batch.cond.select(torch.tensor([b])), int(batch.code_lengths[b])
        with torch.no_grad():
            packed = build_ar(
                model.ar.embeddings,
                cond,
                segment_positions=4.0,
                position_shift=torch.tensor([s]),
                shift_text=not text_before,
            )
            prefix = int(packed.lengths[0]) - 1  # text ; sep ; prompt ; sep, then the start vector
            still = build_ar(model.ar.embeddings, cond, segment_positions=4.0)
            text, prompt = int(cond.text_lengths[0]), slice(int(cond.text_lengths[0]) + 1, prefix - 1)
            assert torch.equal(packed.x[0, prompt], still.x[0, prompt])  # the prompt stays where it was
            if s and not text_before:  # the text moves on with the response it is said in
                assert (packed.x[0, :text] - still.x[0, :text]).abs().amax(-1).min() > 1e-3
            else:  # the text said before it already placed it
                assert torch.equal(packed.x[0, :text], still.x[0, :text])
            kept = ContextWindow(window, packed.lengths + s)  # the prefix and the moved start vector
            cache = model.ar.backbone.new_cache(1, prefix + n + 2, window=kept)
            model.ar.backbone.step(packed.x[:, :prefix], cache)
            cache.next_position += s  # the response starts s positions later
            steps = [model.ar_logits(model.ar.backbone.step(packed.x[:, prefix:], cache)[:, 0])]
            for t in range(n):
                x = model.ar_step_input(batch.codes[b : b + 1, 0, t], t + s)
                steps.append(model.ar_logits(model.ar.backbone.step(x, cache)[:, 0]))
        rows = slice(int(ends[b]) - n - 1, int(ends[b]))
        torch.testing.assert_close(torch.cat(steps), out.logits[rows], atol=1e-4, rtol=1e-4)
        moved = (out.logits[rows] - unmoved.logits[rows]).abs().max()
        assert moved > 1e-3 if s else moved < 1e-5  # only a moved row's logits change
