"""One linear layer, one token: fp32 against torch's dynamic-int8 op against valle's `Int8Linear`.

    .venv/bin/python benchmarks/int8_linear.py --repeats 2000

For the `small` preset's layer shapes (d_model 512: attention in/out, SwiGLU up/down, the 1025-way
output head), prints microseconds per call of a [1, 1, in] input through

  fp32:    `torch.nn.functional.linear`,
  dynamic: `torch.ops.quantized.linear_dynamic` on per-channel 8-bit weights (what
           `torch.ao.quantization.quantize_dynamic` produces, and what `Int8Linear` used before),
  valle:   `valle.models.quantize.Int8Linear` (the same fbgemm kernel called directly, 7-bit weights,
           per-channel scales on its output),

and dynamic/valle, the speed-up. Both quantize weights per channel and activations per call; the
relative errors against fp32 are printed too, where the saturation `WEIGHT_MAX` avoids shows. Medians
of 5 blocks of `--repeats` calls after a warm-up. Weights are re-read from cache here, unlike in a
decode step, so this isolates the per-call cost.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from valle.models.quantize import Int8Linear

SHAPES = {"qkv": (512, 1536), "out": (512, 512), "up": (512, 4096), "down": (2048, 512), "head": (512, 1025)}


def per_call_us(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(50):
        fn()
    blocks = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        blocks.append((time.perf_counter() - start) / repeats * 1e6)
    return statistics.median(blocks)


def relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got - ref).norm() / ref.norm())


def measure(name: str, n_in: int, n_out: int, repeats: int) -> str:
    """One table row: the three paths' per-call times and the two int8 paths' errors."""
    linear = torch.nn.Linear(n_in, n_out, bias=name == "head")
    x = torch.randn(1, 1, n_in)
    scales = (linear.weight.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()
    q = torch.quantize_per_channel(
        linear.weight.detach(), scales, torch.zeros(n_out, dtype=torch.long), 0, torch.qint8
    )
    packed = torch.ops.quantized.linear_prepack(q, None if linear.bias is None else linear.bias.detach())
    int8 = Int8Linear.from_linear(linear)
    ref = F.linear(x, linear.weight, linear.bias)
    fp32 = per_call_us(lambda: F.linear(x, linear.weight, linear.bias), repeats)
    dynamic = per_call_us(lambda: torch.ops.quantized.linear_dynamic(x, packed), repeats)
    valle = per_call_us(lambda: int8(x), repeats)
    return (
        f"{name:6s} {n_in:5d}x{n_out:<5d} | {fp32:8.1f} {dynamic:10.1f} {valle:9.1f} | "
        f"{dynamic / valle:12.2f}x | "
        f"{relative_error(torch.ops.quantized.linear_dynamic(x, packed), ref):16.4f} "
        f"{relative_error(int8(x), ref):7.4f}"
    )


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; input [1, 1, in]; "
        f"medians of 5 x {args.repeats} calls"
    )
    print(
        f"{'layer':6s} {'in x out':>11s} | {'fp32 us':>8s} {'dynamic us':>10s} {'valle us':>9s} | "
        f"{'dynamic/valle':>13s} | {'rel. err dynamic':>16s} {'valle':>7s}"
    )
    torch.manual_seed(0)
    for name, (n_in, n_out) in SHAPES.items():
        print(measure(name, n_in, n_out, args.repeats))


if __name__ == "__main__":
    main()
