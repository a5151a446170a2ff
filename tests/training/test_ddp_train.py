"""Two CPU processes (gloo) train one model with DDP and end with the same weights."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from tests.training.conftest import tiny_datamodule, tiny_module


class SaveRankWeights(L.Callback):
    def __init__(self, folder):
        self.folder = folder

    def on_train_end(self, trainer, module):
        torch.save(module.model.state_dict(), self.folder / f"rank{trainer.global_rank}.pt")


@pytest.mark.slow
def test_two_process_ddp_on_cpu_finishes_and_ranks_agree(tiny_shards, tmp_path):
    dm = tiny_datamodule(tiny_shards, batches_per_epoch=2, max_tokens=1200)  # equal, resampled epochs per rank
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_fork", max_steps=3, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=0,
                        callbacks=[SaveRankWeights(tmp_path)], default_root_dir=str(tmp_path))
    module = tiny_module(dm)
    initial = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer.fit(module, dm)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    assert any(not torch.equal(initial[k], ranks[0][k]) for k in initial)
