"""Train the level-0 recognizer that judges best-of-N candidates (`valle.models.recognizer`).

It reads the training shards a model was trained on (level-0 codes and the symbols they say), holds out
a share of the sentences (every voice's reading of them) to validate on, and keeps the weights of its
best validation: on the demo's 500 sentences it starts to memorise them after ~1000 steps, and what it
must judge are sentences it never saw. A small Lightning run, timed like the main one (`max_time`).
Codes are perturbed while training (`noise`: a share of frames replaced by random codes) so that it
still reads a model's imperfect codes rather than only the codec's clean ones.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import lightning as L
import numpy as np
import torch
import webdataset as wds
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset

from valle.data.index import ShardIndex
from valle.data.shards import decode_sample
from valle.errors import ConfigError
from valle.models.recognizer import CodeRecognizer, RecognizerConfig
from valle.recognizer_card import LoadedRecognizer
from valle.text.symbols import HEAD_IDS, TAIL_IDS

Batch = tuple[Tensor, Tensor, Tensor, Tensor]  # codes [B, T], lengths [B], targets [B, N], target lengths [B]


@dataclass
class RecognizerRun:
    """What `train_recognizer` wrote and how it went."""

    path: Path
    val_loss: float  # CTC nats per symbol on the held-out sentences, of the weights kept
    steps: int
    train_utterances: int
    val_utterances: int

    def summary(self) -> str:
        return (
            f"{self.path}: {self.steps} steps on {self.train_utterances} utterances; validation CTC "
            f"{self.val_loss:.3f} nats a symbol on {self.val_utterances} readings of held-out sentences"
        )


@dataclass
class Reading:
    """One utterance as the recognizer sees it: level-0 codes and the ids of the symbols it says."""

    codes: Tensor  # [T] int64
    targets: Tensor  # [N] int64, without <bos>, <lang> and <eos>
    text: str


def read_shards(index: ShardIndex) -> list[Reading]:
    """Every utterance of the index's shards, in memory (level 0 of a 4-level corpus of 6000 utterances:
    ~10 MB)."""
    readings = []
    for raw in wds.WebDataset(index.shard_paths(), shardshuffle=False, empty_check=False):
        sample = decode_sample(raw)
        ids = index.symbols.encode(sample.symbols, sample.language)[HEAD_IDS:-TAIL_IDS]
        readings.append(
            Reading(torch.from_numpy(sample.codes[0].astype(np.int64)), torch.tensor(ids), sample.text)
        )
    return readings


def split_by_sentence(
    readings: Sequence[Reading], share: float, seed: int = 0
) -> tuple[list[Reading], list[Reading]]:
    """(train, validation): `share` of the distinct texts, every reading of them, go to validation."""
    texts = sorted({r.text for r in readings})
    held = (
        set(random.Random(seed).sample(texts, max(1, round(share * len(texts))))) if len(texts) > 1 else set()
    )
    train = [r for r in readings if r.text not in held]
    return train, [r for r in readings if r.text in held]


def collate(readings: Sequence[Reading]) -> Batch:
    """→ codes [B, T], lengths [B], targets [B, N] (right-padded with 0), target lengths [B]."""
    lengths = torch.tensor([len(r.codes) for r in readings])
    target_lengths = torch.tensor([len(r.targets) for r in readings])
    codes = torch.zeros(len(readings), int(lengths.max()), dtype=torch.long)
    targets = torch.zeros(len(readings), int(target_lengths.max()), dtype=torch.long)
    for i, r in enumerate(readings):
        codes[i, : len(r.codes)] = r.codes
        targets[i, : len(r.targets)] = r.targets
    return codes, lengths, targets, target_lengths


class FrameBatches(IterableDataset):
    """Endless shuffled batches of about `max_frames` frames each (lengths bucketed to keep padding low)."""

    def __init__(self, readings: Sequence[Reading], max_frames: int, seed: int) -> None:
        self.readings, self.max_frames, self.seed = list(readings), max_frames, seed

    def __iter__(self) -> Iterator[Batch]:
        rng = random.Random(self.seed)
        while True:
            order = sorted(rng.sample(self.readings, len(self.readings)), key=lambda r: len(r.codes) // 25)
            batches: list[list[Reading]] = []
            batch: list[Reading] = []
            for reading in order:
                if batch and (len(batch) + 1) * len(reading.codes) > self.max_frames:
                    batches.append(batch)
                    batch = []
                batch.append(reading)
            batches.append(batch)
            rng.shuffle(batches)
            for chosen in batches:
                yield collate(chosen)


class ListDataset(Dataset):
    """Ready batches, one per index (the validation set, batched once)."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> Batch:
        return self.batches[index]


class RecognizerTask(L.LightningModule):
    """CTC on level-0 codes, per target symbol; keeps the weights of its lowest validation loss."""

    def __init__(self, recognizer: CodeRecognizer, lr: float, noise: float) -> None:
        super().__init__()
        self.recognizer, self.lr, self.noise = recognizer, lr, noise
        self.best_loss = float("inf")
        self.best_state: dict[str, Tensor] | None = None
        self._val_nll, self._val_symbols, self.last_loss = 0.0, 0, float("inf")

    def loss(self, batch: Batch) -> Tensor:
        codes, lengths, targets, target_lengths = batch
        return self.recognizer.ctc(codes, lengths, targets, target_lengths).sum() / target_lengths.sum()

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        codes, lengths, targets, target_lengths = batch
        if self.noise > 0:  # a model's codes are not the codec's: read through some wrong frames
            swap = torch.rand(codes.shape, device=codes.device) < self.noise
            codes = torch.where(swap, torch.randint_like(codes, self.recognizer.codebook_size), codes)
        loss = self.loss((codes, lengths, targets, target_lengths))
        self.log("train/ctc", loss, prog_bar=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_nll, self._val_symbols = 0.0, 0

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        codes, lengths, targets, target_lengths = batch
        self._val_nll += float(self.recognizer.ctc(codes, lengths, targets, target_lengths).sum())
        self._val_symbols += int(target_lengths.sum())

    def on_validation_epoch_end(self) -> None:
        # summed here rather than read from callback_metrics, which Lightning fills only after this hook
        loss = self.last_loss = self._val_nll / max(1, self._val_symbols)
        self.log("val/ctc", loss, prog_bar=True)
        if loss < self.best_loss:
            self.best_loss = loss
            self.best_state = copy.deepcopy(self.recognizer.state_dict())

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=0.01)
        warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 100))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": warmup, "interval": "step"}}


def train_recognizer(
    data_root: str | Path,
    out: str | Path,
    minutes: float = 4.0,
    max_steps: int = 3000,
    config: RecognizerConfig | None = None,
    lr: float = 2e-3,
    noise: float = 0.1,
    max_frames: int = 6000,
    val_share: float = 0.05,
    val_check_interval: int = 100,
    seed: int = 0,
    accelerator: str = "auto",
    keep: str = "best",
) -> RecognizerRun:
    """Train a recognizer on `data_root`'s shards for `minutes` (or `max_steps`), write it to `out`.

    Args:
        keep: "best": the weights of the lowest validation loss (checked every `val_check_interval` steps
            and at the end); "last": the final ones (a corpus too small to hold sentences out usefully).

    Returns:
        the file written, its validation loss and the run's size.

    Raises:
        ConfigError: a setting out of range (each named), shards with no utterance, or with fewer than two
            texts to split.
    """
    problems = [
        message
        for wrong, message in (
            (keep not in ("best", "last"), f"keep={keep!r}: choose best (lowest validation loss) or last"),
            (minutes <= 0 or max_steps < 1, f"minutes={minutes} and max_steps={max_steps} must be > 0"),
            (
                not 0 < val_share < 1,
                f"val_share={val_share} must lie in (0, 1): the share of sentences held out",
            ),
            (not 0 <= noise < 1, f"noise={noise} must lie in [0, 1): the share of frames replaced"),
            (lr <= 0 or max_frames < 1, f"lr={lr} and max_frames={max_frames} must be > 0"),
        )
        if wrong
    ]
    if problems:
        raise ConfigError("recognizer: " + "; ".join(problems))
    index = ShardIndex.load(data_root)
    if not index.samples:  # webdataset would fail on an empty list of shards with an IndexError
        raise ConfigError(
            f"data.root={data_root}: the shards hold no utterance; prepare a corpus with speech into it first"
        )
    readings = read_shards(index)
    train, val = split_by_sentence(readings, val_share, seed)
    if not train or not val:
        raise ConfigError(
            f"data.root={data_root}: {len(readings)} utterance(s) of {len({r.text for r in readings})} "
            "distinct text(s); the recognizer needs at least two texts to hold one out for validation"
        )
    L.seed_everything(seed, workers=True, verbose=False)
    recognizer = CodeRecognizer(config or RecognizerConfig(), index.codec.codebook_size, len(index.symbols))
    task = RecognizerTask(recognizer, lr, noise)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        max_steps=max_steps,
        max_time=timedelta(minutes=minutes),
        val_check_interval=val_check_interval,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        logger=False,
        enable_model_summary=False,
        enable_progress_bar=False,
    )
    val_batches = ListDataset([collate(val[i : i + 32]) for i in range(0, len(val), 32)])
    trainer.fit(
        task,
        train_dataloaders=DataLoader(FrameBatches(train, max_frames, seed), batch_size=None),
        val_dataloaders=DataLoader(val_batches, batch_size=None),
    )
    trainer.validate(task, DataLoader(val_batches, batch_size=None), verbose=False)  # the last weights too
    if keep == "best" and task.best_state is not None:
        recognizer.load_state_dict(task.best_state)
    path = LoadedRecognizer(recognizer.cpu().eval(), index.symbols, index.codec).save(out)
    loss = task.best_loss if keep == "best" else task.last_loss
    return RecognizerRun(path, loss, trainer.global_step, len(train), len(val))
