"""The streaming pipeline: shard URLs → samples with prompts → token-budget batches.

Runs inside each DataLoader worker. Shards are split by node (DDP rank) and then by worker, so every
sample is read by exactly one worker of one rank in an epoch; or, for fixed-length epochs on many
nodes, every worker draws shards at random with its own seed (`resampled`). With several ranks,
every rank yields the same number of batches per epoch (`RankBalance`), or DDP would hang.
"""

from __future__ import annotations

import glob
import logging
import multiprocessing
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset
from webdataset.filters import _shuffle
from webdataset.utils import pytorch_worker_info

from valle.data.alignment import frame_symbols, uniform_durations
from valle.data.batching import batch_by_tokens, collate, split_count
from valle.data.index import IndexRow
from valle.data.shards import ShardSample, decode_sample
from valle.data.skips import SkipTally, check_codes
from valle.data.training_prompts import PromptConfig, PromptedSample, attach_prompts
from valle.text.symbols import SymbolMap
from valle.utils.batch import Batch

log = logging.getLogger(__name__)


def expand_shards(source: str | list[str]) -> list[str]:
    """Shard sources → a list of URLs: local globs (`/data/shard-*.tar`), brace lists
    (`shard-{000000..000009}.tar`), `pipe:` commands and URLs that webdataset opens; `::` joins lists."""
    if isinstance(source, list):
        return [url for item in source for url in expand_shards(item)]
    urls: list[str] = []
    for url in wds.shardlists.expand_urls(source):
        is_local = "://" not in url and not url.startswith("pipe:")
        urls.extend(sorted(glob.glob(url)) if is_local and any(c in url for c in "*?[") else [url])
    return urls


class ErrorCounter:
    """A webdataset handler that logs a bad shard or sample, counts it, and lets the stream go on.

    The count lives in shared memory, so errors met by DataLoader workers (forked) add up in the
    main process too.
    """

    def __init__(self) -> None:
        self._count = multiprocessing.get_context("fork").Value("i", 0)

    def __call__(self, error: Exception) -> bool:
        with self._count.get_lock():
            self._count.value += 1
        log.warning("skipping unreadable shard data: %r", error)
        return True

    @property
    def count(self) -> int:
        return int(self._count.value)

    # Spawned processes (ddp_spawn) receive a copy by pickling, which shared memory refuses: they
    # start from the count so far and count on their own.
    def __getstate__(self) -> dict:
        return {"count": self.count}

    def __setstate__(self, state: dict) -> None:
        self._count = multiprocessing.get_context("fork").Value("i", state["count"])


def shard_name(url: str) -> str:
    """The shard's file name in a URL (`/data/shard-000001.tar`, `pipe:cat .../shard-000001.tar`, `s3://...?x`)."""
    return Path(url.split("?")[0]).name


@dataclass
class RankBalance:
    """How every rank of a DDP run yields the same number of batches per epoch (docs/data.md).

    Every rank knows the index and how the shards are split, so it counts every rank's batches
    without reading a shard: it runs the stream's own pipeline (prompts, shuffle buffer, batching,
    with each reader's seed) over stand-ins made from the index rows, which have the samples' lengths
    and nothing else. All ranks agree on one count. Training stops every rank at the smallest count;
    validation goes on to the largest, a rank that runs short repeating its last batch flagged
    `repeat` (the module skips those), so every validation sample is evaluated exactly once. When a
    shard reads differently from its index rows (damaged data), a training rank that runs short starts
    another pass over its shards. Validation shares its samples between ranks (every rank reads every
    validation shard): a validation split often sits in fewer shards than there are ranks.

    Args:
        rows: shard file name → its index rows, in shard order.
        validation: pad to the largest count and share the samples (True), or stop at the smallest.
    """

    rows: dict[str, list[IndexRow]]
    validation: bool = False


class _Frames:
    """Stands in for codes [levels, frames]: the shape and column slices of one, without the data."""

    __slots__ = ("shape",)

    def __init__(self, frames: int) -> None:
        self.shape = (1, frames)

    def __getitem__(self, index: tuple[slice, slice]) -> _Frames:
        return _Frames(len(range(*index[1].indices(self.shape[1]))))


def _stand_in(row: IndexRow) -> ShardSample:
    """A sample with the row's frames and symbol count, and no data, for counting batches (the prompt
    choice reads only the codes' shape and column slices, so `_Frames` serves as codes)."""
    return ShardSample(
        key=row.key,
        codes=cast(np.ndarray, _Frames(row.frames)),  # duck-typed: shape and column slices only
        symbols=[""] * row.n_phonemes,
        text="",
        meta={"speaker": row.speaker, "language": row.language},
    )


def _length(prompted: PromptedSample) -> int:
    """[text; prompt; response] positions of a sample: text ids are its symbols + bos, language, eos."""
    return len(prompted.sample.symbols) + 3 + prompted.prompt.shape[1] + prompted.response.shape[1]


@dataclass
class StreamSettings:
    """What one stream needs; built by the DataModule from `DataConfig` and the index."""

    urls: list[str]
    symbols: SymbolMap
    frame_rate: float
    prompt: PromptConfig
    max_tokens: int
    max_batch_size: int
    boundaries: list[int]
    shuffle_buffer: int = 0  # 0: keep order (validation)
    resampled: bool = False
    batches_per_worker: int | None = None  # with `resampled`: the epoch length
    exclude: frozenset[str] = frozenset()  # keys never read (the validation split, for training)
    keep: frozenset[str] | None = None  # keys emitted (the validation split, for validation)
    fixed_prompts: bool = False  # each sample's prompt drawn from (seed, key): the same on every pass
    balance: RankBalance | None = None  # with several ranks: equal batch counts (ignored on one)
    max_skip_fraction: float = 1.0  # a pass that cannot read more of its listed samples stops with an error
    n_levels: int | None = None  # the codec's: codes of another shape are skipped as damaged
    codebook_size: int | None = None  # the codec's: codes outside [0, codebook_size) are skipped as damaged
    seed: int = 0


class ShardStream(IterableDataset):
    """An IterableDataset of padded batches (see `valle.data.batching.collate`)."""

    def __init__(self, settings: StreamSettings, errors: ErrorCounter | None = None):
        super().__init__()
        self.settings = settings
        self.errors = errors or ErrorCounter()
        self.epoch = 0  # advanced by EpochDataLoader before workers start, so each epoch reshuffles

    def _reader_rng(self, rank: int, worker: int) -> random.Random:
        return random.Random(f"{self.settings.seed}/{self.epoch}/{rank}/{worker}")

    @property
    def _validation(self) -> bool:
        return self.settings.balance is not None and self.settings.balance.validation

    def _shares_samples(self, world_size: int) -> bool:
        """Whether ranks share the kept samples (validation on several ranks) rather than the shards."""
        return self._validation and world_size > 1

    def _rank_urls(self, rank: int, world_size: int) -> list[str]:
        """The shards `rank` reads this epoch (its workers split them)."""
        urls = list(self.settings.urls)
        if self.settings.shuffle_buffer:  # the same order on every rank and worker: seeded by epoch only
            random.Random(f"{self.settings.seed}/{self.epoch}").shuffle(urls)
        return urls if self._shares_samples(world_size) else urls[rank::world_size]

    def _rank_keep(self, rank: int, world_size: int) -> frozenset[str] | None:
        """The keys `rank` emits (None: every key not excluded)."""
        keep = self.settings.keep
        if keep is None or not self._shares_samples(world_size):
            return keep
        return frozenset(sorted(keep)[rank::world_size])

    def _shard_urls(self, rng: random.Random) -> Iterator[dict]:
        if self.settings.resampled:
            while True:
                yield {"url": rng.choice(self.settings.urls)}
        rank, world_size, worker, n_workers = pytorch_worker_info()
        for url in self._rank_urls(rank, world_size)[worker::n_workers]:
            yield {"url": url}

    def _samples(self, rng: random.Random) -> Iterator[ShardSample]:
        s = self.settings
        listed = {name: len(rows) for name, rows in s.balance.rows.items()} if s.balance else {}
        tally = SkipTally(listed, s.max_skip_fraction, shard_name)
        raw = wds.tarfile_to_samples(handler=self.errors)(tally.opening(self._shard_urls(rng)))
        for sample in raw:
            url = sample.get("__url__", "")
            try:
                decoded = decode_sample(sample)
                check_codes(decoded.codes, s.n_levels, s.codebook_size, f"{url}:{decoded.key}")
            except ValueError as error:
                self.errors(error)
                tally.failed_one(url)
                continue
            tally.delivered_one(url)
            yield decoded
        tally.finish()

    def _prompted(
        self, samples: Iterator[ShardSample], rng: random.Random, rank: int, world_size: int
    ) -> Iterator[PromptedSample]:
        """Samples → prompted samples in batching order: the one pipeline for real data and stand-ins."""
        s = self.settings
        kept = (sample for sample in samples if sample.key not in s.exclude)
        prompted = attach_prompts(
            kept,
            s.prompt,
            s.frame_rate,
            rng,
            keep=self._rank_keep(rank, world_size),
            fixed_seed=s.seed if s.fixed_prompts else None,
        )
        if s.shuffle_buffer:
            prompted = _shuffle(prompted, s.shuffle_buffer, min(100, s.shuffle_buffer), rng)
        return prompted

    def _item(self, prompted: PromptedSample) -> dict:
        sample = prompted.sample
        unknown: Counter = Counter()  # per item: workers' counts reach the trainer inside the batches
        ids = self.settings.symbols.encode(sample.symbols, sample.language, unknown)
        durations = sample.durations
        aligned = durations is not None
        if durations is None:  # unaligned: an even spread (trains no advance loss: `aligned` is False)
            durations = uniform_durations(len(ids), sample.codes.shape[1])
        said = frame_symbols(durations)[prompted.response_start :]
        return {
            "key": sample.key,
            "prompt_key": prompted.prompt_key,
            "speaker": sample.speaker,
            "language": sample.language,
            "text": torch.tensor(ids, dtype=torch.long),
            "prompt": torch.from_numpy(prompted.prompt.astype("int64")),
            "codes": torch.from_numpy(prompted.response.astype("int64")),
            "frame_symbols": torch.from_numpy(said),
            "aligned": aligned,
            "unknown_symbols": unknown,
        }

    def _batches(self, rng: random.Random) -> Iterator[Batch]:
        """One pass over this reader's shards (endless when `resampled`)."""
        s = self.settings
        rank, world_size, _, _ = pytorch_worker_info()
        prompted = self._prompted(self._samples(rng), rng, rank, world_size)
        for group in batch_by_tokens(prompted, _length, s.boundaries, s.max_tokens, s.max_batch_size):
            yield collate([self._item(p) for p in group], s.symbols.pad_id)

    def __iter__(self) -> Iterator[Batch]:
        rank, _, worker, _ = pytorch_worker_info()
        rng = self._reader_rng(rank, worker)
        quota = self.settings.batches_per_worker if self.settings.resampled else self._balanced_quota()
        yield from self._batches(rng) if quota is None else self._exactly(quota, rng)

    # ------------------------------------------------------------------- equal batch counts per rank
    def _counted_batches(self, rank: int, world_size: int, worker: int, n_workers: int) -> int:
        """The batches reader (rank, worker) yields this epoch when its shards read as the index says."""
        s = self.settings
        assert s.balance is not None  # `_balanced_quota` counts only with a balance
        rows = s.balance.rows
        urls = self._rank_urls(rank, world_size)[worker::n_workers]
        stand_ins = (_stand_in(row) for url in urls for row in rows.get(shard_name(url), ()))
        prompted = self._prompted(stand_ins, self._reader_rng(rank, worker), rank, world_size)
        return sum(
            1 for _ in batch_by_tokens(prompted, _length, s.boundaries, s.max_tokens, s.max_batch_size)
        )

    def _balanced_quota(self) -> int | None:
        """The batches this worker yields so that every rank yields the same count (None: one rank)."""
        rank, world_size, worker, n_workers = pytorch_worker_info()
        if self.settings.balance is None or world_size == 1:
            return None
        counts = [
            [self._counted_batches(r, world_size, w, n_workers) for w in range(n_workers)]
            for r in range(world_size)
        ]
        totals = [sum(per_worker) for per_worker in counts]
        agreed = max(totals) if self._validation else min(totals)
        return split_count(agreed, counts[rank])[worker]

    def _exactly(self, quota: int, rng: random.Random) -> Iterator[Batch]:
        """`quota` batches: training stops there (or passes over its shards again when they end first);
        validation pads with its last batch flagged `repeat` (the module skips those)."""
        passes = self._passes(rng)
        produced, last = 0, Batch.empty_repeat()
        while produced < quota and (batch := next(passes, None)) is not None:
            yield batch
            produced, last = produced + 1, batch
        for _ in range(quota - produced):
            yield replace(last, repeat=True)
        if self._validation and next(passes, None) is not None:
            log.warning(
                "validation: this rank reached the agreed %d batches before the end of its samples "
                "(its shards read differently from the index); the rest are not evaluated",
                quota,
            )

    def _passes(self, rng: random.Random) -> Iterator[Batch]:
        """Validation: one pass. Training: pass after pass, for a reader whose shards yield fewer
        batches than their index rows promise (unreadable samples)."""
        if self._validation or self.settings.resampled:
            yield from self._batches(rng)
            return
        while True:
            produced = 0
            for batch in self._batches(rng):
                produced += 1
                yield batch
            if not produced:
                rank, _, worker, _ = pytorch_worker_info()
                raise RuntimeError(
                    f"rank {rank}, data worker {worker}: its shards yielded no sample, so it "
                    "cannot yield its share of the batches every rank must agree on; see the "
                    "warnings above for unreadable shards"
                )


class EpochDataLoader(torch.utils.data.DataLoader):
    """Advances the stream's epoch before each pass, so the shard order and seeds change per epoch
    (workers receive a fresh copy of the dataset at every pass).

    `skip_batches` drops that many batches at the start of the next pass only: how a resumed run
    continues mid-epoch where it stopped. The stream is deterministic given (seed, epoch), so the
    batches after the skipped ones are exactly those the interrupted run would have seen next.
    """

    dataset: ShardStream
    skip_batches: int = 0

    def __iter__(self):
        self.dataset.epoch += 1
        skip, self.skip_batches = self.skip_batches, 0
        iterator = super().__iter__()
        for _ in range(skip):
            next(iterator, None)
        return iterator
