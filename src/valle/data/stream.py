"""The streaming pipeline: shard URLs → samples with prompts → token-budget batches.

Runs inside each DataLoader worker. Shards are split by node (DDP rank) and then by worker, so every
sample is read by exactly one worker of one rank in an epoch; or, for fixed-length epochs on many
nodes, every worker draws shards at random with its own seed (`resampled`).
"""

from __future__ import annotations

import glob
import logging
import multiprocessing
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import webdataset as wds
from torch.utils.data import IterableDataset
from webdataset.filters import _shuffle
from webdataset.utils import pytorch_worker_info

from valle.data.batching import batch_by_tokens, collate
from valle.data.prompts import PromptConfig, PromptedSample, attach_prompts
from valle.data.shards import ShardSample, decode_sample
from valle.text.symbols import SymbolMap

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
    seed: int = 0


class ShardStream(IterableDataset):
    """An IterableDataset of padded batches (see `valle.data.batching.collate`)."""

    def __init__(self, settings: StreamSettings, errors: ErrorCounter | None = None):
        super().__init__()
        self.settings = settings
        self.errors = errors or ErrorCounter()
        self.epoch = 0  # advanced by EpochDataLoader before workers start, so each epoch reshuffles
        self.unknown_symbols: Counter = Counter()

    def _rng(self) -> random.Random:
        rank, _, worker, _ = pytorch_worker_info()
        return random.Random(f"{self.settings.seed}/{self.epoch}/{rank}/{worker}")

    def _shard_urls(self, rng: random.Random) -> Iterator[dict]:
        urls = list(self.settings.urls)
        if self.settings.resampled:
            while True:
                yield {"url": rng.choice(urls)}
        if self.settings.shuffle_buffer:  # the same order on every rank and worker: seeded by epoch only
            random.Random(f"{self.settings.seed}/{self.epoch}").shuffle(urls)
        rank, world_size, worker, n_workers = pytorch_worker_info()
        for url in urls[rank::world_size][worker::n_workers]:
            yield {"url": url}

    def _samples(self, rng: random.Random) -> Iterator[ShardSample]:
        raw = wds.tarfile_to_samples(handler=self.errors)(self._shard_urls(rng))
        for sample in raw:
            try:
                decoded = decode_sample(sample)
            except ValueError as error:
                self.errors(error)
                continue
            if decoded.key not in self.settings.exclude:
                yield decoded

    def _item(self, prompted: PromptedSample) -> dict:
        sample = prompted.sample
        ids = self.settings.symbols.encode(sample.symbols, sample.language, self.unknown_symbols)
        return {"key": sample.key, "prompt_key": prompted.prompt_key, "speaker": sample.speaker,
                "language": sample.language, "text": torch.tensor(ids, dtype=torch.long),
                "prompt": torch.from_numpy(prompted.prompt.astype("int64")),
                "codes": torch.from_numpy(prompted.response.astype("int64"))}

    def __iter__(self) -> Iterator[dict]:
        s = self.settings
        rng = self._rng()
        prompted = attach_prompts(self._samples(rng), s.prompt, s.frame_rate, rng, keep=s.keep)
        if s.shuffle_buffer:
            prompted = _shuffle(prompted, s.shuffle_buffer, min(100, s.shuffle_buffer), rng)
        items = (self._item(p) for p in prompted)
        length = lambda item: len(item["text"]) + item["prompt"].shape[1] + item["codes"].shape[1]  # noqa: E731
        batches = batch_by_tokens(items, length, s.boundaries, s.max_tokens, s.max_batch_size)
        for n, batch in enumerate(batches):
            if s.batches_per_worker is not None and n >= s.batches_per_worker:
                break
            yield collate(batch, s.symbols.pad_id)


class EpochDataLoader(torch.utils.data.DataLoader):
    """Advances the stream's epoch before each pass, so the shard order and seeds change per epoch
    (workers receive a fresh copy of the dataset at every pass).

    `skip_batches` drops that many batches at the start of the next pass only: how a resumed run
    continues mid-epoch where it stopped. The stream is deterministic given (seed, epoch), so the
    batches after the skipped ones are exactly those the interrupted run would have seen next.
    """

    skip_batches: int = 0

    def __iter__(self):
        self.dataset.epoch += 1
        skip, self.skip_batches = self.skip_batches, 0
        iterator = super().__iter__()
        for _ in range(skip):
            next(iterator, None)
        return iterator
