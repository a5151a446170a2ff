from __future__ import annotations

import lightning as L
import pytest
import torch

from valle.card import ModelCard
from valle.data.datamodule import DataConfig, ValleDataModule
from valle.data.training_prompts import PromptConfig
from valle.models.config import ValleConfig
from valle.training.module import ValleModule


def tiny_datamodule(root, **overrides) -> ValleDataModule:
    config = dict(
        root=str(root),
        num_workers=0,
        max_tokens=2500,
        val_speakers=1,
        val_utterances=1,
        shuffle_buffer=4,
        prompt=PromptConfig(min_seconds=0.5, max_seconds=1.0),
    )
    dm = ValleDataModule(DataConfig(**{**config, **overrides}))
    dm.setup()
    return dm


def tiny_module(
    dm: ValleDataModule, model: ValleConfig | None = None, codec_state: dict | None = None, **kwargs
) -> ValleModule:
    config = (model or ValleConfig.tiny()).with_data(
        len(dm.symbols), dm.codec_info.n_levels, dm.codec_info.codebook_size
    )
    optim = kwargs.pop("optim", {"lr": 3e-3, "warmup_steps": 5})
    card = ModelCard(config, dm.symbols, dm.codec_info, codec_state=codec_state)
    return ValleModule(card, optim=optim, **kwargs)


def cpu_trainer(tmp_path, **overrides) -> L.Trainer:
    settings = dict(
        accelerator="cpu",
        devices=1,
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=str(tmp_path),
    )
    return L.Trainer(**{**settings, **overrides})


class Repeat(torch.utils.data.IterableDataset):
    """One batch, over and over: for memorisation tests."""

    def __init__(self, batch: dict, times: int):
        self.batch, self.times = batch, times

    def __iter__(self):
        for _ in range(self.times):
            yield self.batch


@pytest.fixture
def tiny_dm(tiny_shards):
    return tiny_datamodule(tiny_shards)
