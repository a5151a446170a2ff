"""The shard index: one JSON file beside the shards that lists every sample.

It carries the symbol map and the codec description, so a folder of shards describes itself.
The DataModule reads it for bucketing (frames, phonemes), prompts (speaker → utterances) and splits.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from valle.codecs.base import CodecInfo
from valle.errors import ConfigError, MissingFileError
from valle.text.symbols import SymbolMap
from valle.utils.io import atomic_write_json

INDEX_NAME = "index.json"
INDEX_FORMAT = "valle-shards"
INDEX_VERSION = 1


@dataclass
class IndexRow:
    key: str
    shard: str
    speaker: str
    group: str
    language: str
    frames: int
    n_phonemes: int
    duration: float
    aligned: bool = False  # the shard holds its frames per text id (`durations.npy`)


@dataclass
class ShardIndex:
    """Everything `prepare` wrote, in one object."""

    codec: CodecInfo
    symbols: SymbolMap
    shards: list[dict]  # {"name", "samples", "bytes"}
    samples: list[IndexRow]
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}
    unaligned: list[dict] = field(
        default_factory=list
    )  # kept without durations: {"path", "reason", "detail"}
    root: Path | None = None

    def shard_paths(self) -> list[str]:
        base = self.root or Path(".")
        return [str(base / shard["name"]) for shard in self.shards]

    def by_speaker(self) -> dict[str, list[IndexRow]]:
        speakers: dict[str, list[IndexRow]] = defaultdict(list)
        for row in self.samples:
            speakers[row.speaker].append(row)
        return dict(speakers)

    def hours(self) -> float:
        return sum(row.duration for row in self.samples) / 3600.0

    def to_dict(self) -> dict:
        return {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "codec": self.codec.to_dict(),
            "symbols": self.symbols.to_dict(),
            "shards": self.shards,
            "samples": [vars(row) for row in self.samples],
            "skipped": self.skipped,
            "unaligned": self.unaligned,
        }

    def save(self, root: str | Path) -> Path:
        path = Path(root) / INDEX_NAME
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | Path) -> ShardIndex:
        """Read `index.json` (or the folder holding it).

        Raises:
            FileNotFoundError: no index there (run `prepare.py` first).
            ValueError: not a valle index, or another format version.
        """
        path = Path(path)
        if path.is_dir():
            path = path / INDEX_NAME
        if not path.is_file():
            raise MissingFileError(
                f"{path}: no shard index; run `python prepare.py input=... output=...` "
                "first, or point data.root at the folder it wrote"
            )
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != INDEX_FORMAT or data.get("version") != INDEX_VERSION:
            raise ConfigError(
                f"{path}: not a valle shard index of version {INDEX_VERSION} "
                f"(format={data.get('format')!r}, version={data.get('version')!r})"
            )
        return cls(
            codec=CodecInfo.from_dict(data["codec"]),
            symbols=SymbolMap.from_dict(data["symbols"]),
            shards=data["shards"],
            samples=[IndexRow(**row) for row in data["samples"]],
            skipped=data.get("skipped", []),
            unaligned=data.get("unaligned", []),
            root=path.parent,
        )
