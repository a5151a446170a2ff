"""`make demo`: the main job on the built-in corpus, offline, scored like the VALL-E paper.

    python -m valle.demo [out=outputs/demo] [size=full|quick|ci] [minutes=20] [steps=N] [curve_minutes=3] \
        [best_of=0|N] [stage=all|NAME]

Sizes: `full` (`make demo`: 20 minutes of training, 60 held-out items a row), `quick` (the same corpus
and recipe stopped at 500 steps, 24 held-out items a row: a ~6-minute check that training
learns to talk), `ci` (a toy run that checks every stage writes its files).

Stages (each reuses what a previous run finished, so a rerun is quick and `stage=NAME` reruns one):
  1. corpus    festival voices and their sox pitch/tempo variants read the built-in sentences; three
               voices and the last 60 sentences are held out of training (valle.corpus)
  2. shards    prepare.py's work with the offline `mel` codec: its codebooks are fit on the corpus
  3. train     train.py experiment=demo for a time budget (resumes from its last checkpoint); a weights-only
               snapshot every `curve_minutes` of training goes to run/curve/ (callbacks=curve). A budget of
               30 minutes or more trains d_model 256 instead of 128 (it keeps learning where 128 stops)
  4. export    the last checkpoint → one portable file (it carries the mel codebooks)
  5. recognizer  with best_of=N only: a small CTC recognizer of level-0 codes, trained on the training
               shards for 4 minutes (python -m valle.recognizer): it judges the best-of rows' draws
  6. speak     every held-out voice says held-out sentences: cross-utterance (a 3 s prompt from another
               recording of that voice) and continuation (the recording's own first words, up to 3 s, cut
               at a word boundary found by forced alignment; the model says the rest); with best_of=N
               both again, each output the clearest of N draws to the recognizer (`sampler.best_of`)
  7. curve     the learning curve: every snapshot and the exported model speak the same held-out items
               (the first 3 of each voice, cross-utterance, speak's sampler and seed) and are scored as
               below → curve.json (resumable: a scored snapshot is not scored again)
  8. evaluate  ground truth, codec resynthesis and both model modes scored with pocketsphinx (sentence ID
               among the row's sentences, PER, WER, CER) and resemblyzer (SIM), each with a 95 %
               bootstrap interval → report.md, report.html (players beside their prompts, the learning
               curve), report.json and PNG plots; the continuation rows are scored on what they generated only
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from valle.cli.demo.scoring import evaluate, learning_curve
from valle.cli.demo.settings import (
    CURVE_ITEMS_PER_VOICE,
    CURVE_MINUTES,
    SIZES,
    STAGES,
    curve_overrides,
)
from valle.cli.demo.speak import first_per_voice, read_manifest, speak
from valle.cli.demo.stages import export, make_corpus, make_shards, recognizer, train
from valle.cli.options import choice, parse_options
from valle.errors import ConfigError


def stage(n: int, name: str, detail: object) -> None:
    print(f"[{n}/{len(STAGES)}] {name}: {detail}", flush=True)


@dataclass
class DemoOptions:
    out: str = "outputs/demo"
    size: str = choice("full", "quick", "ci")
    minutes: float | None = None  # training time budget (default: the size's, 20 for full)
    steps: int | None = None  # training step limit (default: the size's)
    curve_minutes: float = CURVE_MINUTES  # a learning-curve snapshot every this many training minutes
    best_of: int | None = None  # the best-of rows' N (default: the size's; 0 for full: none)
    stage: str = choice("all", *STAGES)  # run one stage (each reuses what earlier runs finished)


def main(argv: list[str]) -> None:
    options = parse_options("valle.demo", DemoOptions, argv, doc=__doc__ or "")
    out, size, only = Path(options.out).resolve(), SIZES[options.size], options.stage
    minutes = size.minutes if options.minutes is None else options.minutes
    steps = size.max_steps if options.steps is None else options.steps
    curve_minutes = options.curve_minutes
    best_of = size.best_of if options.best_of is None else options.best_of
    if best_of < 0 or best_of == 1:
        raise ConfigError(f"best_of={best_of}: pass 0 (no best-of rows) or the number of draws, 2 or more")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out.mkdir(parents=True, exist_ok=True)
    run = lambda name: only in ("all", name)  # noqa: E731
    if run("corpus"):
        corpus = make_corpus(out, size)
        stage(1, "corpus", f"{corpus} ({sum(1 for _ in corpus.rglob('*.wav'))} wavs)")
    if run("shards"):
        stage(2, "shards", "\n" + make_shards(out, size))
    if run("train"):
        stage(3, "train", train(out, size, minutes, steps, overrides=curve_overrides(size, curve_minutes)))
    if run("export"):
        stage(4, "export", export(out))
    if run("recognizer"):
        stage(5, "recognizer", recognizer(out, size) if best_of > 1 else "none (best_of=0: no best-of rows)")
    if run("speak"):
        said = speak(out, size, best_of)
        stage(
            6, "speak", f"{len(said)} held-out utterances × {len(said[0].outputs)} rows in {out / 'samples'}"
        )
    if run("curve"):
        from valle.evaluate.curve import format_curve_markdown

        points = learning_curve(out, size)
        n_items = len(first_per_voice(read_manifest(out), CURVE_ITEMS_PER_VOICE))
        stage(7, "curve", f"{out / 'curve.json'}\n\n{format_curve_markdown(points, n_items)}")
    if run("evaluate"):
        report, table = evaluate(out)
        stage(8, "evaluate", f"{report}\n{out / 'report.html'}\n\n{table}")
