"""Outputs past the trained lengths: PER and WER of ~30 s utterances, each decoded as one AR run, with the
whole context and with sliding ones (`max_ar_context`, a decode per `--context`), for models trained with
and without `training.sliding_context` (docs/benchmarks.md, "Sliding context").

    python benchmarks/long_outputs.py --out outputs/demo --context 100 150 --sentences 12 --stride 4 \\
        --models plain=outputs/demo/model.pt sliding=outputs/demo/recipes/sliding/run/checkpoints/last.ckpt

The texts are the demo's held-out sentences (OUT/samples/manifest.json, from `make demo`), `--sentences`
of one voice's joined into one text (~2.6 s each: 12 make ~31 s), said in that voice from its first
cross-utterance prompt (3 s), with the demo's sampler (`valle.cli.demo.settings.sampler_config`: T 0.8,
top-p 0.9, expected codewords, seed 0). Each text is one AR run (`Synthesizer.generate`), with the whole
context and with `--context`; a third line splits it into sentences, an AR run each (what
`Synthesizer.synthesize` does with long text). Each line: PER, WER, duration against the recordings'
total, and the share of texts that hit the step limit. First comes the recordings themselves, joined,
through the same recognizer: the instrument's floor on speech this long.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import torch

import valle
from valle.cli.demo.scoring import AudioCache, one_thread, scorers
from valle.cli.demo.settings import PROMPT_SECONDS, SIZES, sampler_config
from valle.cli.demo.speak import read_manifest
from valle.evaluate.report import evaluate_rows
from valle.evaluate.scoring import EvalItem
from valle.sampling.prompt import Prompt, prompt_audio
from valle.sampling.synthesize import Synthesizer


def long_items(out: Path, sentences: int, stride: int) -> list[tuple[str, list[str], Path]]:
    """(key, the recordings joined, the prompt wav) per group of `sentences` held-out items of a voice,
    a group starting every `stride` items (overlapping groups when stride < sentences)."""
    by_voice = defaultdict(list)
    for item in read_manifest(out):
        by_voice[item.speaker].append(item)
    groups = []
    for speaker, items in sorted(by_voice.items()):
        for start in range(0, len(items) - sentences + 1, stride):
            group = items[start : start + sentences]
            prompt = (out / group[0].truth).with_name(f"{group[0].prompt_key}.wav")
            groups.append((f"{speaker}-{start}", [i.truth for i in group], prompt))
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="a `make demo` folder")
    parser.add_argument("--models", nargs="+", required=True, metavar="NAME=PATH")
    parser.add_argument(
        "--context", type=int, nargs="+", default=[300], help="max_ar_context of the sliding decodes"
    )
    parser.add_argument("--sentences", type=int, default=4, help="held-out sentences joined per text")
    parser.add_argument(
        "--stride", type=int, help="a text starts every STRIDE sentences (default: --sentences)"
    )
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    if args.sentences < 1 or (args.stride is not None and args.stride < 1) or min(args.context) < 1:
        parser.error("--sentences, --stride and --context count sentences or frames: give 1 or more")
    out = args.out.resolve()
    manifest = {item.truth: item for item in read_manifest(out)}
    groups = long_items(out, args.sentences, args.stride or args.sentences)
    read = AudioCache(out)
    truth_seconds = sum(read(t)[0].shape[-1] / read(t)[1] for _, truths, _ in groups for t in truths)
    texts = {key: " ".join(manifest[t].text for t in truths) for key, truths, _ in groups}

    def score(name: str, context: object, row: list[EvalItem], seconds: float, hits: int) -> None:
        with one_thread():
            [scores] = evaluate_rows({"long": row}, scorers=scorers, jobs=args.jobs)
        print(
            f"{name:>10} context {context:>5}: {len(row)} texts of ~{truth_seconds / len(row):.0f} s | "
            f"PER {100 * (scores.per or 0):.1f} % | WER {100 * (scores.wer or 0):.1f} % | duration "
            f"{seconds / truth_seconds:.2f} of the recordings | hit the step limit {hits}/{len(row)}",
            flush=True,
        )

    # the instrument's own floor on ~30 s of speech: the recordings of each text, joined
    recordings = []
    for key, truths, prompt_path in groups:
        joined = torch.cat([read(t)[0] for t in truths], dim=-1)
        prompt_wav, prompt_rate = read(str(prompt_path.relative_to(out)))
        recordings.append(
            EvalItem(key, texts[key], joined, read(truths[0])[1], prompt_wav, None, prompt_rate)
        )
    score("recordings", "-", recordings, truth_seconds, 0)
    for spec in args.models:
        name, path = spec.split("=", 1)
        synthesizer = Synthesizer(valle.load(path))
        codec, rate = synthesizer.codec, synthesizer.codec.sample_rate
        prompts = {  # each group's prompt, encoded once with this model's codec for all its decodes
            key: Prompt(codec.encode(prompt_audio(prompt_path, rate, PROMPT_SECONDS), rate))
            for key, _, prompt_path in groups
        }
        # (label, max_ar_context, split into sentences): one AR run with the whole context, one with a
        # sliding window, and what `Synthesizer.synthesize` does with long text (a run per sentence)
        for label, context, split in (
            ("whole", None, False),
            *((size, size, False) for size in args.context),
            ("split", None, True),
        ):
            config = replace(sampler_config(SIZES["full"]), max_ar_context=context)
            row, hits, seconds = [], 0, 0.0
            for key, _, prompt_path in groups:
                text, prompt = texts[key], prompts[key]
                if split:
                    [said] = synthesizer.synthesize([text], [prompt], "en-us", config)
                    wav, hit = said.wav, said.hit_limit
                else:
                    [spoken] = synthesizer.generate([text], [prompt], "en-us", config)
                    wav, hit = codec.decode(spoken.codes, spoken.expected).cpu(), spoken.hit_limit
                hits += hit
                seconds += wav.shape[-1] / rate
                prompt_wav, prompt_rate = read(str(prompt_path.relative_to(out)))
                row.append(EvalItem(key, text, wav, rate, prompt_wav, None, prompt_rate))
            score(name, label, row, seconds, hits)


if __name__ == "__main__":
    main()
