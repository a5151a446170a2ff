"""Two CPU processes (gloo) train one model with DDP and end with the same weights."""

from __future__ import annotations

import json
from datetime import timedelta

import lightning as L
import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy

from tests.training.conftest import tiny_datamodule, tiny_module


class SaveRankWeights(L.Callback):
    def __init__(self, folder):
        self.folder = folder

    def on_train_end(self, trainer, module):
        torch.save(module.model.state_dict(), self.folder / f"rank{trainer.global_rank}.pt")


@pytest.mark.slow
def test_two_process_ddp_on_cpu_finishes_and_ranks_agree(tiny_shards, tmp_path):
    dm = tiny_datamodule(
        tiny_shards, batches_per_epoch=2, max_tokens=1200
    )  # equal, resampled epochs per rank
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_fork_find_unused_parameters_true",
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        callbacks=[SaveRankWeights(tmp_path)],
        default_root_dir=str(tmp_path),
    )
    module = tiny_module(dm)
    initial = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer.fit(module, dm)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    assert any(not torch.equal(initial[k], ranks[0][k]) for k in initial)


class CountBatches(L.Callback):
    """Per rank and epoch: training and validation batches seen; written to `rank{N}.json` at the end."""

    def __init__(self, folder):
        self.folder, self.train, self.val = folder, [], []

    def on_train_epoch_start(self, trainer, module):
        self.train.append(0)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.train[-1] += 1

    def on_validation_epoch_start(self, trainer, module):
        self.val.append(0)

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        self.val[-1] += 1

    def on_fit_end(self, trainer, module):
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps([self.train, self.val]))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ddp_with_shards_that_do_not_divide_evenly_finishes_with_equal_batch_counts(tiny_shards, tmp_path):
    # three shards for two ranks: before ranks agreed on a count, the one with fewer batches ended its
    # epoch and validated while the other still trained, and the run hung
    dm = tiny_datamodule(
        tiny_shards, shards=f"{tiny_shards}/shard-00000[0-2].tar", max_tokens=1200, num_workers=2
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        strategy=DDPStrategy(
            start_method="fork", find_unused_parameters=True, timeout=timedelta(seconds=120)
        ),
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        callbacks=[CountBatches(tmp_path)],
        default_root_dir=str(tmp_path),
    )
    trainer.fit(tiny_module(dm), dm)  # a hang becomes a gloo timeout error, not a blocked test
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1] and len(ranks[0][0]) == 2 and all(ranks[0][0]) and all(ranks[0][1])
