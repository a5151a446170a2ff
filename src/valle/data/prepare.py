"""Corpus → webdataset shards + index: batched codec encoding, worker processes, resumable, splittable.

The run is planned first: utterances (sorted by key, so each speaker's utterances sit together)
are packed into shards of bounded size from their durations alone. The plan is deterministic, so
`part=i/n` jobs of a cluster array agree on it and take every n-th shard, and a rerun skips every
shard whose manifest exists. A shard is written under a temporary name and renamed when complete;
its manifest (`shard-NNNNNN.json`) follows, and marks it done. Whichever run finds every manifest
present writes `index.json` (symbol map, codec, one row per sample) and prints the summary.

The plan and every manifest record the codec (name, settings, weights identity): a resumed run or
another part with other codec settings is refused before it encodes anything, since codes of two
codecs, or of one codec under two sets of weights, cannot share a model.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from valle.audio import AudioError, load_for_codec, wav_truncation
from valle.codecs.base import Codec, CodecInfo
from valle.codecs.weights import UNKNOWN_IDENTITY, weights_conflict
from valle.data.alignment import alignment_mismatch, symbol_durations
from valle.data.index import INDEX_NAME, IndexRow, ShardIndex
from valle.data.readers import read_corpus
from valle.data.records import Utterance
from valle.data.seed_import import length_disagreement
from valle.data.shards import SHARD_FORMAT_VERSION, SHARD_PATTERN, ShardSample, write_shard
from valle.errors import ConfigError
from valle.text.phonemize import TextError, check_language, phonemize_batch
from valle.text.symbols import SymbolMap
from valle.utils.io import atomic_write_json, remove_temporaries
from valle.utils.lock import exclusive_lock
from valle.utils.textgrid import Interval, read_textgrid

log = logging.getLogger(__name__)

PLAN_NAME = "plan.json"
SYMBOLS_NAME = "symbols.json"
# Bytes a sample costs beyond its codes: tar headers (512 B per member), npy header, text and json.
_SAMPLE_OVERHEAD_BYTES = 4096
MEL_FIT_UTTERANCES = 400  # evenly spaced over the corpus: enough frames for 256-entry codebooks


@dataclass
class PrepareSettings:
    """What `prepare` needs besides the corpus and the codec (the `prepare.yaml` keys)."""

    layout: str
    input: str
    output: str
    language: str = "en-us"
    part: str = "0/1"  # "i/n": this job takes shards i, i+n, i+2n, ...
    num_workers: int = 2  # processes that read and resample audio
    batch_seconds: float = 60.0  # audio per codec batch
    device: str = "cpu"
    max_shard_mb: float = 256.0
    min_seconds: float = 0.5
    max_seconds: float = 30.0
    silence_dbfs: float = -60.0
    symbols: str | None = None  # a fixed symbol map (e.g. a pretrained model's); unknown symbols → unk


@dataclass(frozen=True)
class Problem:
    """Why one utterance was left out; prepare lists these in the summary and the index."""

    reason: str  # a short category, counted in the summary ("bad audio", "empty transcript", ...)
    detail: str


@dataclass
class PrepareResult:
    output: Path
    shards_written: int
    shards_skipped_done: int
    shards_pending: int  # planned shards other parts have not finished yet
    index: ShardIndex | None = None
    skipped: list[dict] = field(default_factory=list)
    # Imported files whose stored length disagrees with their codes ({"key", "path", "detail"}).
    length_notes: list[dict] = field(default_factory=list)
    # Shards written by this run → {symbol: occurrences} of symbols the fixed symbol map lacks.
    unknown_symbols: dict[str, dict[str, int]] = field(default_factory=dict)


def parse_part(part: str) -> tuple[int, int]:
    """'i/n' → (i, n), with 0 <= i < n."""
    try:
        i, n = (int(x) for x in str(part).split("/"))
    except ValueError:
        raise ConfigError(
            f"part={part!r}: expected 'i/n', e.g. part=0/4 for the first of four jobs"
        ) from None
    if not 0 <= i < n:
        raise ConfigError(f"part={part!r}: need 0 <= i < n")
    return i, n


# ----------------------------------------------------------------------------------------------- planning
def utterance_seconds(utterance: Utterance, frame_rate: float) -> float:
    """Duration from imported codes (frames / `frame_rate`), the record, or the file header.

    Raises AudioError when none of them gives one.

    Imported codes are their own measure: the seed's stored lengths are unreliable (see
    `valle.data.seed_import.length_disagreement`), and the configured codec's frame rate is the true one.
    """
    if utterance.codes is not None:
        return utterance.codes.shape[1] / frame_rate
    if utterance.duration is not None:
        return utterance.duration
    try:
        info = sf.info(str(utterance.audio_path))
    except Exception as error:
        raise AudioError(f"{utterance.audio_path}: unreadable audio ({error})") from error
    return info.frames / info.samplerate


def plan_shards(
    utterances: Sequence[Utterance], codec: CodecInfo, settings: PrepareSettings
) -> tuple[list[list[Utterance]], list[dict]]:
    """Pack utterances, in key order, into shards of at most `max_shard_mb`; skip bad lengths."""
    budget = settings.max_shard_mb * 2**20
    shards: list[list[Utterance]] = [[]]
    skipped: list[dict] = []
    used = 0.0
    for utterance in utterances:
        try:
            seconds = utterance_seconds(utterance, codec.frame_rate)
        except AudioError as error:
            skipped.append(_skip(utterance, "unreadable", str(error)))
            continue
        if utterance.codes is None and utterance.audio_path and (cut := wav_truncation(utterance.audio_path)):
            skipped.append(_skip(utterance, "truncated", cut))  # its transcript says more than it holds
            continue
        if not settings.min_seconds <= seconds <= settings.max_seconds:
            reason = "too short" if seconds < settings.min_seconds else "too long"
            skipped.append(_skip(utterance, reason, f"{seconds:.2f} s"))
            continue
        utterance.duration = seconds
        size = 2 * codec.n_levels * math.ceil(seconds * codec.frame_rate) + _SAMPLE_OVERHEAD_BYTES
        if shards[-1] and used + size > budget:
            shards.append([])
            used = 0.0
        shards[-1].append(utterance)
        used += size
    return [s for s in shards if s], skipped


def _skip(utterance: Utterance, reason: str, detail: str) -> dict:
    return {
        "key": utterance.key,
        "path": str(utterance.audio_path or utterance.extra.get("source", "")),
        "reason": reason,
        "detail": detail,
    }


def length_notes(utterances: Sequence[Utterance], codec: CodecInfo) -> list[dict]:
    """Imported utterances whose stored length disagrees with their codes (the codes' length is used)."""
    notes = []
    for utterance in utterances:
        if utterance.codes is not None:
            detail = length_disagreement(
                utterance.extra, utterance_seconds(utterance, codec.frame_rate), codec.sample_rate
            )
            if detail is not None:
                notes.append(
                    {"key": utterance.key, "path": utterance.extra.get("source", ""), "detail": detail}
                )
    return notes


def _check_plan(
    output: Path, shards: list[list[Utterance]], codec: CodecInfo, names: Sequence[str]
) -> CodecInfo:
    """The first run records its plan; later runs (other parts, resumes) must agree with it and its shards.

    Returns:
        the codec the folder is prepared with (the plan's; this run's when the plan is new or records none).
    """
    plan = {
        "format_version": SHARD_FORMAT_VERSION,
        "codec": codec.to_dict(),
        "shards": [[u.key for u in s] for s in shards],
    }
    path = output / PLAN_NAME
    if not path.is_file():
        _check_manifests(output, names, codec)  # before writing: a refused run must leave no plan behind
        atomic_write_json(path, plan)
        return codec
    recorded = json.loads(path.read_text(encoding="utf-8"))
    if recorded.get("codec") is None:  # its shards' manifests record none either
        log.warning(
            "%s records no codec (an older valle wrote it); cannot check that its shards were made with %s",
            path,
            codec.summary(),
        )
    check_codec(recorded.get("codec"), codec, path)
    if any(recorded.get(key) != plan[key] for key in ("format_version", "shards")):
        raise ConfigError(
            f"{path}: this output folder was prepared from another corpus or with other "
            "settings (max_shard_mb, min/max_seconds); use a new output folder or delete it"
        )
    _check_manifests(output, names, codec)
    return CodecInfo.from_dict(recorded["codec"]) if recorded.get("codec") else codec


def check_codec(recorded: dict | None, codec: CodecInfo, path: Path) -> None:
    """Refuse to add codes of `codec` to a folder whose plan or manifest `path` records another codec.

    Raises:
        ValueError: one line naming what is on disk, what this run uses, and the fix.
    """
    if recorded is None:  # written before valle recorded the codec: nothing to check against
        return
    theirs = CodecInfo.from_dict(recorded)
    settings_differ = replace(theirs, weights=UNKNOWN_IDENTITY) != replace(codec, weights=UNKNOWN_IDENTITY)
    if settings_differ or weights_conflict(theirs.weights, codec.weights):
        raise ConfigError(
            f"{path}: prepared with codec {theirs.summary()} but this run uses {codec.summary()}; "
            "rerun with the codec settings and codec.weights it was prepared with, or use a new "
            "output folder"
        )


# ------------------------------------------------------------------------------------------ one shard
class _AudioLoader(Dataset):
    """Reads, mixes and resamples audio in worker processes; errors come back as strings."""

    def __init__(self, utterances: Sequence[Utterance], sample_rate: int, silence_dbfs: float):
        self.utterances, self.sample_rate, self.silence_dbfs = utterances, sample_rate, silence_dbfs

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | Problem]:
        path = self.utterances[i].audio_path
        assert path is not None  # only a corpus of audio (no imported codes) is encoded
        try:
            return i, load_for_codec(path, self.sample_rate, self.silence_dbfs)
        except AudioError as error:
            return i, Problem("bad audio", str(error))


def _batches_by_seconds(utterances: Sequence[Utterance], batch_seconds: float) -> list[list[int]]:
    """Index batches of similar length (less padding) holding about `batch_seconds` of audio each."""
    order = sorted(range(len(utterances)), key=lambda i: utterances[i].duration or 0.0)
    batches: list[list[int]] = [[]]
    total = 0.0
    for i in order:
        if batches[-1] and total + (utterances[i].duration or 0.0) > batch_seconds:
            batches.append([])
            total = 0.0
        batches[-1].append(i)
        total += utterances[i].duration or 0.0
    return [b for b in batches if b]


def _encode_audio(
    utterances: Sequence[Utterance], codec: Codec, settings: PrepareSettings, progress: tqdm
) -> Iterator[tuple[int, object]]:
    """Yield (index, codes int16 [L, T]) or (index, Problem) for every utterance."""
    loader = DataLoader(
        _AudioLoader(utterances, codec.sample_rate, settings.silence_dbfs),
        batch_sampler=_batches_by_seconds(utterances, settings.batch_seconds),
        num_workers=settings.num_workers,
        collate_fn=list,
    )
    for batch in loader:
        good = [(i, wav) for i, wav in batch if not isinstance(wav, Problem)]
        yield from ((i, wav) for i, wav in batch if isinstance(wav, Problem))
        if good:
            codes, frames = codec.encode_batch([wav for _, wav in good], codec.sample_rate)
            for row, (i, _) in enumerate(good):
                yield i, codes[row, :, : frames[row]].numpy().astype("int16")
        progress.update(len(batch))


def _phonemize(utterances: Sequence[Utterance]) -> dict[int, list[str] | Problem]:
    """Symbols per utterance index (or a Problem), one espeak call per language."""
    result: dict[int, list[str] | Problem] = {}
    by_language: dict[str, list[int]] = {}
    for i, utterance in enumerate(utterances):
        if utterance.phonemes is not None:
            result[i] = utterance.phonemes
        elif not utterance.text.strip():
            result[i] = Problem("empty transcript", f"{utterance.audio_path}: the transcript is empty")
        else:
            by_language.setdefault(utterance.language, []).append(i)
    for language, indices in by_language.items():
        symbols: Sequence[list[str] | Problem]
        try:
            symbols = phonemize_batch([utterances[i].text for i in indices], language)
        except TextError:  # a text with no letters; phonemize one by one to find it
            symbols = [_phonemize_one(utterances[i]) for i in indices]
        result.update(zip(indices, symbols, strict=True))
    return result


def _phonemize_one(utterance: Utterance) -> list[str] | Problem:
    try:
        return phonemize_batch([utterance.text], utterance.language)[0]
    except TextError as error:
        return Problem("empty transcript", f"{utterance.audio_path}: {error}")


def _sample(
    utterance: Utterance, codes, symbols: list[str], codec: CodecInfo, durations: np.ndarray | None
) -> ShardSample:
    meta = {
        "speaker": utterance.speaker,
        "group": utterance.group,
        "language": utterance.language,
        "duration": round(codes.shape[1] / codec.frame_rate, 4),
        "sample_rate": codec.sample_rate,
        "codec": codec.name,
        "frames": int(codes.shape[1]),
        "format_version": SHARD_FORMAT_VERSION,
        **utterance.extra,
    }
    if utterance.alignment is not None:
        meta["aligned"] = durations is not None
    return ShardSample(
        key=utterance.key, codes=codes, symbols=symbols, text=utterance.text, meta=meta, durations=durations
    )


WORD_TIERS = ("words", "word")  # MFA writes "words"; other aligners "word" or "Word"
PHONE_TIERS = ("phones", "phone")


def _durations(
    utterance: Utterance, symbols: list[str], codes, frame_rate: float
) -> np.ndarray | Problem | None:
    """Frames per text id from the TextGrid beside the audio; None without one.

    A Problem when the TextGrid is unusable: the utterance is then kept unaligned (the alignment is optional,
    its audio and text are fine) and listed with the reason in the summary.
    """
    path, frames = utterance.alignment, int(codes.shape[1])
    if path is None:
        return None
    try:
        tiers = read_textgrid(path)
    except (ConfigError, OSError, UnicodeError) as error:
        return Problem("unreadable TextGrid", str(error))
    words, phones = _tier(tiers, WORD_TIERS), _tier(tiers, PHONE_TIERS)
    if words is None:
        return Problem(
            "TextGrid without a words tier",
            f'{path}: no interval tier named "words" (it has {sorted(tiers)})',
        )
    mismatch = alignment_mismatch(words, utterance.text, frames / frame_rate)
    if mismatch is not None:
        return Problem("TextGrid not of this utterance", f"{path}: {mismatch}")
    durations = symbol_durations(symbols, words, phones, frames, frame_rate)
    if durations is None:
        return Problem(
            "TextGrid not paired", f"{path}: no spoken word to pair with the transcript's phonemes"
        )
    return durations


def _tier(tiers: dict[str, list[Interval]], names: Sequence[str]) -> list[Interval] | None:
    """The first tier whose name is one of `names`, ignoring case."""
    return next((tier for name, tier in tiers.items() if name.strip().lower() in names), None)


def prepare_shard(
    shard_name: str,
    utterances: Sequence[Utterance],
    codec: Codec | None,
    info: CodecInfo,
    settings: PrepareSettings,
    progress: tqdm,
    known: SymbolMap | None = None,
) -> dict:
    """Encode, phonemize and write one shard; return its manifest.

    The manifest holds the rows, the skipped utterances, the symbols seen, the codec, and the occurrences of
    each symbol the fixed symbol map `known` lacks (they read as <unk> in training).
    """
    symbols = _phonemize(utterances)
    if any(u.codes is None for u in utterances):
        if codec is None:
            raise ConfigError("this corpus holds audio, so prepare needs a codec model to encode it")
        encoded = dict(_encode_audio(utterances, codec, settings, progress))
    else:
        encoded = {i: u.codes for i, u in enumerate(utterances)}
        progress.update(len(utterances))
    samples, skipped, unaligned = [], [], []
    for i, utterance in enumerate(utterances):
        codes, phones = encoded[i], symbols[i]
        if isinstance(codes, Problem) or isinstance(phones, Problem):
            problem = next(x for x in (codes, phones) if isinstance(x, Problem))
            skipped.append(_skip(utterance, problem.reason, problem.detail))
            continue
        durations = _durations(utterance, phones, codes, info.frame_rate)
        if isinstance(durations, Problem):
            unaligned.append(_skip(utterance, durations.reason, durations.detail))
            durations = None
        samples.append(_sample(utterance, codes, phones, info, durations))
    size = write_shard(Path(settings.output) / shard_name, samples)
    rows = [
        IndexRow(
            key=s.key,
            shard=shard_name,
            speaker=s.speaker,
            group=s.meta["group"],
            language=s.language,
            frames=s.meta["frames"],
            n_phonemes=len(s.symbols),
            duration=s.meta["duration"],
            aligned=s.durations is not None,
        )
        for s in samples
    ]
    unknown = Counter(x for s in samples for x in s.symbols if known is not None and x not in known)
    if unknown:
        log.warning(
            "%s: %d phoneme symbols are not in the fixed symbol map and will read as <unk>: %s",
            shard_name,
            sum(unknown.values()),
            _counts(unknown),
        )
    return {
        "name": shard_name,
        "bytes": size,
        "rows": [vars(r) for r in rows],
        "skipped": skipped,
        "unaligned": unaligned,
        "symbols": sorted({x for s in samples for x in s.symbols}),
        "codec": info.to_dict(),
        "unknown_symbols": dict(sorted(unknown.items())),
    }


def _counts(counts: dict[str, int], limit: int = 10) -> str:
    """ "ʔ×5, x×2" for the most frequent entries."""
    return ", ".join(f"{k}×{n}" for k, n in Counter(counts).most_common(limit))


# ------------------------------------------------------------------------------------------ the run
def _manifest_path(output: Path, shard_name: str) -> Path:
    return output / shard_name.replace(".tar", ".json")


def prepare(settings: PrepareSettings, codec: Codec | None, info: CodecInfo) -> PrepareResult:
    """Run (or resume) one part of a preparation; write the index when every part is done.

    Args:
        settings: corpus, output, part and limits.
        codec: the codec to encode audio with; None when the corpus is already encoded (layout=seed).
        info: the codec's description (codec.info, or the configured codec for imports).

    Raises:
        InUseError: another process is preparing the same part of this output folder right now.
    """
    output = Path(settings.output)
    output.mkdir(parents=True, exist_ok=True)
    part, n_parts = parse_part(settings.part)
    # One writer per part (parts of a job array share the folder): a second run of the same part is
    # refused instead of doing the work twice; the kernel drops the lock when its holder dies.
    with exclusive_lock(
        output / f".prepare-part-{part}-of-{n_parts}.lock", f"part {part}/{n_parts} of {output}"
    ):
        return _prepare_part(settings, codec, info, part, n_parts)


def _prepare_part(
    settings: PrepareSettings, codec: Codec | None, info: CodecInfo, part: int, n_parts: int
) -> PrepareResult:
    """`prepare` under the part's lock."""
    output = Path(settings.output)
    utterances, missing = read_corpus(settings.layout, settings.input, settings.language)
    for language in sorted({u.language for u in utterances}):
        check_language(language)
    _check_imported_codes(utterances, info)
    shards, skipped = plan_shards(utterances, info, settings)
    skipped += [{"key": "", "path": str(m.audio_path), "reason": m.reason, "detail": str(m)} for m in missing]
    names = [SHARD_PATTERN.format(i) for i in range(len(shards))]
    folder_codec = _check_plan(output, shards, info, names)
    mine = [i for i in range(len(shards)) if i % n_parts == part]
    todo = [i for i in mine if not _manifest_path(output, names[i]).is_file()]
    log.info(
        "part %d/%d: %d of %d shards to write (%d already done)",
        part,
        n_parts,
        len(todo),
        len(mine),
        len(mine) - len(todo),
    )
    known = SymbolMap.load(settings.symbols) if settings.symbols else None
    unknown: dict[str, dict[str, int]] = {}
    started = time.time()
    with tqdm(total=sum(len(shards[i]) for i in todo), unit="utt", desc="prepare", dynamic_ncols=True) as bar:
        for i in todo:
            for path in (output / names[i], _manifest_path(output, names[i])):
                remove_temporaries(path)  # a killed run's; only this part writes these names
            manifest = prepare_shard(names[i], shards[i], codec, info, settings, bar, known)
            atomic_write_json(_manifest_path(output, names[i]), manifest)
            unknown[names[i]] = manifest["unknown_symbols"]
    log.info("wrote %d shards in %.1f s", len(todo), time.time() - started)
    pending = [n for n in names if not _manifest_path(output, n).is_file()]
    index = None if pending else _write_index_once(output, names, folder_codec, skipped, settings.symbols)
    return PrepareResult(
        output=output,
        shards_written=len(todo),
        shards_skipped_done=len(mine) - len(todo),
        shards_pending=len(pending),
        index=index,
        skipped=skipped,
        length_notes=length_notes(utterances, info),
        unknown_symbols=unknown,
    )


def _check_manifests(output: Path, names: Sequence[str], codec: CodecInfo) -> None:
    """Every shard already written here must come from `codec` too (before this run encodes anything)."""
    for name in names:
        path = _manifest_path(output, name)
        if path.is_file():
            check_codec(json.loads(path.read_text(encoding="utf-8")).get("codec"), codec, path)


# Codes an importer says came from codec X can be used under these configured codec names.
_SAME_CODES = {"encodec": {"encodec", "vocos"}, "dac": {"dac"}}


def _check_imported_codes(utterances: Sequence[Utterance], info: CodecInfo) -> None:
    """Imported codes must come from the configured codec, with the configured level count."""
    hints = {
        u.extra["codec_hint"]
        for u in utterances
        if u.codes is not None and u.extra.get("codec_hint") is not None
    }
    for hint in hints:
        if info.name not in _SAME_CODES.get(hint, {hint}):
            raise ConfigError(
                f"the imported files hold {hint} codes but codec={info.name} is configured; "
                f"pass codec={hint} (and its settings) to prepare"
            )
    levels = {u.codes.shape[0] for u in utterances if u.codes is not None}
    if levels and levels != {info.n_levels}:
        raise ConfigError(
            f"the imported codes have {sorted(levels)} levels but codec {info.name!r} is "
            f"configured with {info.n_levels}; set the codec to match the data (e.g. "
            "codec.bandwidth_kbps for EnCodec, codec.n_levels for DAC)"
        )


def _write_index_once(
    output: Path, names: Sequence[str], info: CodecInfo, skipped: list[dict], fixed_symbols: str | None
) -> ShardIndex:
    """`write_index` by one part at a time (parts finishing together wait for each other), after
    deleting what a killed writer left: the index is any part's to write, so only its lock makes that safe."""
    with exclusive_lock(output / ".prepare-index.lock", f"the index of {output}", wait=True):
        for name in (INDEX_NAME, SYMBOLS_NAME):
            remove_temporaries(output / name)
        return write_index(output, names, info, skipped, fixed_symbols)


def write_index(
    output: Path, names: Sequence[str], info: CodecInfo, skipped: list[dict], fixed_symbols: str | None
) -> ShardIndex:
    """Merge every shard manifest into `index.json` with the symbol map and the codec description.

    Raises:
        ValueError: a manifest records another codec than `info` (written meanwhile by another run).
    """
    manifests = [json.loads(_manifest_path(output, n).read_text(encoding="utf-8")) for n in names]
    for name, manifest in zip(names, manifests, strict=True):
        check_codec(manifest.get("codec"), info, _manifest_path(output, name))
    rows = [IndexRow(**row) for m in manifests for row in m["rows"]]
    languages = sorted({row.language for row in rows})
    if fixed_symbols:
        symbols = SymbolMap.load(fixed_symbols)
        unknown = sorted({x for m in manifests for x in m["symbols"]} - set(symbols.symbols))
        if unknown:
            log.warning(
                "%d phoneme symbols are not in %s and will read as <unk>: %s",
                len(unknown),
                fixed_symbols,
                " ".join(unknown[:20]),
            )
    else:
        symbols = SymbolMap.build([m["symbols"] for m in manifests], languages)
    shards = [
        {
            "name": m["name"],
            "samples": len(m["rows"]),
            "bytes": m["bytes"],
            "unknown_symbols": m.get("unknown_symbols", {}),
        }
        for m in manifests
    ]
    index = ShardIndex(
        codec=info,
        symbols=symbols,
        shards=shards,
        samples=rows,
        skipped=skipped + [s for m in manifests for s in m["skipped"]],
        unaligned=[s for m in manifests for s in m.get("unaligned", [])],
        root=output,
    )
    index.save(output)
    symbols.save(output / SYMBOLS_NAME)
    return index


def summarize(result: PrepareResult) -> str:
    """A human summary: hours, speakers, skipped files and why."""
    lines = [
        f"output: {result.output}",
        f"shards: {result.shards_written} written, {result.shards_skipped_done} already done, "
        f"{result.shards_pending} pending in other parts",
    ]
    if result.index is not None:
        index = result.index
        lines += [
            f"index: {result.output / INDEX_NAME}",
            f"utterances: {len(index.samples)}, speakers: {len(index.by_speaker())}, "
            f"hours: {index.hours():.3f}, symbols: {len(index.symbols)}",
            f"aligned: {sum(row.aligned for row in index.samples)} of {len(index.samples)} utterances "
            "(from a `{stem}.TextGrid` beside the audio; model.monotonic_alignment needs them)",
        ]
        if index.unaligned:
            lines += _listed("kept unaligned", index.unaligned, str(result.output / INDEX_NAME))
        skipped = index.skipped
        where = str(result.output / INDEX_NAME)
    else:
        skipped = result.skipped
        where = f"{result.output / INDEX_NAME} once every part is done"
        lines.append("index: not written yet (other parts still running); rerun any part after they finish")
    lines += _listed("skipped", skipped, where)
    return "\n".join(lines + _unknown_symbol_lines(result) + _length_note_lines(result.length_notes))


LISTED = 20  # entries shown per list in the summary; the index keeps them all


def _listed(title: str, entries: list[dict], where: str) -> list[str]:
    """ "skipped: 25", the count per reason, the first entries, and where the rest are."""
    reasons = Counter(s["reason"] for s in entries)
    lines = [f"{title}: {len(entries)}"] + [f"  {n} {reason}" for reason, n in reasons.most_common()]
    lines += [f"    {s['path']}: {s['detail']}" for s in entries[:LISTED]]
    if len(entries) > LISTED:
        lines.append(f'    … and {len(entries) - LISTED} more (all in {where}, under "{title.split()[-1]}")')
    return lines


def _unknown_symbol_lines(result: PrepareResult) -> list[str]:
    """Per shard, the symbols the fixed symbol map lacks (nothing when there are none)."""
    if result.index is not None:
        per_shard = {s["name"]: s.get("unknown_symbols", {}) for s in result.index.shards}
    else:
        per_shard = result.unknown_symbols
    per_shard = {name: counts for name, counts in per_shard.items() if counts}
    if not per_shard:
        return []
    total = sum(sum(counts.values()) for counts in per_shard.values())
    lines = [
        f"unknown symbols (read as <unk> in training; prepare with a symbol map that has them, or "
        f"without symbols=): {total} in {len(per_shard)} shards"
    ]
    return lines + [
        f"  {name}: {sum(counts.values())} ({_counts(counts)})" for name, counts in per_shard.items()
    ]


def _length_note_lines(notes: list[dict]) -> list[str]:
    """Imported files whose stored length disagrees with their codes."""
    if not notes:
        return []
    lines = [f"stored lengths that disagree with the codes (durations taken from the codes): {len(notes)}"]
    return lines + [f"    {n['path'] or n['key']}: {n['detail']}" for n in notes[:20]]


def fit_mel_codebooks_for(settings: PrepareSettings, codec_kwargs: dict) -> Path:
    """`codec=mel codec.weights=fit`: fit the codebooks on the corpus once, beside the shards.

    A rerun (or another part) reuses the file, so every shard is encoded with the same codebooks.
    """
    from valle.codecs.mel import CODEBOOKS_FILE, fit_mel_codebooks, save_codebooks

    path = Path(settings.output) / CODEBOOKS_FILE
    if path.is_file():
        return path
    utterances, _ = read_corpus(settings.layout, settings.input, settings.language)
    step = max(1, len(utterances) // MEL_FIT_UTTERANCES)
    wavs = []
    for utterance in utterances[::step]:
        assert utterance.audio_path is not None  # a corpus read from audio files
        try:
            wavs.append(
                load_for_codec(utterance.audio_path, codec_kwargs["sample_rate"], settings.silence_dbfs)
            )
        except AudioError as error:
            log.warning("not fitting on %s", error)
    if not wavs:
        raise ConfigError(f"input={settings.input}: no readable audio to fit the mel codebooks on")
    keys = ("sample_rate", "hop_length", "n_mels", "n_fft", "n_levels", "codebook_size")
    log.info("fitting mel codebooks on %d utterances", len(wavs))
    save_codebooks(path, fit_mel_codebooks(wavs, **{k: codec_kwargs[k] for k in keys}, init="random"))
    return path
