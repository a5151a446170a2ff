"""What batching buys each stage: AR frames/s and NAR frames/s against the number of rows, in one run.

    .venv/bin/python benchmarks/batch_scaling.py --preset small --batches 1 2 4 8

Random weights; a text of 40 ids and a 3 s prompt (225 frames, 8 levels) per row. For each batch size B
and fp32 / int8: the time of one AR step of `ArRows` (median of 40 steps after 5 warm-up steps, the
demo's sampler) and of one NAR pass (`decode_nar`, greedy) over 150 frames per row. Frames/s is B × the
frames over the time, so B × (batch-1 time) / (batch-B time) is what continuous batching gains at that
stage; the server's throughput is bounded by the stage that gains least.

`--whole-ff` also times each NAR pass with the feed-forward over all positions at once (the baseline
of `transformer.INFERENCE_SLICE_VALUES`'s slices) and prints the ratio.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import torch

from valle.models.backbones.transformer import FeedForward
from valle.models.config import ValleConfig
from valle.models.quantize import quantize
from valle.models.valle import Valle
from valle.sampling.ar import ArRows, DecodeLimits
from valle.sampling.nar import decode_nar
from valle.sampling.pipeline import ArSampler, NarSampler, SamplerConfig
from valle.utils.batch import Conditioning

TEXT_IDS, PROMPT_FRAMES, FRAMES, LEVELS, CODEBOOK = 40, 225, 150, 8, 1024


def rows(batch: int) -> Conditioning:
    g = torch.Generator().manual_seed(1)
    texts = [torch.randint(1, 100, (TEXT_IDS,), generator=g) for _ in range(batch)]
    prompts = [torch.randint(0, CODEBOOK, (LEVELS, PROMPT_FRAMES), generator=g) for _ in range(batch)]
    return Conditioning.pad(texts, prompts, 0)


@torch.inference_mode()
def ar_step_seconds(model: Valle, cond: Conditioning) -> float:
    config = SamplerConfig(ar_temperature=0.8, top_p=0.9, max_ar_steps=60)
    decoding = ArRows(model, cond, ArSampler(config, model.config.stop_token), DecodeLimits(60))
    for _ in range(5):
        decoding.step()
    times = []
    for _ in range(40):
        start = time.perf_counter()
        decoding.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.inference_mode()
def nar_seconds(model: Valle, cond: Conditioning, repeats: int = 3) -> float:
    g = torch.Generator().manual_seed(2)
    codes = torch.randint(0, CODEBOOK, (cond.size, FRAMES), generator=g)
    lengths = torch.full((cond.size,), FRAMES)
    sampler = NarSampler(SamplerConfig())
    decode_nar(model, cond, codes, lengths, sampler)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        decode_nar(model, cond, codes, lengths, sampler)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def whole_ff_seconds(model: Valle, cond: Conditioning) -> float:
    """`nar_seconds` with every feed-forward over all its positions in one slice; restored after."""
    layers = [m for m in model.modules() if isinstance(m, FeedForward)]
    kept = [m.slice_positions for m in layers]
    for m in layers:
        m.slice_positions = 2**62
    try:
        return nar_seconds(model, cond)
    finally:
        for m, n in zip(layers, kept, strict=True):
            m.slice_positions = n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--whole-ff", action="store_true", help="also time the NAR without FF slices")
    args = parser.parse_args()
    logging.getLogger("valle").setLevel(logging.ERROR)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.preset}, random weights")
    for mode in ("fp32", "int8"):
        torch.manual_seed(0)
        model = Valle(getattr(ValleConfig, args.preset)().with_data(100, LEVELS, CODEBOOK)).eval()
        model = quantize(model, "int8") if mode == "int8" else model
        base_ar = base_nar = None
        for batch in args.batches:
            cond = rows(batch)
            ar, nar = ar_step_seconds(model, cond), nar_seconds(model, cond)
            base_ar, base_nar = base_ar or ar / batch, base_nar or nar / batch
            print(
                f"{mode} B={batch:2d} | AR step {ar * 1000:6.1f} ms, {batch / ar:6.0f} frames/s "
                f"({base_ar * batch / ar:4.2f}x batch 1's) | NAR pass {nar:5.2f} s, "
                f"{batch * FRAMES / nar:5.0f} frames/s ({base_nar * batch / nar:4.2f}x batch 1's)",
                flush=True,
            )
            if args.whole_ff:
                whole = whole_ff_seconds(model, cond)
                print(
                    f"{mode} B={batch:2d} | NAR pass, FF over all positions at once: {whole:5.2f} s, "
                    f"{batch * FRAMES / whole:5.0f} frames/s; slices are {whole / nar:4.2f}x faster",
                    flush=True,
                )


if __name__ == "__main__":
    main()
