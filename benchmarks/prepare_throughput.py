"""Throughput of `prepare`: utterances and audio seconds encoded per wall-clock second.

Compares, in one run on the same corpus (the built-in espeak-ng corpus), one utterance per codec call
(the baseline) against `batch_seconds` of similar-length audio per call, each with the audio read in
the main process or by `num_workers` processes.

    .venv/bin/python benchmarks/prepare_throughput.py --codec encodec --voices 6 --sentences 8

Codec weights are random (same architecture and cost as the released ones; nothing is downloaded).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

from valle.codecs import build_codec
from valle.corpus import ESPEAK_VOICES, build_corpus, espeak_voices
from valle.data.prepare import PrepareSettings, prepare

CODEC_SETTINGS = {
    "encodec": {"bandwidth_kbps": 6},
    "dac": {"model_type": "44khz"},
    "vocos": {"bandwidth_kbps": 6},
}


def run(
    codec, corpus: Path, output: Path, batch_seconds: float, num_workers: int
) -> tuple[float, int, float]:
    settings = PrepareSettings(
        layout="folder",
        input=str(corpus),
        output=str(output),
        num_workers=num_workers,
        batch_seconds=batch_seconds,
    )
    started = time.perf_counter()
    index = prepare(settings, codec, codec.info).index
    seconds = time.perf_counter() - started
    return seconds, len(index.samples), index.hours() * 3600


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--codec", default="encodec", choices=sorted(CODEC_SETTINGS))
    parser.add_argument("--voices", type=int, default=6)
    parser.add_argument("--sentences", type=int, default=8)
    parser.add_argument("--batch-seconds", type=float, default=60.0)
    parser.add_argument("--num-workers", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="valle-bench-"))
    corpus = build_corpus(
        work / "corpus", espeak_voices(ESPEAK_VOICES[: args.voices]), n_sentences=args.sentences
    )
    codec = build_codec(args.codec, weights="random", **CODEC_SETTINGS[args.codec]).eval()
    print(f"codec {codec.info.name} {codec.info.variant}, torch threads {torch.get_num_threads()}")
    run(codec, corpus, work / "warmup", args.batch_seconds, 0)  # first-call costs (allocator, kernels)
    rows = {
        "baseline (1 utt/call, 0 workers)": run(codec, corpus, work / "a", 0.0, 0),
        f"1 utt/call, {args.num_workers} workers": run(codec, corpus, work / "b", 0.0, args.num_workers),
        f"batched ({args.batch_seconds:g} s/call, 0 workers)": run(
            codec, corpus, work / "c", args.batch_seconds, 0
        ),
        f"batched ({args.batch_seconds:g} s/call, {args.num_workers} workers)": run(
            codec, corpus, work / "d", args.batch_seconds, args.num_workers
        ),
    }
    print(f"{'setting':<40} {'utt':>5} {'audio s':>8} {'wall s':>7} {'utt/s':>7} {'audio s/s':>9}")
    for name, (wall, n, audio) in rows.items():
        print(f"{name:<40} {n:>5} {audio:>8.1f} {wall:>7.2f} {n / wall:>7.2f} {audio / wall:>9.2f}")
    base = next(iter(rows.values()))[0]
    for name, (wall, _, _) in list(rows.items())[1:]:
        print(f"speed-up of {name} over the baseline: {base / wall:.2f}x")


if __name__ == "__main__":
    main()
