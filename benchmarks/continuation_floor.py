"""What the instrument leaves of a continuation's words when nothing is wrong with them: each held-out
recording's own remainder (the audio after its continuation prompt's cut) scored exactly as the demo's
continuation row scores the model's (docs/benchmarks.md, "make demo DEMO_MINUTES=30").

    python benchmarks/continuation_floor.py --out outputs/demo

A remainder is two to five words without the start of its sentence, which pocketsphinx's language model
reads worse than whole sentences: this row is the floor under the continuation rows' WER, as the ground
truth row is under the cross-utterance rows'. Needs a `make demo` folder (its manifest and recordings).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from valle.cli.demo.scoring import AudioCache, eval_rows, one_thread, scorers
from valle.cli.demo.speak import read_manifest
from valle.evaluate.report import evaluate_rows, format_markdown

ROW = "continuation"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="a `make demo` folder")
    parser.add_argument("--jobs", type=int, default=2, help="scoring processes")
    args = parser.parse_args()
    continued = eval_rows(read_manifest(args.out), AudioCache(args.out), rows=(ROW,))[ROW]
    # the row's items with the recording's remainder (their reference) in place of the model's output
    remainders = [
        replace(item, audio=item.reference_audio, sample_rate=item.reference_sample_rate or item.sample_rate)
        for item in continued
    ]
    with one_thread():  # scoring spawns worker processes: keep the `__main__` guard below
        scores = evaluate_rows({"ground truth, remainders": remainders}, scorers=scorers, jobs=args.jobs)
    print(format_markdown(scores))
    for item in scores[0].items:
        if not item.sentence_correct:
            print(f"not identified: {item.key}: {item.reference!r} heard as {item.hypothesis!r}")


if __name__ == "__main__":
    main()
