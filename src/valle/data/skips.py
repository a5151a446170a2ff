"""Which samples a pass over the shards could not deliver, against what the index lists.

A damaged shard loses samples loudly (a cut tar raises, a sample lacks a member, codes leave the
codebook) or silently: a damaged tar header reads as the end of the archive, and tarfile raises
nothing. Counting the samples each shard delivers against the index's count catches both.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np

from valle.errors import ConfigError

log = logging.getLogger(__name__)

# Below this many listed samples a pass is judged only at its end: one bad shard early on must not
# stop a run whose data is mostly fine. Endless (resampled) passes are judged from here on.
EARLY_JUDGEMENT_SAMPLES = 1000


def check_codes(codes: np.ndarray, n_levels: int | None, codebook_size: int | None, where: str) -> None:
    """Raise ValueError unless `codes` [levels, frames] fit the codec (a flipped byte usually does not:
    an embedding lookup would then crash the training step instead of skipping the sample)."""
    if n_levels is not None and codes.shape[0] != n_levels:
        raise ValueError(f"{where}: codes have {codes.shape[0]} levels, the index's codec {n_levels}")
    if (
        codebook_size is not None
        and codes.size
        and (int(codes.min()) < 0 or int(codes.max()) >= codebook_size)
    ):
        raise ValueError(
            f"{where}: codes outside [0, {codebook_size}) (damaged data); re-run prepare for this shard"
        )


class SkipTally:
    """One reader's pass: samples delivered per shard, the shortfall against the index, and the limit.

    Args:
        listed: shard file name → samples the index lists in it (shards it does not know count
            only the samples that arrived and failed).
        max_fraction: the share of listed samples a pass may lose before it stops with an error.
        shard_name: URL → shard file name.
    """

    def __init__(
        self,
        listed: Mapping[str, int],
        max_fraction: float,
        shard_name: Callable[[str], str] = lambda url: Path(url).name,
    ) -> None:
        self.listed, self.max_fraction, self.shard_name = listed, max_fraction, shard_name
        self.open: dict[
            str, int
        ] = {}  # URL → times opened, for shards whose samples may still arrive, in order
        self.delivered: Counter = Counter()
        self.failed: Counter = Counter()
        self.expected = 0
        self.skipped = 0

    def opening(self, urls: Iterable[dict]) -> Iterator[dict]:
        """Pass webdataset's `{"url": ...}` items through, noting each shard as it is opened."""
        for item in urls:
            self.open[item["url"]] = self.open.get(item["url"], 0) + 1  # resampled: maybe twice in a row
            yield item

    def delivered_one(self, url: str) -> None:
        self._settle_before(url)
        self.delivered[url] += 1

    def failed_one(self, url: str) -> None:
        self._settle_before(url)
        self.failed[url] += 1

    def finish(self) -> None:
        """The pass is over: settle every shard and judge the whole pass."""
        for url in list(self.open):
            self._settle(url)
        self._judge()
        if self.skipped:
            log.warning(
                "data: this pass skipped %d of %d samples (%.1f%%; data.max_skip_fraction=%g)",
                self.skipped,
                self.expected,
                100 * self.skipped / max(self.expected, 1),
                self.max_fraction,
            )

    def _settle_before(self, url: str) -> None:
        # Shards are read one after the other: a sample from `url` means every shard opened before it is done.
        if url in self.open:
            for earlier in list(self.open)[: list(self.open).index(url)]:
                self._settle(earlier)

    def _settle(self, url: str) -> None:
        times = self.open.pop(url)
        name = self.shard_name(url)
        delivered, failed = self.delivered.pop(url, 0), self.failed.pop(url, 0)
        listed = self.listed[name] * times if name in self.listed else delivered + failed
        lost = max(listed - delivered, failed)
        self.expected += max(listed, delivered + failed)
        if lost:
            self.skipped += lost
            log.warning(
                "%s: %d of its %d samples could not be read and are skipped (%d skipped so far in this "
                "pass); re-run prepare for this shard",
                name,
                lost,
                listed,
                self.skipped,
            )
        if self.expected >= EARLY_JUDGEMENT_SAMPLES:
            self._judge()

    def _judge(self) -> None:
        if self.expected and self.skipped / self.expected > self.max_fraction:
            raise ConfigError(
                f"data: {self.skipped} of {self.expected} samples "
                f"({100 * self.skipped / self.expected:.1f}%) "
                f"could not be read, more than data.max_skip_fraction={self.max_fraction:g}; the "
                "warnings above name the damaged shards: re-run prepare for them (or raise "
                "data.max_skip_fraction)"
            )
