"""The demo's held-out cross-utterance items spoken with other sampler settings, scored by the demo's
instrument, for several seeds (docs/benchmarks.md).

    python benchmarks/demo_sampler.py --out outputs/demo ar_temperature=0.8 top_p=0.9
    python benchmarks/demo_sampler.py --out outputs/demo --model outputs/demo/run/checkpoints/last.ckpt \\
        ar_temperature=0.8 top_p=0.9 --seeds 0 1 2

The items are those of the demo's cross-utterance row (OUT/samples/manifest.json, written by `make demo`):
every held-out recording's text, prompted by the first 3 s of the voice's next recording. Each
`key=value` argument sets a `SamplerConfig` field (valle.sampling.pipeline); the others keep
SamplerConfig's defaults, not the demo's (the demo speaks with `ar_temperature=0.8 top_p=0.9
max_ar_steps_per_phoneme=12 seed=0`). `--seeds` replaces the seed. `--model` is an exported model or a
Lightning checkpoint (default OUT/model.pt); `--recognizer` judges `best_of=N` candidates.

The outputs go to OUT/samples/sampler/NAME/seedN/. Each seed's outputs are scored as the report's
cross-utterance row: sentence ID among all the held-out texts, PER, WER, SIM to the prompt, and the
duration ratio to the recording with the share of items within (0.8, 1.25). One line per seed, with
the sentences identified per held-out voice, then the mean sentence ID over the seeds.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import fields, replace
from pathlib import Path
from statistics import fmean

from omegaconf.errors import OmegaConfBaseException

import valle
from valle.cli.demo.scoring import AudioCache, eval_rows, one_thread, scorers
from valle.cli.demo.speak import Item, first_per_voice, read_manifest, speak_cross_utterance
from valle.cli.options import typed
from valle.errors import ConfigError
from valle.evaluate.report import RowScores, evaluate_rows
from valle.recognizer_card import load_recognizer
from valle.sampling.pipeline import SamplerConfig
from valle.sampling.synthesize import Synthesizer

ROW = "cross-utterance"


def parse_settings(parser: argparse.ArgumentParser, arguments: list[str]) -> dict[str, str]:
    """`key=value` arguments → {SamplerConfig field: value as written}; refuses unknown keys and `seed`."""
    known = {f.name for f in fields(SamplerConfig)} - {"seed"}
    settings = {}
    for argument in arguments:
        key, equals, value = argument.partition("=")
        if key == "seed":
            parser.error("set the seeds with --seeds, not seed=")
        if not equals or key not in known:
            parser.error(f"{argument!r}: expected key=value with a key among {', '.join(sorted(known))}")
        settings[key] = value
    return settings


def seed_line(seed: int, row: RowScores, spoken: list[Item]) -> str:
    """One seed's scores, with the sentences identified per held-out voice."""
    voices: Counter[str] = Counter(item.speaker for item in spoken)
    right: Counter[str] = Counter(
        item.speaker for item, scores in zip(spoken, row.items, strict=True) if scores.sentence_correct
    )
    per_voice = ", ".join(f"{voice} {right[voice]}/{n}" for voice, n in voices.items())
    return (
        f"seed {seed}: sentence ID {row.sentence_id:.3f} ({per_voice}) | PER {100 * row.per:.1f} % | "
        f"WER {100 * row.wer:.1f} % | SIM prompt {row.sim_prompt:.3f} | "
        f"duration ratio {row.duration_ratio:.3f}, in band {100 * row.duration_in_band:.0f} %"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="a `make demo` folder")
    parser.add_argument("--model", type=Path, help="an exported model or a checkpoint (default OUT/model.pt)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--name", help="outputs' folder in OUT/samples/sampler (default: the settings)")
    parser.add_argument("--items", type=int, help="only the first N held-out items of each voice")
    parser.add_argument("--jobs", type=int, default=2, help="scoring processes")
    parser.add_argument(
        "--recognizer", type=Path, help="a level-0 recognizer (python -m valle.recognizer) for best_of=N"
    )
    parser.add_argument("settings", nargs="*", metavar="key=value", help="SamplerConfig fields")
    args = parser.parse_args()
    settings = parse_settings(parser, args.settings)
    try:
        config = typed(SamplerConfig, settings)
    except (ConfigError, OmegaConfBaseException) as error:
        parser.error(str(error))
    name = args.name or ",".join(f"{key}={value}" for key, value in settings.items()) or "defaults"
    out = args.out
    items = read_manifest(out)
    candidates = list(dict.fromkeys(item.text for item in items))  # every held-out text
    chosen = items if args.items is None else first_per_voice(items, args.items)

    recognizer = load_recognizer(args.recognizer) if args.recognizer else None
    synthesizer = Synthesizer(valle.load(args.model or out / "model.pt"), recognizer=recognizer)
    started = time.perf_counter()
    folder = f"samples/sampler/{name}"
    spoken = {
        seed: speak_cross_utterance(
            synthesizer, out, chosen, replace(config, seed=seed), f"{folder}/seed{seed}"
        )
        for seed in args.seeds
    }
    spoke = time.perf_counter()
    read = AudioCache(out)
    rows = {f"seed{seed}": eval_rows(said, read, rows=(ROW,))[ROW] for seed, said in spoken.items()}
    for row in rows.values():
        for scored in row:
            scored.candidates = candidates
    with one_thread():  # scoring spawns worker processes: keep the `__main__` guard below
        scores = evaluate_rows(rows, scorers=scorers, jobs=args.jobs)

    print(f"{name}: {len(chosen)} items, model {args.model or out / 'model.pt'}, sampler {config}")
    print(f"spoken in {spoke - started:.0f} s, scored in {time.perf_counter() - spoke:.0f} s")
    for seed, row in zip(args.seeds, scores, strict=True):
        print(seed_line(seed, row, spoken[seed]))
    mean = fmean(row.sentence_id for row in scores)
    print(f"mean sentence ID over {len(args.seeds)} seeds: {mean:.3f}")
    print(f"outputs in {out / folder}")


if __name__ == "__main__":
    main()
