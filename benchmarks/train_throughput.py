"""Training throughput: real (unpadded) tokens per second and the padding fraction, with length
bucketing against without it (one bucket), in one run on the same data and model.

    .venv/bin/python benchmarks/train_throughput.py --scale tiny --steps 40 --max-tokens 6000

Data: `--data SHARDS` (a prepare.py output), else the built-in espeak-ng corpus prepared with EnCodec
6 kbps at random init (8 levels) in a temporary folder. Tokens are positions of the concatenated
[text; prompt; response] sequences; a step trains one level per row (docs/design.md, "Training step").
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from valle.card import ModelCard
from valle.codecs import build_codec
from valle.corpus import build_corpus
from valle.data.datamodule import DataConfig, ValleDataModule
from valle.data.prepare import PrepareSettings, prepare
from valle.data.training_prompts import PromptConfig
from valle.models.config import ValleConfig
from valle.training.module import ValleModule


class Meter(L.Callback):
    """Wall time and tokens of the steps after `warmup`."""

    def __init__(self, warmup: int):
        self.warmup, self.tokens, self.padded, self.seconds, self._start = warmup, 0, 0, 0.0, 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step > self.warmup:
            self.seconds += time.perf_counter() - self._start
            self.tokens += batch.n_tokens
            self.padded += batch.n_padded_tokens


def default_shards(work: Path) -> Path:
    corpus = build_corpus(work / "corpus", n_sentences=8)
    codec = build_codec("encodec", bandwidth_kbps=6, weights="random").eval()
    settings = PrepareSettings(
        layout="folder", input=str(corpus), output=str(work / "shards"), num_workers=0, batch_seconds=0
    )
    prepare(settings, codec, codec.info)
    return work / "shards"


def measure(root: Path, scale: str, steps: int, max_tokens: int, n_buckets: int) -> Meter:
    dm = ValleDataModule(
        DataConfig(
            root=str(root),
            num_workers=0,
            max_tokens=max_tokens,
            n_buckets=n_buckets,
            val_speakers=0,
            val_utterances=0,
            batches_per_epoch=steps + 5,
            prompt=PromptConfig(min_seconds=1.0, max_seconds=2.0),
        )
    )
    dm.setup()
    config = getattr(ValleConfig, scale)().with_data(
        len(dm.symbols), dm.codec_info.n_levels, dm.codec_info.codebook_size
    )
    torch.manual_seed(0)
    module = ValleModule(ModelCard(config, dm.symbols, dm.codec_info))
    meter = Meter(warmup=3)
    L.Trainer(
        accelerator="auto",
        devices=1,
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[meter],
    ).fit(module, dm)
    return meter


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--scale", default="tiny", choices=["tiny", "small", "base"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=6000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    root = args.data or default_shards(Path(tempfile.mkdtemp(prefix="valle-bench-")))
    print(
        f"scale {args.scale}, {args.steps} steps (3 warm-up steps not timed), max_tokens {args.max_tokens}, "
        f"device {'cuda' if torch.cuda.is_available() else 'cpu'}, torch threads {torch.get_num_threads()}"
    )
    rows = {
        "no bucketing (1 bucket)": measure(root, args.scale, args.steps, args.max_tokens, 1),
        "8 length buckets": measure(root, args.scale, args.steps, args.max_tokens, 8),
    }
    print(f"{'setting':<26} {'real tokens/s':>13} {'padded tokens/s':>15} {'padding':>8}")
    for name, m in rows.items():
        print(
            f"{name:<26} {m.tokens / m.seconds:>13.0f} {m.padded / m.seconds:>15.0f} "
            f"{1 - m.tokens / m.padded:>8.3f}"
        )
    base, bucketed = rows.values()
    speedup = (bucketed.tokens / bucketed.seconds) / (base.tokens / base.seconds)
    print(f"real tokens/s, bucketed / unbucketed: {speedup:.2f}x")


if __name__ == "__main__":
    main()
