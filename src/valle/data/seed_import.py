"""Import the seed project's (e-c-k/vall-e) encoded corpora as `Utterance` records, without re-encoding audio.

Two layouts, both chosen only through `layout=seed`:
- per-utterance NumPy pickles `{group}/{speaker}/{id}.enc` (EnCodec/Vocos codes) or `{id}.dac` (DAC codes):
  `np.load(path, allow_pickle=True)[()]` → `{"codes": uint16 [1, L, T], "metadata": {...}}`; very old
  files hold only the array, with the transcript beside it in `{id}.normalized.txt`, `{id}.txt` or
  `{id}.json`;
- `*.h5` / `*.hdf5` files at the top of the folder: one group `{type}/{group}/{speaker}/{id}` per utterance,
  with the dataset `audio` (int16 [T, L]) and the attributes `text`, `phonemes`, `language`, `duration`.
  `type` is `training`, `validation` or `noise`; noise is skipped and the type kept as `extra["split"]`.

Durations come from the codes (frames / frame rate), never from the stored lengths: the seed's scripts write
`metadata.original_length` in samples in one place and in seconds (frames / 75) in another, and some files
carry a wrong value. The stored length is kept (`extra["original_length"]`, `extra["stored_duration"]`) only
as a cross-check, `length_disagreement`, whose findings prepare lists in its summary.

The seed's own token ids (the HDF5 `text` dataset and the `symmap`) are ignored: valle phonemizes the text
again with its own espeak front end, so every symbol comes from one tokenizer. Only an utterance that has
phonemes but no text keeps the seed's phonemes, split into symbols by `split_phoneme_string`.

Security: unpickling runs whatever code the file names. Import `.enc`/`.dac` files only from sources you
trust; the HDF5 variant holds no pickles and is safe to read.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import pickle
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from valle.data.records import MissingTranscript, Utterance, make_key
from valle.errors import ConfigError
from valle.text.phonemize import WORD_SEPARATOR

log = logging.getLogger(__name__)

CODEC_BY_SUFFIX = {".enc": "encodec", ".dac": "dac"}
FRAME_RATE_HZ = {"encodec": 75.0, "dac": 44_100 / 512}  # the seed's defaults: EnCodec 24 kHz, DAC 44 kHz
DEFAULT_SAMPLE_RATE = {"encodec": 24_000, "dac": 44_100}
H5_SUFFIXES = (".h5", ".hdf5")
SKIPPED_SPLITS = ("noise",)  # background noise for the seed's augmentation: audio without a transcript
DAC_FIELDS = ("input_db", "chunk_length", "channels", "padding", "dac_version")
_SIDECAR_TEXT_SUFFIXES = (".normalized.txt", ".txt")
# A stored length agrees with the codes within this fraction of the codes' duration, plus the slack below:
# codes round the audio up to whole frames, and resampling moves the sample count by a few.
LENGTH_TOLERANCE = 0.05
LENGTH_SLACK_SECONDS = 0.05
# espeak's language switches, e.g. "zˈɔnənkˌystə (en)ˈʌpdeɪt(de)"; the seed strips them on loading a file.
_LANGUAGE_FLAG = re.compile(r"\([a-z]{2,3}(?:-[a-z0-9]+)?\)")
_TIES = ("\u0361", "\u035c")  # a tie bar joins the next character too: t͡ʃ is one sound


class _Rejected(Exception):
    """A file that cannot be imported; it is skipped with a warning naming it and the reason."""


@dataclass(frozen=True)
class _Source:
    """One utterance found on disk, before its file is read."""

    key: str
    group: str
    speaker: str
    path: Path  # the .enc/.dac file, or the HDF5 file
    h5_group: Any = None  # the open h5py.Group, for the HDF5 layout
    split: str | None = None  # the HDF5 `type`

    @property
    def origin(self) -> str:
        """The file, and for HDF5 the group inside it: what messages and `extra["source"]` name."""
        return str(self.path) if self.h5_group is None else f"{self.path}:{self.h5_group.name}"


def read_seed(root: Path, language: str) -> Iterator[Utterance | MissingTranscript]:
    """Read a folder of the seed's encoded files, yielding records sorted by key.

    Args:
        root: the folder with `{group}/{speaker}/{id}.enc|.dac` files, or with `*.h5`/`*.hdf5` files.
        language: espeak-ng language for utterances whose file records none; a file's bare language
            ("en") that agrees with it keeps this more specific variant ("en-us").

    Yields:
        Utterances with `codes` (int16 [levels, frames]) and `duration` (seconds) filled, or a
        MissingTranscript for a file without text or phonemes. Unreadable or empty files are skipped
        with a warning.

    Raises:
        ValueError: no seed files, .enc mixed with .dac, pickles mixed with HDF5, or two files with a
            different number of code levels (raised while iterating, when the second one is read).
    """
    root = Path(root)
    pickles, h5_files = _discover(root)
    if pickles:
        _warn_pickles_unsafe()
    first_levels: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        sources = [*(_pickle_source(root, p) for p in pickles), *_h5_sources(stack, h5_files)]
        for source in sorted(sources, key=lambda s: (s.key, s.origin)):
            item = _read_source(source, language)
            if isinstance(item, Utterance):
                _check_levels(first_levels, item)
            if item is not None:
                yield item


def seed_codec_hint(utterances: Iterable[Utterance]) -> str | None:
    """The codec the imported codes came from ("encodec" or "dac"), to check against the configured one.

    Returns None when no utterance says (an HDF5 file without durations records no codec).

    Raises:
        ValueError: the utterances come from more than one codec.
    """
    by_hint: dict[str, str] = {}
    for utterance in utterances:
        hint = utterance.extra.get("codec_hint")
        if hint is not None:
            by_hint.setdefault(hint, str(utterance.extra.get("source", utterance.key)))
    if len(by_hint) > 1:
        examples = ", ".join(f"{hint} (e.g. {source})" for hint, source in sorted(by_hint.items()))
        raise ConfigError(
            f"the seed files mix codecs: {examples}; codes of two codecs cannot share one "
            "model, so import the files of one codec at a time"
        )
    return next(iter(by_hint), None)


def length_disagreement(extra: dict[str, Any], seconds: float, codec_sample_rate: int) -> str | None:
    """Why an imported utterance's stored length disagrees with its codes' duration, or None when it agrees.

    Args:
        extra: the utterance's `extra` (`original_length`, `sample_rate`, or the HDF5 `stored_duration`).
        seconds: the codes' duration (frames / frame rate).
        codec_sample_rate: the codec's rate in Hz (the seed also counted samples at that rate).

    `original_length` agrees when it matches read as samples (at the file's or the codec's rate) or as
    seconds. A missing length has nothing to disagree with.
    """
    if "original_length" in extra:
        name, value = "original_length", extra["original_length"]
        rates = {
            r for r in (extra.get("sample_rate"), codec_sample_rate) if isinstance(r, int | float) and r > 0
        }
        readings = [("seconds", 1.0)] + [(f"samples at {r:g} Hz", float(r)) for r in sorted(rates)]
    elif "stored_duration" in extra:
        name, value, readings = "duration", extra["stored_duration"], [("seconds", 1.0)]
    else:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"{name}={value!r} is not a length; the codes hold {seconds:.2f} s"
    tolerance = LENGTH_TOLERANCE * seconds + LENGTH_SLACK_SECONDS
    if any(abs(value / divisor - seconds) <= tolerance for _, divisor in readings):
        return None
    read = ", ".join(f"{value / divisor:.2f} s as {how}" for how, divisor in readings)
    return f"{name}={value:g} ({read}) disagrees with the codes' {seconds:.2f} s"


def split_phoneme_string(phonemes: str) -> list[str]:
    """The seed's phoneme string → symbols: one per character, combining marks kept on their base.

    Spaces become the word separator `" "` (runs of them collapse to one), and espeak's language
    switches such as "(en)" are dropped. "ðə kæ̃t" → ["ð", "ə", " ", "k", "æ̃", "t"].
    """
    symbols: list[str] = []
    for char in _LANGUAGE_FLAG.sub("", phonemes).strip():
        if char.isspace():
            if symbols and symbols[-1] != WORD_SEPARATOR:
                symbols.append(WORD_SEPARATOR)
        elif (
            symbols
            and symbols[-1] != WORD_SEPARATOR
            and (unicodedata.combining(char) or symbols[-1].endswith(_TIES))
        ):
            symbols[-1] += char
        else:
            symbols.append(char)
    return symbols


# --- finding the files -------------------------------------------------------------------------------


def _discover(root: Path) -> tuple[list[Path], list[Path]]:
    # Pickles anywhere below root; HDF5 only at its top, where the seed writes it.
    pickles = sorted(p for p in root.rglob("*") if p.suffix.lower() in CODEC_BY_SUFFIX and p.is_file())
    h5_files = sorted(p for p in root.iterdir() if p.suffix.lower() in H5_SUFFIXES and p.is_file())
    by_suffix = {p.suffix.lower(): p for p in pickles}
    if len(by_suffix) > 1:
        raise ConfigError(
            f"input={root} mixes EnCodec and DAC codes ({by_suffix['.enc']} and "
            f"{by_suffix['.dac']}); import the files of one codec at a time"
        )
    if pickles and h5_files:
        raise ConfigError(
            f"input={root} holds both per-utterance files ({pickles[0]}, ...) and HDF5 "
            f"({h5_files[0].name}); the seed builds one from the other, so point input= at a "
            "folder with only one of them"
        )
    if not pickles and not h5_files:
        raise ConfigError(
            f"input={root}: no seed files found; layout=seed expects "
            "{group}/{speaker}/{id}.enc or .dac files, or *.h5 / *.hdf5 files at the top"
        )
    return pickles, h5_files


def _pickle_source(root: Path, path: Path) -> _Source:
    parts = path.relative_to(root).parts
    speaker = parts[-2] if len(parts) >= 2 else root.name
    group = parts[-3] if len(parts) >= 3 else root.name
    return _Source(key=make_key(group, speaker, path.stem), group=group, speaker=speaker, path=path)


def _h5_sources(stack: contextlib.ExitStack, h5_files: list[Path]) -> list[_Source]:
    import h5py

    sources: list[_Source] = []
    for path in h5_files:
        handle = stack.enter_context(h5py.File(path, "r"))
        names: list[str] = []

        def collect(name: str, node: Any, names: list[str] = names) -> None:
            if isinstance(node, h5py.Group) and isinstance(node.get("audio"), h5py.Dataset):
                names.append(name)

        handle.visititems(collect)
        sources.extend(s for s in (_h5_source(path, handle[name]) for name in names) if s is not None)
    return sources


def _h5_source(path: Path, group: Any) -> _Source | None:
    parts = group.name.strip("/").split("/")
    if len(parts) < 3:
        log.warning("%s:%s: skipped, not under {type}/{group}/{speaker}/{id}", path, group.name)
        return None
    if parts[0] in SKIPPED_SPLITS:
        return None
    speaker, utterance_id = parts[-2], parts[-1]
    # The seed names a speaker by its folder below the data root, which may be several levels deep.
    group_name = "_".join(parts[1:-2]) or path.stem
    return _Source(
        key=make_key(group_name, speaker, utterance_id),
        group=group_name,
        speaker=speaker,
        path=path,
        h5_group=group,
        split=parts[0],
    )


@functools.cache
def _warn_pickles_unsafe() -> None:
    log.warning(
        "layout=seed: reading the seed's .enc/.dac files unpickles them, and a pickle can run "
        "arbitrary code; import only files you made or trust (the HDF5 variant is safe)"
    )


# --- reading one utterance ---------------------------------------------------------------------------


def _read_source(source: _Source, language: str) -> Utterance | MissingTranscript | None:
    try:
        if source.h5_group is None:
            return _read_pickle(source, language)
        return _read_h5(source, language)
    except _Rejected as reason:
        log.warning("%s: skipped, %s", source.origin, reason)
        return None


def _read_pickle(source: _Source, language: str) -> Utterance | MissingTranscript:
    raw_codes, metadata = _load_pickle(source.path)
    codes = _as_codes(raw_codes)
    transcript = _transcript(metadata) or _sidecar_transcript(source.path)
    if transcript is None:
        expected = f"`text` or `phonemes` in its metadata, or {source.path.stem}.txt beside it"
        return MissingTranscript(source.path, expected)
    hint = CODEC_BY_SUFFIX[source.path.suffix.lower()]
    extra = {
        "source": source.origin,
        "codec_hint": hint,
        "sample_rate": _plain(metadata.get("sample_rate", DEFAULT_SAMPLE_RATE[hint])),
    }
    extra.update({k: _plain(metadata[k]) for k in (*DAC_FIELDS, "original_length") if k in metadata})
    duration = codes.shape[1] / FRAME_RATE_HZ[hint]
    language = _language(metadata.get("language"), language)
    return _utterance(source, codes, transcript, language, duration, extra)


def _read_h5(source: _Source, language: str) -> Utterance | MissingTranscript:
    group = source.h5_group
    metadata = {name: _plain(value) for name, value in group.attrs.items()}
    codes = _as_codes(np.asarray(group["audio"]).T)  # the seed stores [frames, levels]
    transcript = _transcript(metadata)
    if transcript is None:
        return MissingTranscript(Path(source.origin), "a `text` or `phonemes` attribute on the group")
    # The HDF5 file records no codec; the frame rate tells EnCodec (75 Hz) from DAC 44 kHz (86 Hz).
    hint = _hint_from_frame_rate(codes.shape[1], metadata.get("duration"))
    extra: dict[str, Any] = {"source": source.origin, "codec_hint": hint, "split": source.split}
    if hint is not None or "sample_rate" in metadata:
        extra["sample_rate"] = metadata.get("sample_rate", DEFAULT_SAMPLE_RATE.get(hint or ""))
    if "duration" in metadata:  # not "duration": the shard's json takes `extra` over its own keys
        extra["stored_duration"] = metadata["duration"]
    duration = codes.shape[1] / FRAME_RATE_HZ[hint or "encodec"]
    language = _language(metadata.get("language"), language)
    return _utterance(source, codes, transcript, language, duration, extra)


def _utterance(
    source: _Source,
    codes: np.ndarray,
    transcript: tuple[str, list[str] | None],
    language: str,
    duration: float,
    extra: dict[str, Any],
) -> Utterance:
    text, phonemes = transcript
    if phonemes is not None:
        extra["text_from"] = "phonemes"
    return Utterance(
        key=source.key,
        speaker=source.speaker,
        group=source.group,
        text=text,
        language=language,
        codes=codes,
        phonemes=phonemes,
        duration=duration,
        extra=extra,
    )


def _load_pickle(path: Path) -> tuple[Any, dict[str, Any]]:
    try:
        artifact = np.load(path, allow_pickle=True)[()]
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as error:
        raise _Rejected(f"not a NumPy file the seed wrote ({error})") from error
    if not isinstance(artifact, dict):
        return artifact, {}  # the oldest files hold only the codes
    if "codes" not in artifact:
        raise _Rejected(f"no `codes` entry (keys: {sorted(artifact)})")
    metadata = artifact.get("metadata")
    return artifact["codes"], metadata if isinstance(metadata, dict) else {}


def _as_codes(raw: Any) -> np.ndarray:
    """Validate codes and return them as int16 [levels, frames], the dtype of valle's shards."""
    codes = np.asarray(raw)
    if codes.ndim == 3 and codes.shape[0] == 1:
        codes = codes[0]
    if codes.ndim != 2:
        raise _Rejected(f"codes have shape {codes.shape}; expected [1, levels, frames] or [levels, frames]")
    if codes.size == 0:
        raise _Rejected(f"codes are empty (shape {codes.shape})")
    if not np.issubdtype(codes.dtype, np.integer):
        raise _Rejected(f"codes have dtype {codes.dtype}; expected integers")
    if codes.min() < 0 or codes.max() > np.iinfo(np.int16).max:
        raise _Rejected(f"code values span {codes.min()}..{codes.max()}, outside int16")
    return codes.astype(np.int16)


def _check_levels(first: dict[str, Any], utterance: Utterance) -> None:
    # Codes of different level counts come from different codec settings and cannot share one model.
    assert utterance.codes is not None
    levels, source = utterance.codes.shape[0], utterance.extra["source"]
    first.setdefault("levels", levels)
    first.setdefault("source", source)
    if levels != first["levels"]:
        raise ConfigError(
            f"file {source} has {levels} levels but {first['source']} has {first['levels']}; "
            "import one codec setting at a time"
        )


# --- metadata ----------------------------------------------------------------------------------------


def _transcript(metadata: dict[str, Any]) -> tuple[str, list[str] | None] | None:
    """(text, None) when there is text; ("", symbols) when there are only phonemes; else None."""
    text = _plain(metadata.get("text"))
    if isinstance(text, str) and text.strip():
        return text.strip(), None
    phonemes = _plain(metadata.get("phonemes"))
    if isinstance(phonemes, str):
        phonemes = split_phoneme_string(phonemes)
    if isinstance(phonemes, list) and phonemes:
        return "", [str(symbol) for symbol in phonemes]
    return None


def _sidecar_transcript(path: Path) -> tuple[str, list[str] | None] | None:
    stem = path.with_suffix("")
    for suffix in _SIDECAR_TEXT_SUFFIXES:
        candidate = stem.with_name(stem.name + suffix)
        if candidate.is_file() and candidate.read_text(encoding="utf-8").strip():
            return candidate.read_text(encoding="utf-8").strip(), None
    metadata_path = stem.with_name(stem.name + ".json")  # the seed's old separate metadata file
    if metadata_path.is_file():
        try:
            metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise _Rejected(f"{metadata_path.name} is not valid JSON ({error})") from error
        return _transcript(metadata) if isinstance(metadata, dict) else None
    return None


def _hint_from_frame_rate(frames: int, duration: Any) -> str | None:
    if not duration:
        return None
    frame_rate_hz = frames / float(duration)
    for codec, expected_hz in FRAME_RATE_HZ.items():
        if abs(frame_rate_hz - expected_hz) / expected_hz < 0.06:  # the two rates are 14 % apart
            return codec
    return None


def _language(file_language: Any, default: str) -> str:
    language = _plain(file_language)
    if not isinstance(language, str) or not language.strip() or language == "auto":
        return default
    # The seed records the bare language ("en"); the caller's variant ("en-us") is the more precise choice.
    if language.split("-")[0].lower() == default.split("-")[0].lower():
        return default
    return language.strip()


def _plain(value: Any) -> Any:
    """NumPy, bytes and HDF5 attribute values → plain Python, so `extra` stays JSON-serializable."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
