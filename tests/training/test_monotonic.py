"""Training with monotonic alignment: the batches carry which text id each frame says, the AR learns when
to move on, and data without alignments is refused rather than trained on a guess."""

from __future__ import annotations

import math

import pytest

from tests.training.conftest import cpu_trainer, tiny_datamodule, tiny_module
from valle.cli.train import check_alignments
from valle.data.training_prompts import PromptConfig
from valle.errors import ConfigError
from valle.models.config import ValleConfig


def test_batches_say_which_text_id_each_frame_says(aligned_corpus):
    _, shards, _ = aligned_corpus
    dm = tiny_datamodule(shards, prompt=PromptConfig(min_seconds=0.5, max_seconds=1.0, prefix_share=0.5))
    batch = next(iter(dm.train_dataloader()))
    assert batch.frame_symbols is not None and batch.aligned is not None and bool(batch.aligned.all())
    for row in range(batch.size):
        frames, n = int(batch.code_lengths[row]), int(batch.cond.text_lengths[row])
        said = batch.frame_symbols[row, :frames]
        assert (said.diff() >= 0).all() and int(said.max()) < n  # forward only, inside the text
        assert int(said[0]) == int(batch.cond.starts[row])
        # a continuation row starts after the words its prompt already said
        assert (int(said[0]) > 2) == bool(batch.cond.continuing[row])


def test_the_ar_learns_when_to_move_on(aligned_corpus, tmp_path):
    _, shards, _ = aligned_corpus
    dm = tiny_datamodule(shards)
    module = tiny_module(dm, ValleConfig.tiny(monotonic_alignment=True), training={"level_p": [1.0, 0.0]})
    trainer = cpu_trainer(tmp_path, max_steps=4)
    trainer.fit(module, dm)
    loss = float(trainer.callback_metrics["train/loss_advance"])
    assert math.isfinite(loss) and 0 < loss < math.log(4) + 0.5
    assert 0.0 <= float(trainer.callback_metrics["train/acc_advance"]) <= 1.0


def test_a_model_with_monotonic_alignment_refuses_unaligned_data(tiny_shards):
    dm = tiny_datamodule(tiny_shards)
    with pytest.raises(ConfigError, match="none of the .* utterances .* has an alignment"):
        check_alignments(ValleConfig.tiny(monotonic_alignment=True), dm, str(tiny_shards))
    check_alignments(ValleConfig.tiny(), dm, str(tiny_shards))  # without it, nothing to check
