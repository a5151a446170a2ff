"""ValleDataModule: streams the shards `prepare` wrote, with prompts, buckets and a validation split."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field

import lightning as L
from webdataset.utils import pytorch_worker_info

from valle.codecs.base import CodecInfo
from valle.data.batching import bucket_boundaries
from valle.data.index import IndexRow, ShardIndex
from valle.data.stream import (
    EpochDataLoader,
    ErrorCounter,
    RankBalance,
    ShardStream,
    StreamSettings,
    expand_shards,
    shard_name,
)
from valle.data.training_prompts import PromptConfig, single_utterance_speakers
from valle.errors import ConfigError
from valle.text.symbols import SymbolMap

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """The `data` config group (configs/data/*.yaml)."""

    root: str = "???"  # the folder prepare.py wrote (holds index.json)
    shards: str | None = (
        None  # other shard sources (glob, brace list, pipe:, URL); names must match the index
    )
    max_tokens: int = 6000  # per batch: (text + prompt + response) × batch size, padding included
    max_batch_size: int = 64
    n_buckets: int = 8
    shuffle_buffer: int = 512
    num_workers: int = 2
    prompt: PromptConfig = field(default_factory=PromptConfig)
    val_speakers: int = 1  # speakers held out entirely
    val_utterances: int = 8  # utterances held out from the training speakers
    batches_per_epoch: int | None = None  # set for fixed-length epochs over resampled shards (multi-node)
    max_skip_fraction: float = 0.05  # damaged samples are skipped; a pass losing more than this share stops
    seed: int = 0


@dataclass
class Split:
    val_speakers: list[str]
    val_keys: frozenset[str]  # held-out speakers' utterances and held-out utterances


def make_split(index: ShardIndex, val_speakers: int, val_utterances: int, seed: int) -> Split:
    """Deterministic validation split: whole speakers, then single utterances of other speakers.

    Speakers with fewer than three utterances never give one up, so each training speaker keeps at
    least two (one to train on, one to prompt with).
    """
    rng = random.Random(seed)
    speakers = index.by_speaker()
    names = sorted(speakers)
    if val_speakers >= len(names) and val_speakers > 0:
        raise ConfigError(
            f"data.val_speakers={val_speakers} but the index has {len(names)} speakers; "
            "training needs at least one: lower data.val_speakers"
        )
    held_out = sorted(rng.sample(names, val_speakers))
    keys = {row.key for name in held_out for row in speakers[name]}
    donors = [name for name in names if name not in held_out and len(speakers[name]) >= 3]
    rng.shuffle(donors)
    pools = {name: rng.sample(speakers[name], len(speakers[name]) - 2) for name in donors}
    while val_utterances > 0 and any(pools.values()):
        for name in donors:
            if pools[name] and val_utterances > 0:
                keys.add(pools[name].pop().key)
                val_utterances -= 1
    return Split(val_speakers=held_out, val_keys=frozenset(keys))


def sequence_length(row: IndexRow, prompt: PromptConfig, frame_rate: float) -> int:
    """Expected [text; prompt; response] length of a sample, for bucketing."""
    text = row.n_phonemes + 3  # bos, language, eos
    if prompt.mode == "prefix":
        return text + row.frames
    return text + row.frames + round((prompt.min_seconds + prompt.max_seconds) / 2 * frame_rate)


class ValleDataModule(L.LightningDataModule):
    """Batches of text ids, prompt codes and response codes, streamed from webdataset shards.

    Args:
        config: a `DataConfig` (or the same keys as a dict/DictConfig).
    """

    def __init__(self, config: DataConfig | dict):
        super().__init__()
        if not isinstance(config, DataConfig):
            config = DataConfig(**{**config, "prompt": PromptConfig(**dict(config.get("prompt") or {}))})
        self.config = config
        self.index: ShardIndex | None = None
        self.split: Split | None = None
        self.errors = ErrorCounter()
        self._resume: dict | None = None  # where a restored run left the training stream

    def setup(self, stage: str | None = None) -> None:
        if self.index is not None:
            return
        index = ShardIndex.load(self.config.root)
        if not index.samples:
            raise ConfigError(
                f"data.root={self.config.root}: the index lists no samples (everything was "
                "skipped in prepare? see its summary); nothing to train on"
            )
        self.index = index
        self.split = make_split(index, self.config.val_speakers, self.config.val_utterances, self.config.seed)
        log.info(
            "data: %d utterances, %d speakers, %.2f h; validation: %d utterances (%d held-out speakers)",
            len(index.samples),
            len(index.by_speaker()),
            index.hours(),
            len(self.split.val_keys),
            len(self.split.val_speakers),
        )
        self._warn_single_utterance_speakers()

    def _loaded(self) -> tuple[ShardIndex, Split]:
        """The index and the validation split, read on first use (`setup` does it once)."""
        self.setup()
        assert self.index is not None and self.split is not None
        return self.index, self.split

    def _warn_single_utterance_speakers(self) -> None:
        """Once per run: such speakers silently train continuation (prefix prompts) only."""
        index, split = self._loaded()
        counts: dict[str, int] = {}
        for row in index.samples:
            if row.key not in split.val_keys:
                counts[row.speaker] = counts.get(row.speaker, 0) + 1
        n = single_utterance_speakers(counts, self.config.prompt)
        if n:
            log.warning(
                "data: %d of %d training speakers have a single utterance: their samples get prefix "
                "prompts (the utterance's own start) instead of another utterance's",
                n,
                len(counts),
            )

    @property
    def symbols(self) -> SymbolMap:
        return self._loaded()[0].symbols

    @property
    def codec_info(self) -> CodecInfo:
        return self._loaded()[0].codec

    def _urls(self, names: set[str] | None = None) -> list[str]:
        """Shard URLs, optionally only those whose file name is in `names`."""
        urls = expand_shards(self.config.shards) if self.config.shards else self._loaded()[0].shard_paths()
        if not urls:
            raise ConfigError(f"data.shards={self.config.shards!r} matches no shard")
        return [u for u in urls if names is None or shard_name(u) in names]

    def _settings(self, rows: list[IndexRow], validation: bool, **overrides) -> StreamSettings:
        """Stream settings for the samples `rows` (their lengths set the buckets)."""
        c, index = self.config, self._loaded()[0]
        lengths = [sequence_length(r, c.prompt, index.codec.frame_rate) for r in rows]
        return StreamSettings(
            urls=self._urls(),
            symbols=index.symbols,
            frame_rate=index.codec.frame_rate,
            prompt=c.prompt,
            max_tokens=c.max_tokens,
            max_batch_size=c.max_batch_size,
            boundaries=bucket_boundaries(lengths, c.n_buckets),
            seed=c.seed,
            max_skip_fraction=c.max_skip_fraction,
            n_levels=index.codec.n_levels,
            codebook_size=index.codec.codebook_size,
            balance=RankBalance(self._rows_by_shard(), validation),
            **overrides,
        )

    def _rows_by_shard(self) -> dict[str, list[IndexRow]]:
        """Every index row, by shard file name, in shard order: what ranks count batches from."""
        rows: dict[str, list[IndexRow]] = {}
        for row in self._loaded()[0].samples:
            rows.setdefault(row.shard, []).append(row)
        return rows

    def _world_size(self) -> int:
        """Ranks of the run (the trainer's, else torch.distributed's, as the stream sees them)."""
        return self.trainer.world_size if self.trainer is not None else pytorch_worker_info()[1]

    def train_stream(self) -> ShardStream:
        index, split = self._loaded()
        c, val_keys = self.config, split.val_keys
        rows = [r for r in index.samples if r.key not in val_keys]
        if not rows:
            raise ConfigError(
                "every utterance went to validation; lower data.val_speakers / data.val_utterances"
            )
        per_worker = None
        if c.batches_per_epoch is not None:
            per_worker = math.ceil(c.batches_per_epoch / max(1, c.num_workers))
        settings = self._settings(
            rows,
            validation=False,
            shuffle_buffer=c.shuffle_buffer,
            exclude=val_keys,
            resampled=c.batches_per_epoch is not None,
            batches_per_worker=per_worker,
        )
        self._check_shards_per_rank(len(settings.urls))
        return ShardStream(settings, self.errors)

    def val_stream(self) -> ShardStream:
        index, split = self._loaded()
        val_keys = split.val_keys
        rows = [r for r in index.samples if r.key in val_keys]
        settings = self._settings(rows, validation=True, keep=val_keys, fixed_prompts=True)
        settings.urls = self._urls({r.shard for r in rows})
        return ShardStream(settings, self.errors)

    def _check_shards_per_rank(self, n_shards: int) -> None:
        """Ranks split the training shards: each needs one; unequal shares cost samples each epoch."""
        world = self._world_size()
        if world == 1 or self.config.batches_per_epoch is not None:
            return
        if n_shards < world:
            raise ConfigError(
                f"data: {n_shards} training shards for {world} ranks: every rank needs at least one; "
                "prepare smaller shards (prepare.py max_shard_mb=...) or set data.batches_per_epoch"
            )
        if n_shards % world:
            log.warning(
                "%d shards over %d ranks: ranks get unequal shares, and every rank stops each epoch at "
                "the smallest share's batch count (the rest wait for a later epoch); use a shard count "
                "divisible by the ranks, or data.batches_per_epoch",
                n_shards,
                world,
            )

    def _loader(self, stream: ShardStream) -> EpochDataLoader:
        workers = self.config.num_workers
        return EpochDataLoader(
            stream,
            batch_size=None,
            num_workers=workers,
            persistent_workers=False,
            multiprocessing_context="fork" if workers > 0 else None,
        )

    def train_dataloader(self) -> EpochDataLoader:
        loader = self._loader(self.train_stream())
        if self._resume:  # continue the interrupted epoch at the batch after the last one trained on
            loader.dataset.epoch = self._resume["epoch"]
            loader.skip_batches = self._resume["batches"]
            self._resume = None
        return loader

    def state_dict(self) -> dict:
        """Saved in checkpoints: the epoch and how many of its batches were trained on."""
        if self.trainer is None:
            return {}
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
        # Lightning types `current` as _ReadyCompletedTracker; the batch loop's is a _ProcessedTracker.
        processed = progress.processed  # type: ignore[attr-defined]
        return {"epoch": self.trainer.current_epoch, "batches": processed}

    def load_state_dict(self, state: dict) -> None:
        self._resume = dict(state) if state else None

    def val_dataloader(self) -> EpochDataLoader:
        return self._loader(self.val_stream())
