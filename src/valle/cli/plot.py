"""`python -m valle.plot RUN_DIR`: a run's training curves (loss, accuracy, lr) as PNGs in RUN_DIR/plots/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from valle.cli.options import REQUIRED, parse_options
from valle.plot import plot_run


@dataclass
class PlotOptions:
    run_dir: str = REQUIRED  # a training run directory (it holds csv/version_N/metrics.csv)


def main(argv: list[str]) -> list[Path]:
    options = parse_options("valle.plot", PlotOptions, argv, positional=("run_dir",), doc=__doc__ or "")
    paths = plot_run(options.run_dir)
    for path in paths:
        print(path)
    return paths
