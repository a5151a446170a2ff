"""`training.sliding_context.text_before`: a row placed deep into a long output reads on after the text
said before it, as one long text is read."""

from __future__ import annotations

import math

import pytest
import torch

from tests.training.conftest import cpu_trainer, tiny_datamodule, tiny_module
from valle.data.training_prompts import PromptConfig
from valle.errors import ConfigError
from valle.models.config import ValleConfig
from valle.text.symbols import HEAD_IDS, TAIL_IDS
from valle.training.module import SlidingContext, TrainingConfig
from valle.training.text_before import precede_with_text


def _body(text, length):
    return text[HEAD_IDS : length - TAIL_IDS]


def test_a_shifted_row_reads_on_after_the_text_said_before_it(aligned_corpus):
    _, shards, _ = aligned_corpus
    prompt = PromptConfig(min_seconds=0.5, max_seconds=1.0, prefix_share=0.5)
    dm = tiny_datamodule(shards, prompt=prompt, max_tokens=100_000, n_buckets=1, val_speakers=0)
    batch = next(iter(dm.train_dataloader()))
    assert batch.size >= 3 and batch.frame_symbols is not None and bool(batch.cond.continuing.any())
    shifts = torch.tensor([0, 90, *[700] * (batch.size - 2)])
    out = precede_with_text(batch, shifts)
    old, new = batch.cond, out.cond
    assert torch.equal(out.codes, batch.codes) and torch.equal(new.prompt, old.prompt)
    for b in range(batch.size):
        length, moved = int(old.text_lengths[b]), int(new.text_lengths[b])
        body = _body(old.text[b], length)
        frames = int(batch.code_lengths[b])
        n = moved - length
        # about what the row says in its shift, at its own rate
        assert abs(n - int(shifts[b]) * len(body) / frames) <= 0.5 + 1e-6
        if shifts[b] == 0:
            assert n == 0 and torch.equal(new.text[b, :moved], old.text[b, :length])
            assert torch.equal(out.frame_symbols[b], batch.frame_symbols[b])
            continue
        text = new.text[b, :moved]
        assert torch.equal(text[:HEAD_IDS], old.text[b, :HEAD_IDS])
        assert torch.equal(text[HEAD_IDS + n :], old.text[b, HEAD_IDS:length])  # then its own, unchanged
        before = text[HEAD_IDS : HEAD_IDS + n]
        previous = _body(old.text[b - 1], int(old.text_lengths[b - 1]))
        if shifts[b] == 700:  # more than one row says: the rows before it, cycled, end with the last one's
            two_before = _body(old.text[b - 2], int(old.text_lengths[b - 2]))
            assert n > len(previous)
            assert torch.equal(before[-len(previous) - 1 :], torch.cat([two_before[-1:], previous]))
        else:  # the end of the row before's sentence
            assert n < len(previous) and torch.equal(before, previous[-n:])
        # every frame says the same symbol as before; the silence before the first phoneme now says the
        # last symbol of the text before it
        said, now = batch.frame_symbols[b, :frames], out.frame_symbols[b, :frames]
        own = said >= HEAD_IDS
        assert torch.equal(text[now[own]], old.text[b, said[own]])
        assert (now[~own] == HEAD_IDS + n - 1).all()
        assert (now.diff() >= 0).all() and (out.frame_symbols[b, frames:] == 0).all()
        if old.start_symbol is not None and int(old.start_symbol[b]) >= HEAD_IDS:
            assert int(text[int(new.start_symbol[b])]) == int(old.text[b, int(old.start_symbol[b])])


def test_text_before_trains_a_model_that_reads_its_alignment(aligned_corpus, tmp_path):
    _, shards, _ = aligned_corpus
    dm = tiny_datamodule(shards, prompt=PromptConfig(min_seconds=0.5, max_seconds=1.0, prefix_share=0.5))
    model = ValleConfig.tiny(monotonic_alignment=True, said_context=True, segment_positions=4.0)
    sliding = {"p": 1.0, "min_frames": 2, "max_frames": 4, "max_shift": 300, "text_before": True}
    trainer = cpu_trainer(tmp_path, max_steps=3)
    trainer.fit(tiny_module(dm, model, training={"sliding_context": sliding}), dm)
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
    assert math.isfinite(float(trainer.callback_metrics["train/loss_advance"]))


def test_text_before_without_shifts_or_with_guided_attention_is_refused_naming_the_fix():
    with pytest.raises(ConfigError, match="text_before=true .* set max_shift > 0"):
        SlidingContext(p=0.5, text_before=True)
    with pytest.raises(ConfigError, match="text_before=true with training.guided_attention.weight=0.5"):
        TrainingConfig(
            sliding_context={"p": 0.5, "max_shift": 100, "text_before": True},
            guided_attention={"weight": 0.5},
        )
