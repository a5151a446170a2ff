"""Where a demo model loses the words: each stage between the recording and the output, scored by the
demo's instrument.

    python benchmarks/demo_diagnosis.py --out outputs/demo --model outputs/demo/model.pt [--group builtin]
    python benchmarks/demo_diagnosis.py --out outputs/demo --group held_out --voices 3 --items 20

For the first `--items` recordings of `--voices` voices of the demo corpus (`--group builtin`: voices and
sentences it was trained on; `held_out`: neither, and `--voices 3 --items 20` is the report's 60
cross-utterance items), each prompted by the voice's next recording (cross-utterance, 3 s), the stages are:

- the recording, and its codec resynthesis (every level);
- the true level 0 alone, with code 0 at every level above it, with the NAR's levels above it, and with
  the NAR's expected codewords above it (`sampler.expected_codewords`, as the demo decodes);
- the AR's teacher-forced argmax (each frame predicted from the true frames before it), alone and
  with the NAR's levels;
- the model's own output (the demo's sampler).

A model with monotonic alignment (`model.monotonic_alignment`) is told which text symbol each frame says:
the teacher-forced AR and the NAR get the recording's true frame symbols, computed from the TextGrid
beside it as `prepare` computes a shard's durations (`valle.data.alignment.symbol_durations`).

Each stage's audio goes to OUT/samples/diagnosis/NAME/GROUP/<stage>/ (NAME: `--name`, default the model
file's stem) and is scored as the report's cross-utterance row (`valle.cli.demo.scoring.eval_rows`):
sentence ID among `--candidates` texts of the group, PER, WER, SIM to the prompt, duration ratio. The
table adds the top-1 accuracy of the teacher-forced AR's level 0 and of the NAR's levels given the true
level 0. A stage that loses much more than the one before it is where to look (docs/benchmarks.md,
"Where the words are lost").
"""

from __future__ import annotations

import argparse
import random
import re
from dataclasses import replace
from pathlib import Path
from statistics import fmean

import torch

import valle
from valle.audio import load_for_codec, write_wav
from valle.cli.demo.scoring import AudioCache, eval_rows, one_thread, scorers
from valle.cli.demo.settings import EXPECTED_CODEWORDS, PROMPT_SECONDS, SIZES, sampler_config
from valle.cli.demo.speak import Item
from valle.data.alignment import frame_symbols, symbol_durations
from valle.evaluate.report import RowScores, evaluate_rows, format_markdown
from valle.sampling.nar import decode_nar
from valle.sampling.pipeline import NarSampler, SamplerConfig
from valle.sampling.prompt import Prompt, prompt_audio
from valle.sampling.synthesize import Synthesizer
from valle.text.phonemize import phonemize
from valle.utils.batch import Batch, Conditioning
from valle.utils.textgrid import read_textgrid

STAGES = (
    "recording",
    "resynthesis",
    "true level 0",
    "true level 0 + code 0 above",
    "true level 0 + NAR",
    "true level 0 + NAR, expected codewords",
    "teacher-forced AR",
    "teacher-forced AR + NAR",
    "free running",
)
ROW = "cross-utterance"  # every stage is scored as the report's cross-utterance row


def recordings(out: Path, group: str, voices: int, items: int, folder: str) -> list[Item]:
    """The first `items` recordings of the first `voices` voices, as the demo's items: each prompted by
    the voice's next recording (the last by the first), its prompt wav to be written to folder/prompts."""
    chosen = []
    for voice in sorted((out / "corpus" / group).iterdir())[:voices]:
        wavs = sorted(voice.glob("*.wav"))
        for i, wav in enumerate(wavs[:items]):
            chosen.append(
                Item(
                    key=wav.stem,
                    speaker=voice.name,
                    text=wav.with_suffix(".txt").read_text().strip(),
                    truth=str(wav.relative_to(out)),
                    prompt=f"{folder}/prompts/{wav.stem}.wav",
                    prompt_key=wavs[(i + 1) % len(wavs)].stem,
                    continuation_seconds=0.0,  # no continuation row here
                    continuation_text="",
                    outputs={},
                )
            )
    return chosen


def stage_file(folder: str, stage: str, item: Item) -> str:
    """Where a stage's audio of an item is, relative to OUT (the recording is the corpus' own file)."""
    if stage == "recording":
        return item.truth
    return f"{folder}/{re.sub(r'[^a-z0-9]+', '_', stage.lower()).strip('_')}/{item.key}.wav"


def true_frame_symbols(wav: Path, text: str, frames: int, frame_rate: float) -> torch.Tensor:
    """[1, T] the text id each frame of the recording says, from the TextGrid beside it."""
    grid = wav.with_suffix(".TextGrid")
    if not grid.is_file():
        raise SystemExit(
            f"{grid} is missing: a model with monotonic alignment is given the recording's true frame "
            "symbols from its alignment; rebuild the corpus with `python -m valle.demo out=OUT stage=corpus`"
        )
    tiers = read_textgrid(grid)
    durations = symbol_durations(
        phonemize(text, "en-us"), tiers["words"], tiers.get("phones"), frames, frame_rate
    )
    if durations is None:
        raise SystemExit(f"{grid}: its words do not pair with the transcript {text!r}")
    return torch.from_numpy(frame_symbols(durations)).long()[None]


@torch.inference_mode()
def stage_audio(
    synthesizer: Synthesizer, wav: Path, prompt: Prompt, text: str
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Every stage but the recording and free running, for one recording.

    Returns:
        (stage → waveform, top-1 accuracy of the teacher-forced AR's level 0 and of each NAR level
        given the true level 0).
    """
    model, codec, rate = synthesizer.model, synthesizer.codec, synthesizer.codec.sample_rate
    codes = codec.encode(load_for_codec(wav, rate), rate)  # [L, T]
    lengths = torch.tensor([codes.shape[1]])
    said = (
        true_frame_symbols(wav, text, codes.shape[1], codec.frame_rate)
        if model.config.monotonic_alignment
        else None
    )
    ids = synthesizer.text_ids(text, "en-us")
    cond = Conditioning.pad(
        [ids], [prompt.codes], synthesizer.loaded.card.symbols.pad_id, torch.tensor([False])
    )
    aligned = None if said is None else torch.tensor([True])
    batch = Batch(cond, codes[None], lengths, frame_symbols=said, aligned=aligned)
    [ar] = model(batch, torch.zeros(1, dtype=torch.long)).levels
    argmax = ar.logits[:, : model.config.codebook_size].argmax(-1)[: codes.shape[1]]

    def with_nar(level0: torch.Tensor) -> torch.Tensor:
        sampler = NarSampler(SamplerConfig())  # greedy, as the demo's sampler
        filled, _ = decode_nar(model, cond, level0[None], lengths, sampler, frame_symbols=said)
        return filled[0]

    nar_on_truth = with_nar(codes[0])
    expected_sampler = NarSampler(SamplerConfig(expected_codewords=EXPECTED_CODEWORDS))  # as the demo's
    _, expected = decode_nar(model, cond, codes[:1], lengths, expected_sampler, frame_symbols=said)
    audio = {
        "resynthesis": codec.decode(codes),
        "true level 0": codec.decode_levels(codes[:1]),
        "true level 0 + code 0 above": codec.decode(torch.cat([codes[:1], torch.zeros_like(codes[1:])])),
        "true level 0 + NAR": codec.decode(nar_on_truth),
        "true level 0 + NAR, expected codewords": codec.decode(nar_on_truth, expected[0]),
        "teacher-forced AR": codec.decode_levels(argmax[None]),
        "teacher-forced AR + NAR": codec.decode(with_nar(argmax)),
    }
    accuracy = {"teacher-forced AR, level 0": (argmax == codes[0]).float().mean().item()}
    for level in range(1, len(codes)):
        accuracy[f"NAR on true level 0, level {level}"] = (
            (nar_on_truth[level] == codes[level]).float().mean().item()
        )
    return audio, accuracy


def speak_stages(
    synthesizer: Synthesizer, out: Path, chosen: list[Item], folder: str
) -> list[dict[str, float]]:
    """Write every stage's audio (and each item's prompt) under OUT/folder.

    Returns:
        each item's top-1 accuracies (`stage_audio`).
    """
    codec, rate = synthesizer.codec, synthesizer.codec.sample_rate
    prompts = []
    for item in chosen:
        audio = prompt_audio((out / item.truth).with_name(f"{item.prompt_key}.wav"), rate, PROMPT_SECONDS)
        write_wav(out / item.prompt, audio, rate)
        prompts.append(Prompt(codec.encode(audio, rate), source=item.prompt_key))
    texts = [item.text for item in chosen]
    spoken = synthesizer.synthesize(
        texts, prompts, "en-us", sampler_config(SIZES["full"]), prompt_seconds=None
    )
    accuracies = []
    for item, prompt, output in zip(chosen, prompts, spoken, strict=True):
        audio, accuracy = stage_audio(synthesizer, out / item.truth, prompt, item.text)
        for stage, wav in {**audio, "free running": output.wav}.items():
            write_wav(out / stage_file(folder, stage, item), wav, rate)
        accuracies.append(accuracy)
    return accuracies


def candidate_texts(out: Path, group: str, texts: list[str], n: int) -> list[str]:
    """The spoken texts, then other texts of the group drawn at random, `n` in all (at least the texts)."""
    others = sorted({p.read_text().strip() for p in (out / "corpus" / group).glob("*/*.txt")} - set(texts))
    random.Random(0).shuffle(others)
    return list(dict.fromkeys(texts + others))[: max(n, len(set(texts)))]


def score(out: Path, chosen: list[Item], folder: str, candidates: list[str], jobs: int) -> list[RowScores]:
    """Every stage's audio scored as the report's cross-utterance row, one row per stage."""
    read = AudioCache(out)
    rows = {}
    for stage in STAGES:
        spoken = [replace(item, outputs={ROW: stage_file(folder, stage, item)}) for item in chosen]
        rows[stage] = eval_rows(spoken, read, rows=(ROW,))[ROW]
        for scored in rows[stage]:
            scored.candidates = candidates
    with one_thread():  # scoring spawns worker processes: keep the `__main__` guard below
        return evaluate_rows(rows, scorers=scorers, jobs=jobs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument(
        "--model", type=Path, help="an exported model or a training snapshot (default OUT/model.pt)"
    )
    parser.add_argument("--group", default="builtin", choices=("builtin", "held_out"))
    parser.add_argument("--voices", type=int, default=3)
    parser.add_argument("--items", type=int, default=5, help="recordings per voice")
    parser.add_argument("--candidates", type=int, default=60, help="sentence ID among this many texts")
    parser.add_argument("--name", help="outputs' folder in OUT/samples/diagnosis (default: the model's stem)")
    parser.add_argument("--jobs", type=int, default=2, help="scoring processes")
    args = parser.parse_args()
    model_path = args.model or args.out / "model.pt"
    folder = f"samples/diagnosis/{args.name or model_path.stem}/{args.group}"
    torch.manual_seed(0)
    synthesizer = Synthesizer(valle.load(model_path))
    if not hasattr(synthesizer.codec, "decode_levels"):
        raise SystemExit(
            f"{model_path}: its codec {synthesizer.codec.name!r} cannot decode level 0 alone; "
            "this diagnosis needs the demo's mel codec"
        )
    chosen = recordings(args.out, args.group, args.voices, args.items, folder)
    accuracies = speak_stages(synthesizer, args.out, chosen, folder)
    candidates = candidate_texts(args.out, args.group, [item.text for item in chosen], args.candidates)
    scores = score(args.out, chosen, folder, candidates, args.jobs)

    told = (
        "the NAR and the teacher-forced AR told the true frame symbols (TextGrid)"
        if synthesizer.model.config.monotonic_alignment
        else "no monotonic alignment"
    )
    print(f"{model_path} on {len(chosen)} {args.group} recordings; {told}")
    print(f"sentence ID among {len(candidates)} texts of the group\n")
    print(format_markdown(scores))
    print("top-1 accuracy on the recording's codes:")
    for what in accuracies[0]:
        print(f"  {what}: {fmean(a[what] for a in accuracies):.3f}")
    print(f"audio in {args.out / folder}")


if __name__ == "__main__":
    main()
