"""The held-out items and the speak stage: prompts in both modes, the model's outputs, the manifest."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from valle.cli.demo.settings import (
    BEST_OF_MARK,
    PROMPT_SECONDS,
    DemoSize,
    is_continuation,
    log,
    report_rows,
    row_folder,
    sampler_config,
    spoken_rows,
)
from valle.codecs.base import Codec
from valle.errors import ConfigError
from valle.evaluate.asr import WordTiming
from valle.sampling.prompt import Prompt
from valle.utils.io import atomic_write_json

if TYPE_CHECKING:  # annotations only: the synthesizer is imported where it is built
    from valle.sampling.pipeline import SamplerConfig
    from valle.sampling.synthesize import Synthesizer


@dataclass
class Item:
    """One held-out recording and the files the speak stage made for it (paths relative to `out`)."""

    key: str
    speaker: str
    text: str
    truth: str  # the recording
    prompt: str  # cross-utterance prompt: the first seconds of another recording of the same voice
    prompt_key: str
    continuation_seconds: (
        float  # the continuation prompt: the recording's first seconds, up to a word boundary
    )
    continuation_text: str  # the words after them: what the continuation row must say
    outputs: dict[str, str]  # row → wav (the continuation row: the generated part alone)


def continuation_split(timings: list[WordTiming], text: str, max_seconds: float) -> tuple[float, str, str]:
    """Cut a recording of `text` at a word boundary for a continuation prompt.

    Args:
        timings: where each word of `normalize(text)` is spoken (`PocketSphinxAligner.align`).
        text: the transcript as written; it is cut between two of its whitespace-separated tokens.
        max_seconds: the longest prompt wanted; the first boundary is taken when even that is later.

    Returns:
        (seconds of audio in the prompt, the prompt's transcript, the rest of the transcript).
    """
    from valle.evaluate.text import normalize

    tokens = text.split()
    words_before = [len(normalize(" ".join(tokens[:j])).split()) for j in range(len(tokens) + 1)]
    # Token j starts a new word that is not the first or past the last: the next word's start is the cut.
    cuts = [
        (timings[words_before[j]].start_seconds, j)
        for j in range(1, len(tokens))
        if 0 < words_before[j] < len(timings) and words_before[j] > words_before[j - 1]
    ]
    if not cuts:
        raise ValueError(f"{text!r}: no word boundary to cut at; it needs at least two words")
    seconds, j = max((c for c in cuts if c[0] <= max_seconds), default=cuts[0])
    return seconds, " ".join(tokens[:j]), " ".join(tokens[j:])


def held_out_items(out: Path) -> list[tuple[str, Path, Path]]:
    """(speaker, wav, prompt wav) for every held-out recording; the prompt is the speaker's next one."""
    items = []
    for folder in sorted((out / "corpus" / "held_out").iterdir()):
        wavs = sorted(folder.glob("*.wav"))
        items += [(folder.name, wav, wavs[(i + 1) % len(wavs)]) for i, wav in enumerate(wavs)]
    return items


@torch.inference_mode()
def plan_items(
    out: Path, codec: Codec, spoken: Sequence[str]
) -> tuple[list[Item], list[Prompt], list[Prompt]]:
    """Every held-out recording's prompts in both modes; writes the prompt and resynthesis wavs, the
    manifest (samples/manifest.json), whose outputs (the resynthesis, then one per row of `spoken`) speak()
    then fills, and one prompt per held-out voice in voices/ (the built-in voices of `make serve`).

    Returns:
        (items, cross-utterance prompts, continuation prompts), in the same order.
    """
    from valle.audio import load_for_codec, write_wav
    from valle.evaluate.asr import PocketSphinxAligner
    from valle.sampling.prompt import prompt_audio

    rate = codec.sample_rate
    aligner = PocketSphinxAligner()
    items, cross, continuation = [], [], []
    for speaker, wav_path, prompt_path in held_out_items(out):
        key, text = wav_path.stem, wav_path.with_suffix(".txt").read_text().strip()
        truth = load_for_codec(wav_path, rate)
        truth_codes = codec.encode(truth, rate)
        # Continuation: the recording's own first words (up to 3 s, at most half of it) and their
        # transcript; the model says the rest of the text, which is all that is scored.
        seconds, said, rest = continuation_split(
            aligner.align(truth, rate, text), text, min(PROMPT_SECONDS, truth.numel() / rate / 2)
        )
        frames = round(seconds * codec.frame_rate)
        continuation.append(Prompt(truth_codes[:, :frames], said, f"{key} (first {frames} frames)"))
        # Cross-utterance: another recording of the voice, trimmed and cropped as infer.py would.
        prompt = prompt_audio(prompt_path, rate, PROMPT_SECONDS)
        cross.append(Prompt(codec.encode(prompt, rate), source=str(prompt_path)))
        outputs = {row: f"samples/{row_folder(row)}/{key}.wav" for row in ("resynthesis", *spoken)}
        write_wav(out / outputs["resynthesis"], codec.decode(truth_codes), rate)
        prompt_wav = f"samples/prompts/{key}.wav"  # the prompt as the model got it, before the codec
        write_wav(out / prompt_wav, prompt, rate)
        voice = out / "voices" / f"{speaker}.wav"  # each held-out voice's first prompt: `make serve`'s voices
        if not voice.is_file():
            write_wav(voice, prompt, rate)
        items.append(
            Item(
                key,
                speaker,
                text,
                str(wav_path.relative_to(out)),
                prompt_wav,
                prompt_path.stem,
                frames / codec.frame_rate,
                rest,
                outputs,
            )
        )
    atomic_write_json(out / "samples" / "manifest.json", [asdict(i) for i in items])
    return items, cross, continuation


@torch.inference_mode()
def speak(out: Path, size: DemoSize, best_of: int) -> list[Item]:
    """Synthesize every held-out recording's text in both modes and, with `best_of` > 1, both again as the
    best of that many draws (out/recognizer.pt judges them); writes samples/ and its manifest."""
    from dataclasses import replace

    import valle
    from valle.audio import write_wav
    from valle.cli.demo.stages import RECOGNIZER_FILE
    from valle.recognizer_card import load_recognizer
    from valle.sampling.synthesize import Synthesizer

    judge = None
    if best_of > 1:
        if not (out / RECOGNIZER_FILE).is_file():
            raise ConfigError(
                f"{out / RECOGNIZER_FILE}: no recognizer for the best-of rows; run stage=recognizer first"
            )
        judge = load_recognizer(out / RECOGNIZER_FILE)
    synthesizer = Synthesizer(valle.load(out / "model.pt"), recognizer=judge)
    rate = synthesizer.codec.sample_rate
    config = sampler_config(size)
    items, cross, continuation = plan_items(out, synthesizer.codec, spoken_rows(best_of))
    for row in spoken_rows(best_of):
        mode = row.partition(BEST_OF_MARK)[0]  # "cross-utterance, best of 8": cross-utterance's items
        settings = config if mode == row else replace(config, best_of=best_of)
        started = time.perf_counter()
        texts = [item.continuation_text if is_continuation(mode) else item.text for item in items]
        prompts = continuation if is_continuation(mode) else cross
        results = synthesizer.synthesize(
            texts, prompts, "en-us", settings, prompt_seconds=None, progress=True
        )
        for item, result in zip(items, results, strict=True):
            write_wav(out / item.outputs[row], result.wav, rate)
        log.info("%s: %d utterances in %.1f s", row, len(items), time.perf_counter() - started)
    return items


@torch.inference_mode()
def speak_cross_utterance(
    synthesizer: Synthesizer, out: Path, items: Sequence[Item], config: SamplerConfig, folder: str
) -> list[Item]:
    """Say the items' texts with their cross-utterance prompts (the first seconds of another recording of
    the voice, as the speak stage cut them) and write OUT/folder/<key>.wav: what the learning curve and
    the recipe and sampler searches score.

    Returns:
        the items, their cross-utterance output pointing at the new wavs.
    """
    from dataclasses import replace

    from valle.audio import write_wav
    from valle.sampling.prompt import prompt_audio

    codec, rate = synthesizer.codec, synthesizer.codec.sample_rate
    prompts = [
        Prompt(codec.encode(prompt_audio(path, rate, PROMPT_SECONDS), rate), source=str(path))
        for path in ((out / item.truth).with_name(f"{item.prompt_key}.wav") for item in items)
    ]
    results = synthesizer.synthesize(
        [item.text for item in items], prompts, "en-us", config, prompt_seconds=None
    )
    spoken = []
    for item, result in zip(items, results, strict=True):
        spoken.append(replace(item, outputs={"cross-utterance": f"{folder}/{item.key}.wav"}))
        write_wav(out / spoken[-1].outputs["cross-utterance"], result.wav, rate)
    return spoken


def read_manifest(out: Path) -> list[Item]:
    return [Item(**i) for i in json.loads((out / "samples" / "manifest.json").read_text())]


def manifest_rows(items: Sequence[Item]) -> tuple[str, ...]:
    """The report's rows for the speak stage's items (`report_rows` of the rows it spoke)."""
    return report_rows([row for row in items[0].outputs if row != "resynthesis"])


def first_per_voice(items: Sequence[Item], n: int) -> list[Item]:
    """The first `n` items of each held-out voice, in manifest order: a fixed subset, the same every run."""
    taken: dict[str, int] = {}
    chosen = []
    for item in items:
        if taken.setdefault(item.speaker, 0) < n:
            taken[item.speaker] += 1
            chosen.append(item)
    return chosen
