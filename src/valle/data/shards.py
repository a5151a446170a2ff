"""The shard sample schema: what one utterance looks like inside a webdataset tar.

Member names are `{group}/{speaker}/{id}.{field}`:
- `codes.npy`      int16 [levels, frames]
- `phonemes.json`  {"symbols": [...]} — symbols, not ids: ids come from the index's symbol map, so
                   shards never need rewriting when maps are merged or extended
- `txt`            the original text
- `json`           speaker, group, language, duration (s), sample_rate, codec, frames, format version
- `durations.npy`  optional int32 [symbols + 3]: frames per text id `[<bos>, <lang>, *symbols, <eos>]`,
                   from a forced alignment (`valle.data.alignment`)
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import webdataset as wds

from valle.errors import ConfigError
from valle.utils.io import atomic_output

SHARD_FORMAT_VERSION = 1
SHARD_PATTERN = "shard-{:06d}.tar"


@dataclass
class ShardSample:
    """One decoded sample, as the DataModule sees it."""

    key: str
    codes: np.ndarray  # int16 [levels, frames]
    symbols: list[str]
    text: str
    meta: dict
    durations: np.ndarray | None = None  # int32 [len(symbols) + 3] frames per text id, when aligned

    @property
    def speaker(self) -> str:
        return self.meta["speaker"]

    @property
    def language(self) -> str:
        return self.meta["language"]

    def to_wds(self) -> dict:
        """The dict TarWriter stores (it encodes by extension: npy, json, txt)."""
        members = {
            "__key__": self.key,
            "codes.npy": self.codes.astype(np.int16),
            "txt": self.text,
            "phonemes.json": {"symbols": self.symbols},
            "json": self.meta,
        }
        if self.durations is not None:
            members["durations.npy"] = self.durations.astype(np.int32)
        return members


def decode_sample(raw: dict) -> ShardSample:
    """A raw webdataset sample (member name → bytes) → ShardSample; raises ValueError on a bad sample."""
    try:
        codes = np.load(io.BytesIO(raw["codes.npy"]), allow_pickle=False)
        meta = json.loads(raw["json"])
        symbols = json.loads(raw["phonemes.json"])["symbols"]
        text = raw["txt"].decode("utf-8")
        durations = np.load(io.BytesIO(raw["durations.npy"])) if "durations.npy" in raw else None
    except (KeyError, ValueError, OSError) as error:
        where = f"{raw.get('__url__', '?')}:{raw.get('__key__', '?')}"
        raise ConfigError(
            f"{where}: malformed shard sample ({error!r}); re-run prepare for this shard"
        ) from error
    if codes.ndim != 2:
        raise ConfigError(f"{raw.get('__key__')}: codes must be [levels, frames], got shape {codes.shape}")
    if durations is not None and (
        len(durations) != len(symbols) + 3 or int(durations.sum()) != codes.shape[1]
    ):
        raise ConfigError(
            f"{raw.get('__key__')}: durations.npy has {len(durations)} entries summing to "
            f"{int(durations.sum())}, expected {len(symbols) + 3} summing to the {codes.shape[1]} frames; "
            "re-run prepare for this shard"
        )
    return ShardSample(
        key=raw["__key__"], codes=codes, symbols=symbols, text=text, meta=meta, durations=durations
    )


def write_shard(path: str | Path, samples: Iterable[ShardSample]) -> int:
    """Write samples to a tar shard atomically (temporary name, renamed when complete).

    Returns:
        the shard's size in bytes.
    """
    path = Path(path)
    with atomic_output(path) as tmp:
        # mtime=0 rather than the clock: the same samples give the same bytes, so a resumed run's
        # shards equal an uninterrupted run's and can be checked byte for byte.
        with wds.TarWriter(str(tmp), mtime=0) as writer:
            for sample in samples:
                writer.write(sample.to_wds())
    return path.stat().st_size
