"""The record every corpus reader yields, before encoding."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Utterance:
    """One utterance of a corpus, identified by `key = "{group}/{speaker}/{id}"`.

    A reader of raw audio fills `audio_path`; an importer of already-encoded data (the seed's
    `.enc`/`.dac`/HDF5 files) fills `codes` instead and leaves `audio_path` None.
    """

    key: str
    speaker: str
    group: str
    text: str
    language: str
    audio_path: Path | None = None
    codes: np.ndarray | None = None  # int16 [levels, frames], only for imported data
    phonemes: list[str] | None = None  # symbols, when the source already phonemized the text
    duration: float | None = None  # seconds; known up front for imported data
    alignment: Path | None = None  # a TextGrid with the words' (and phones') times (data/alignment.py)
    extra: dict = field(default_factory=dict)  # source-specific metadata kept in the shard's json


def make_key(group: str, speaker: str, utterance_id: str) -> str:
    """`{group}/{speaker}/{id}`, with dots replaced: webdataset splits member names at the first dot."""
    parts = [str(p).replace(".", "_").replace("/", "_") for p in (group, speaker, utterance_id)]
    if not all(parts):
        raise ValueError(f"empty group, speaker or id in key {parts}")
    return "/".join(parts)


class MissingTranscript(Exception):
    """An audio file without its transcript (or a transcript row without usable audio); prepare lists these
    as skipped under `reason`."""

    def __init__(self, audio_path: Path, expected: str, reason: str = "missing transcript", detail: str = ""):
        super().__init__(detail or f"{audio_path}: no transcript (expected {expected})")
        self.audio_path = audio_path
        self.reason = reason
