"""Does bf16 buy the demo more steps on this CPU? The demo's recipe trained for the same number of steps
in `trainer.precision=32` and `bf16-mixed`, one after the other on the demo's shards, and the ratio.

    python benchmarks/cpu_precision.py --out outputs/demo --steps 80 model.scale.d_model=256

The shards come from `python -m valle.demo out=OUT stage=shards`. Each run trains from scratch in a
temporary folder (startup included in both: the same for each). bf16 autocast pays on CPUs with AMX or
AVX512-BF16 only where the matrix products dominate the step; docs/benchmarks.md, "Twice the budget for
the wider AR".
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from valle.cli.demo.settings import SIZES
from valle.cli.demo.stages import train


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("overrides", nargs="*", help="train.py overrides, e.g. model.scale.d_model=256")
    args = parser.parse_args()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    capability, threads = torch.backends.cpu.get_cpu_capability(), torch.get_num_threads()
    print(f"CPU capability {capability}, AMX {amx}, {threads} threads")
    seconds = {}
    for precision in ("32", "bf16-mixed"):
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            overrides = [
                *args.overrides,
                f"trainer.precision={precision}",
                "trainer.val_check_interval=100000",
            ]
            train(
                args.out.resolve(), SIZES["full"], 60, args.steps, run_dir=Path(folder), overrides=overrides
            )
            seconds[precision] = time.perf_counter() - started
        print(f"{precision}: {args.steps} steps in {seconds[precision]:.1f} s")
    print(f"fp32 / bf16-mixed: {seconds['32'] / seconds['bf16-mixed']:.2f}x")


if __name__ == "__main__":
    main()
