"""Corpus readers: a folder on disk → `Utterance` records, sorted by key.

Layouts:
- `libritts`: `{subset}/{speaker}/{chapter}/{id}.wav` with `{id}.normalized.txt` (else `{id}.original.txt`).
- `ljspeech`: `metadata.csv` (`id|text|normalized text`) and `wavs/{id}.wav`; one speaker.
- `folder`: `{group}/{speaker}/{id}.{wav,flac,ogg,mp3}` with `{id}.txt` beside each file.
- `seed`: the seed project's encoded files, see `valle.data.seed_import`.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from valle.audio import AUDIO_SUFFIXES
from valle.data.records import MissingTranscript, Utterance, make_key
from valle.errors import ConfigError, MissingFileError
from valle.utils.io import read_utf8

log = logging.getLogger(__name__)


ReaderResult = Iterator["Utterance | MissingTranscript"]


def _audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def _read_text(path: Path) -> str:
    return read_utf8(path).strip()


def read_folder(root: Path, language: str) -> ReaderResult:
    """`{group}/{speaker}/{id}.wav` + `{id}.txt`; shallower trees use the root's name as group/speaker."""
    for audio in _audio_files(root):
        parts = audio.relative_to(root).parts
        speaker = parts[-2] if len(parts) >= 2 else root.name
        group = parts[-3] if len(parts) >= 3 else root.name
        text_path = audio.with_suffix(".txt")
        if not text_path.is_file():
            yield MissingTranscript(audio, text_path.name)
            continue
        yield Utterance(
            key=make_key(group, speaker, audio.stem),
            speaker=speaker,
            group=group,
            text=_read_text(text_path),
            language=language,
            audio_path=audio,
            alignment=sidecar_alignment(audio),
        )


def sidecar_alignment(audio: Path) -> Path | None:
    """The forced alignment beside an audio file, `{stem}.TextGrid`, if there is one."""
    path = audio.with_suffix(".TextGrid")
    return path if path.is_file() else None


def read_libritts(root: Path, language: str) -> ReaderResult:
    """LibriTTS / LibriTTS-R: speaker from the file name `{speaker}_{chapter}_{...}`, group = subset."""
    for audio in _audio_files(root):
        stem = audio.name.split(".")[0]
        parts = audio.relative_to(root).parts
        group = parts[0] if len(parts) >= 4 else root.name
        speaker = stem.split("_")[0]
        candidates = [audio.with_name(f"{stem}.normalized.txt"), audio.with_name(f"{stem}.original.txt")]
        text_path = next((c for c in candidates if c.is_file()), None)
        if text_path is None:
            yield MissingTranscript(audio, candidates[0].name)
            continue
        yield Utterance(
            key=make_key(group, speaker, stem),
            speaker=speaker,
            group=group,
            text=_read_text(text_path),
            language=language,
            audio_path=audio,
            alignment=sidecar_alignment(audio),
        )


def read_ljspeech(root: Path, language: str) -> ReaderResult:
    """LJSpeech: `metadata.csv` rows `id|text|normalized`; the normalized text is used when present."""
    metadata = root / "metadata.csv"
    if not metadata.is_file():
        raise MissingFileError(
            f"{metadata}: missing; an LJSpeech-layout corpus has metadata.csv "
            "with lines `id|text|normalized text` and the audio in wavs/"
        )
    speaker, wavs = root.name, root / "wavs"
    listed: set[Path] = set()
    for line_number, row in _metadata_rows(metadata):
        utterance_id = row[0].strip() if row else ""
        if not utterance_id:
            continue
        audio = _ljspeech_audio(wavs, utterance_id)
        listed.add(audio)
        if len(row) not in (2, 3):
            detail = f"{metadata}:{line_number}: {len(row)} fields where `id|text|normalized text` has 3"
            yield MissingTranscript(audio, "", reason="bad metadata row", detail=detail)
        elif not audio.is_file():
            detail = f"{metadata}:{line_number}: no such file {audio}"
            yield MissingTranscript(audio, "", reason="missing audio", detail=detail)
        else:
            yield Utterance(
                key=make_key("ljspeech", speaker, utterance_id),
                speaker=speaker,
                group="ljspeech",
                text=(row[2] if len(row) > 2 and row[2].strip() else row[1]).strip(),
                language=language,
                audio_path=audio,
                alignment=sidecar_alignment(audio),
            )
    for audio in _audio_files(wavs) if wavs.is_dir() else []:
        if audio not in listed:
            yield MissingTranscript(audio, f"a row `{audio.stem}|text|normalized text` in {metadata.name}")


def _ljspeech_audio(wavs: Path, utterance_id: str) -> Path:
    candidates = [wavs / f"{utterance_id}{suffix}" for suffix in AUDIO_SUFFIXES]
    return next((c for c in candidates if c.is_file()), wavs / f"{utterance_id}.wav")


def _metadata_rows(metadata: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) per line of an LJSpeech metadata.csv.

    LJSpeech's own file has unbalanced quotes inside unquoted fields (`He said "yes|He said "yes`), so quotes
    mean nothing there; a spreadsheet (Excel) quotes a field that holds `|` or `"` and doubles the quotes in
    it. So a line is read as CSV with quotes only when one of its fields starts with a quote.
    """
    rows = []
    for number, line in enumerate(read_utf8(metadata).lstrip("\ufeff").splitlines(), start=1):
        plain = next(csv.reader([line], delimiter="|", quoting=csv.QUOTE_NONE), [])
        quoted = any(field.startswith('"') for field in plain)
        rows.append((number, next(csv.reader([line], delimiter="|"), []) if quoted else plain))
    return sorted(rows, key=lambda row: row[1])


def _read_seed(root: Path, language: str) -> ReaderResult:
    from valle.data.seed_import import read_seed

    yield from read_seed(root, language)


READERS: dict[str, Callable[[Path, str], ReaderResult]] = {
    "folder": read_folder,
    "libritts": read_libritts,
    "ljspeech": read_ljspeech,
    "seed": _read_seed,
}


def read_corpus(
    layout: str, root: str | Path, language: str
) -> tuple[list[Utterance], list[MissingTranscript]]:
    """Read a corpus folder.

    Args:
        layout: one of `READERS` ("folder", "libritts", "ljspeech", "seed").
        root: the corpus folder.
        language: espeak-ng language for every utterance (the seed's files may carry their own).

    Returns:
        (utterances sorted by key, audio files that had no transcript).

    Raises:
        ValueError: unknown layout, an empty corpus, or a key used twice.
    """
    if layout not in READERS:
        raise ConfigError(f"unknown layout {layout!r}; choose one of {sorted(READERS)}")
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"input={root}: no such folder")
    utterances: list[Utterance] = []
    missing: list[MissingTranscript] = []
    for item in READERS[layout](root, language):
        if isinstance(item, MissingTranscript):
            missing.append(item)
        else:
            utterances.append(item)
    if not utterances and not missing:
        raise ConfigError(
            f"input={root}: no audio found for layout={layout!r}; "
            f"check the layout (choices: {sorted(READERS)}) and the folder"
        )
    utterances.sort(key=lambda u: u.key)
    duplicates = sorted(k for k, n in Counter(u.key for u in utterances).items() if n > 1)
    if duplicates:
        files = [str(u.audio_path) for u in utterances if u.key == duplicates[0]]
        raise ConfigError(
            f"input={root}: the key {duplicates[0]!r} names {len(files)} utterances ({', '.join(files)}); "
            "utterance ids must be unique within a speaker: rename or remove all but one"
        )
    _warn_shared_speaker_names(utterances)
    return utterances, missing


def _warn_shared_speaker_names(utterances: list[Utterance]) -> None:
    """A speaker is named by its folder alone, so `train/spk1` and `test/spk1` are one speaker (the
    usual meaning of a seen-speaker split), and so are `male/spk1` and `female/spk1`: say so."""
    groups: dict[str, set[str]] = {}
    for u in utterances:
        groups.setdefault(u.speaker, set()).add(u.group)
    shared = {speaker: sorted(g) for speaker, g in groups.items() if len(g) > 1}
    for speaker, names in sorted(shared.items())[:5]:
        log.warning(
            "speaker %r is in %d groups (%s): prepare treats them as one speaker (speaker-level splits, "
            "same-speaker prompts); if they are different people, give their folders different names",
            speaker,
            len(names),
            ", ".join(names),
        )
    if len(shared) > 5:
        log.warning("... and %d more speaker names shared between groups", len(shared) - 5)
