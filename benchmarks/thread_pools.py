"""Why the server's main thread runs no torch: a decode step in a thread, alone and while another
long-lived thread holds a pool of OpenMP workers, in one run.

    .venv/bin/python benchmarks/thread_pools.py --preset small

Everything runs in threads of `valle.utils.threads`; the main thread runs no torch kernel until the
second half. Each half times `Linear(512, 512)` on one row (median of 2000 calls) and one AR step of
`--preset` with int8 weights and random weights (`batch_scaling.ar_step_seconds`), in a thread of its own:
first with no other pool in the process, then after the main thread has run a parallel kernel and so
holds a pool of workers for as long as it lives. Prints both and their ratio.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import torch
from batch_scaling import CODEBOOK, LEVELS, ar_step_seconds, rows

from valle.models.config import ValleConfig
from valle.models.quantize import quantize
from valle.models.valle import Valle
from valle.utils.threads import run_in_own_thread


def linear_seconds() -> float:
    layer, x = torch.nn.Linear(512, 512), torch.randn(1, 512)
    times = []
    with torch.inference_mode():
        for _ in range(200):
            layer(x)
        for _ in range(2000):
            start = time.perf_counter()
            layer(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="small")
    args = parser.parse_args()
    logging.getLogger("valle").setLevel(logging.ERROR)

    def build() -> Valle:
        torch.manual_seed(0)
        model = Valle(getattr(ValleConfig, args.preset)().with_data(100, LEVELS, CODEBOOK)).eval()
        return quantize(model, "int8")

    model, cond = run_in_own_thread(build), run_in_own_thread(rows, 1)
    measure = lambda: (linear_seconds(), ar_step_seconds(model, cond))  # noqa: E731
    alone = run_in_own_thread(measure)
    torch.randn(1_000_000).exp()  # the main thread runs a parallel kernel: it holds a pool from now on
    beside = run_in_own_thread(measure)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.preset} int8, random weights")
    for name, a, b in zip(("Linear(512, 512), one row", "AR step, one row"), alone, beside, strict=True):
        print(
            f"{name}: {a * 1e6:8.1f} us alone, {b * 1e6:8.1f} us beside the main thread's pool "
            f"({b / a:.2f}x slower)"
        )


if __name__ == "__main__":
    main()
