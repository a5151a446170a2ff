"""The built-in corpus: multi-speaker English speech synthesized offline from voices Debian ships.

Written in the generic `{group}/{speaker}/{id}.wav` + `{id}.txt` layout that `prepare.py layout=folder`
reads. Deterministic: the same voices and sentences give the same files.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from valle.corpus.sentences import SENTENCES
from valle.errors import ConfigError, SetupError
from valle.utils.io import atomic_write_text
from valle.utils.textgrid import Interval, write_textgrid

log = logging.getLogger(__name__)

# espeak-ng voice variants: different pitch and formants give distinct (if robotic) speakers.
ESPEAK_VOICES = ["en-us+m3", "en-us+f2", "en-gb+m1", "en-gb+f4", "en-us+m7", "en-029+f3"]
# Debian's festival voices (festvox-kallpc16k, festvox-kdlpc16k, festvox-us-slt-hts): ASR reads them well.
FESTIVAL_VOICES = ["kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts"]
# (pitch in cents, speed) variants: sox `speed` shifts pitch and formants together, so each variant
# sounds like another speaker rather than the same one sped up.
VARIANTS = [(0, 1.0), (250, 1.0), (-250, 1.0), (0, 1.07), (0, 0.94)]


@dataclass(frozen=True)
class Voice:
    """A speaker of the built-in corpus: an engine's voice plus an optional sox transformation."""

    speaker: str  # folder name, e.g. "espeak-en-us-m3"
    name: str  # the engine's voice: "en-us+m3" (espeak-ng) or "kal_diphone" (festival)
    engine: str = "espeak"  # "espeak" | "festival"
    pitch_cents: int = 0
    speed: float = 1.0
    words_per_minute: int = 165  # espeak-ng only


def espeak_voices(names: Sequence[str] = ESPEAK_VOICES) -> list[Voice]:
    return [Voice(speaker="espeak-" + name.replace("+", "-"), name=name) for name in names]


def festival_voices(
    names: Sequence[str] = FESTIVAL_VOICES, variants: Sequence[tuple[int, float]] = VARIANTS
) -> list[Voice]:
    """Every festival voice in every (pitch, speed) variant: len(names) × len(variants) speakers."""
    return [
        Voice(
            speaker=f"festival-{name.split('_')[0] if 'cmu' not in name else 'slt'}-p{pitch:+d}-s{speed:g}",
            name=name,
            engine="festival",
            pitch_cents=pitch,
            speed=speed,
        )
        for name in names
        for pitch, speed in variants
    ]


def _require(program: str, package: str) -> None:
    if shutil.which(program) is None:
        raise SetupError(
            f"{program} was not found; install it: `apt-get install {package}` (make setup does)"
        )


def _speak(text: str, voice: Voice, path: Path) -> None:
    if voice.engine == "espeak":
        _require("espeak-ng", "espeak-ng")
        command = ["espeak-ng", "-v", voice.name, "-s", str(voice.words_per_minute), "-w", str(path), text]
        subprocess.run(command, check=True, capture_output=True)
    elif voice.engine == "festival":
        festival_batch(voice.name, [(text, path)])
    else:
        raise ConfigError(f"unknown engine {voice.engine!r}; use 'espeak' or 'festival'")


def synthesize_voice(text: str, voice: Voice, path: Path) -> None:
    """One sentence in `voice` → a wav at `path`, written atomically (engine, then sox pitch/speed)."""
    # Temporary names keep the .wav suffix: sox and espeak-ng pick the file format from it.
    raw = path.with_name(f".{path.stem}.{os.getpid()}.raw.wav")
    try:
        _speak(text, voice, raw)
        apply_variant(raw, voice, path)
        if timings_path(raw).is_file():
            _write_alignment(timings_path(raw), voice, path)
    finally:
        raw.unlink(missing_ok=True)
        timings_path(raw).unlink(missing_ok=True)


def apply_variant(raw: Path, voice: Voice, path: Path) -> None:
    """The engine's wav `raw` → `voice`'s pitch/speed variant at `path`, written atomically (keeps `raw`)."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.part.wav")
    try:
        if voice.pitch_cents or voice.speed != 1.0:
            _require("sox", "sox")
            effects = (["pitch", str(voice.pitch_cents)] if voice.pitch_cents else []) + (
                ["speed", f"{voice.speed:g}"] if voice.speed != 1.0 else []
            )
            # -R: repeatable dither, so a rebuilt corpus is byte-identical
            subprocess.run(["sox", "-R", str(raw), str(tmp), *effects], check=True, capture_output=True)
        else:
            shutil.copyfile(raw, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _scheme_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


# Writes each segment of an utterance as `word<TAB>start<TAB>end<TAB>phone`, in order: festival's own
# timings of what it said, which `_write_alignment` turns into the TextGrid beside the wav.
_SAVE_TIMINGS = """(define (valle_save_timings utt file)
  (let ((fd (fopen file "w")) (k 0))
    (mapcar (lambda (word)
      (set! k (+ k 1))
      (mapcar (lambda (syl)
        (mapcar (lambda (seg)
          (format fd "%d\\t%s\\t%f\\t%f\\t%s\\n" k (item.name word) (item.feat seg "segment_start")
                  (item.feat seg "end") (item.name seg)))
          (item.relation.daughters syl 'SylStructure)))
        (item.relation.daughters word 'SylStructure)))
      (utt.relation.items utt 'Word))
    (fclose fd)))"""


def timings_path(wav: Path) -> Path:
    """Where `festival_batch` writes the segment timings of `wav`."""
    return wav.with_suffix(".timings.tsv")


def festival_batch(voice_name: str, lines: Sequence[tuple[str, Path]]) -> None:
    """Many sentences in one festival process, each to its wav, with its timings (`timings_path`).

    Loading the voice is most of a `text2wave` call (~0.4 s against ~0.02 s to speak a sentence), so the
    corpus is spoken in batches; the files are byte-identical to text2wave's.
    """
    _require("festival", "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts")
    script = [_SAVE_TIMINGS, f"(voice_{voice_name})"]
    for text, wav in lines:
        script += [
            f'(set! valle_utt (utt.synth (Utterance Text "{_scheme_string(text)}")))',
            f'(utt.save.wave valle_utt "{_scheme_string(str(wav))}" \'riff)',
            f'(valle_save_timings valle_utt "{_scheme_string(str(timings_path(wav)))}")',
        ]
    with tempfile.NamedTemporaryFile("w", suffix=".scm", delete=False) as file:
        file.write("\n".join(script) + "\n")
    try:
        done = subprocess.run(["festival", "--batch", file.name], capture_output=True, text=True)
    finally:
        os.unlink(file.name)
    missing = [str(wav) for _, wav in lines if not wav.is_file()]
    if done.returncode or missing:
        raise SetupError(
            f"festival voice {voice_name!r} wrote {len(lines) - len(missing)} of {len(lines)} wavs "
            f"(exit {done.returncode}): {done.stderr.strip()[-300:]}; check `festival --batch` with "
            f"that voice installed (make setup installs it)"
        )


def _write_alignment(timings: Path, voice: Voice, wav: Path) -> None:
    """festival's segment timings of the raw wav → `{stem}.TextGrid` beside the variant's wav (sox `speed`
    divides every time by the speed; `pitch` keeps them)."""
    words: dict[str, Interval] = {}
    phones: list[Interval] = []
    for line in timings.read_text().splitlines():
        k, word, start, end, phone = line.split("\t")
        phone_interval = Interval(float(start) / voice.speed, float(end) / voice.speed, phone)
        phones.append(phone_interval)
        first = words.get(k, phone_interval)
        words[k] = Interval(first.start, phone_interval.end, word)
    with wave.open(str(wav)) as audio:
        seconds = audio.getnframes() / audio.getframerate()
    write_textgrid(wav.with_suffix(".TextGrid"), {"words": list(words.values()), "phones": phones}, seconds)


def _write_utterance(job: tuple[str, Voice, Path, Path | None]) -> None:
    """The wav (from the engine, or from a batch's `raw` wav), its alignment when the engine gave timings
    (festival), then its transcript: a transcript always has its audio beside it."""
    text, voice, wav, raw = job
    if not wav.is_file():
        if raw is None:
            synthesize_voice(text, voice, wav)
        else:
            apply_variant(raw, voice, wav)
    if raw is not None and timings_path(raw).is_file():
        _write_alignment(timings_path(raw), voice, wav)
    atomic_write_text(wav.with_suffix(".txt"), text + "\n")


def _complete(text: str, voice: Voice, wav: Path) -> bool:
    """Whether an utterance's files are all there: wav, transcript, and for festival its TextGrid."""
    needed = [wav, wav.with_suffix(".txt")] + (
        [wav.with_suffix(".TextGrid")] if voice.engine == "festival" else []
    )
    return all(path.is_file() for path in needed)


def _speak_festival_batches(
    todo: Sequence[tuple[str, Voice, Path]], cache: Path, jobs: int, pool
) -> dict[tuple[str, str], Path]:
    """Speak each (festival voice, sentence) of `todo` once, in batches → its raw wav under `cache`.

    The pitch/speed variants of a voice that read the same sentence share one raw wav."""
    unique = {(voice.name, text): None for text, voice, _ in todo if voice.engine == "festival"}
    raws = {key: cache / f"{i:05d}.wav" for i, key in enumerate(unique)}
    batches = []
    for name in dict.fromkeys(name for name, _ in raws):
        lines = [(text, raw) for (n, text), raw in raws.items() if n == name]
        size = max(1, min(100, -(-len(lines) // max(1, jobs))))  # every core busy, ≤100 a process
        batches += [(name, lines[i : i + size]) for i in range(0, len(lines), size)]
    list(pool.map(lambda batch: festival_batch(*batch), batches))
    return raws


def build_corpus(
    root: str | Path,
    voices: Sequence[Voice] | None = None,
    n_sentences: int = 8,
    group: str = "builtin",
    first_sentence: int = 0,
    sentences: Sequence[str] = SENTENCES,
    spread: int = 3,
    jobs: int = 1,
    progress: bool = False,
) -> Path:
    """Write `n_sentences` sentences for every voice under `root/{group}/{speaker}/`.

    Voice v reads `sentences[first_sentence + v * spread + n]` for n < n_sentences (wrapping around), so
    speakers do not all say the same words. Existing files are kept: a rerun finishes an interrupted build.

    Args:
        jobs: run this many engine processes at once (festival speaks a batch of sentences per process).
        progress: show a progress bar.

    Returns:
        `root`, ready for `prepare.py layout=folder input=ROOT`.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    root = Path(root)
    todo = []
    for v, voice in enumerate(voices or espeak_voices()):
        folder = root / group / voice.speaker
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(n_sentences):
            index = (first_sentence + v * spread + n) % len(sentences)
            stem = f"{voice.speaker}_{index:04d}"
            todo.append((sentences[index], voice, folder / f"{stem}.wav"))
    todo = [job for job in todo if not _complete(*job)]
    root.mkdir(parents=True, exist_ok=True)
    with (
        ThreadPoolExecutor(max(1, jobs)) as pool,
        tempfile.TemporaryDirectory(prefix=".festival-", dir=root) as cache,
    ):  # threads: the work is in child processes
        # festival speaks again where a wav lacks its TextGrid (a corpus built before alignments were written)
        raws = _speak_festival_batches(todo, Path(cache), jobs, pool)
        work = [(text, voice, wav, raws.get((voice.name, text))) for text, voice, wav in todo]
        list(
            tqdm(
                pool.map(_write_utterance, work),
                total=len(work),
                unit="wav",
                desc=f"corpus/{group}",
                disable=not progress or not work,
            )
        )
    log.info("built-in corpus at %s", root)
    return root
