"""One row of the demo's recipe search: train a variant of `experiment=demo` on the demo's shards for a
time budget, then read what it learned (docs/benchmarks.md, "Teaching the demo to speak").

    python benchmarks/demo_recipe.py --out outputs/demo --name guided --minutes 8 \\
        training.guided_attention.weight=1.0

The shards come from `python -m valle.demo out=outputs/demo stage=corpus` and `stage=shards`. Each row
trains into OUT/recipes/NAME/run (resuming there if it exists) and appends a JSON line to
OUT/recipes/rows.jsonl: steps, samples, the last validation losses and the text-dependence gap
(docs/design.md, "Text-dependence gap": CE with another row's text − CE with the row's own, in nats;
≈ 0 for a model that ignores the text), and the gap at each validation. Extra arguments are Hydra
overrides of train.py's config.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import valle
from valle.cli.demo.scoring import learning_curve
from valle.cli.demo.settings import SIZES, curve_overrides
from valle.cli.demo.speak import plan_items
from valle.cli.demo.stages import train
from valle.evaluate.curve import snapshot_files
from valle.plot import read_metrics
from valle.sampling.synthesize import Synthesizer

WATCHED = ("val/loss_ar", "val/loss_nar", "val/text_gap", "val/acc_l0", "train/loss_guided_attention")


def summarize(run_dir: Path) -> dict:
    metrics = read_metrics(run_dir)
    last = {name: round(metrics[name][-1][1], 4) for name in WATCHED if metrics.get(name)}
    gap_curve = [(step, round(value, 4)) for step, value in metrics.get("val/text_gap", [])]
    return {
        "last": last,
        "text_gap_by_step": gap_curve,
        "steps": max((step for values in metrics.values() for step, _ in values), default=0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--name", required=True)
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument(
        "--curve-minutes", type=float, default=3.0, help="snapshot interval of the learning curve"
    )
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    run_dir = args.out.resolve() / "recipes" / args.name / "run"
    started = time.perf_counter()
    out, size = args.out.resolve(), SIZES["full"]
    last = train(
        out,
        size,
        args.minutes,
        args.steps,
        run_dir=run_dir,
        overrides=[*curve_overrides(size, args.curve_minutes), *args.overrides],
    )
    trained = round((time.perf_counter() - started) / 60, 2)
    if not (out / "samples" / "manifest.json").is_file():  # the held-out items and their prompts, once
        plan_items(out, Synthesizer(valle.load(last)).codec)
    models = [*snapshot_files(run_dir / "curve"), last]
    points = learning_curve(out, size, run_dir=run_dir, final=last, curve_file=run_dir.parent / "curve.json")
    curve = [
        {
            "step": p.step,
            "minutes": p.minutes,
            **{k: None if v is None else round(v, 4) for k, v in p.metrics.items()},
        }
        for p in points
    ]
    row = {
        "name": args.name,
        "overrides": args.overrides,
        "minutes": args.minutes,
        "wall_minutes": trained,
        **summarize(run_dir),
        "curve": curve,
        "models": [m.name for m in models],
    }
    with open(args.out / "recipes" / "rows.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
