"""`python -m valle.recognizer data.root=SHARDS out=recognizer.pt [minutes=4]`: train the level-0 recognizer
that picks the clearest of N candidates (`sampler.best_of`, docs/inference.md "Best of N").

Train it on the shards the model was trained on (the same codec and symbol map; it refuses another
model's rows). It holds out `val_share` of the sentences and keeps its best validation weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from valle.cli.options import REQUIRED, check_device, choice, parse_options
from valle.models.recognizer import RecognizerConfig


@dataclass
class RecognizerOptions:
    # the shards' folder (prepare's output), the model's data.root
    data_root: str = dataclasses.field(default=REQUIRED, metadata={"key": "data.root"})
    out: str = REQUIRED  # the recognizer file to write (atomically)
    minutes: float = 4.0  # the training budget
    max_steps: int = 3000
    d_model: int = 192
    n_layers: int = 5
    lr: float = 2e-3
    noise: float = 0.1  # share of training frames replaced by random codes
    val_share: float = 0.05  # share of the sentences held out to choose the weights
    keep: str = choice("best", "last")  # the weights of the lowest validation loss, or the final ones
    seed: int = 0
    accelerator: str = "auto"


def main(argv: list[str]) -> Path:
    from valle.training.recognizer import train_recognizer  # Lightning: only when training

    options = parse_options("valle.recognizer", RecognizerOptions, argv, doc=__doc__ or "")
    if options.accelerator in ("cuda", "gpu", "mps"):  # Lightning's names; it refuses a missing one late
        check_device(options.accelerator, key="accelerator")
    run = train_recognizer(
        options.data_root,
        options.out,
        minutes=options.minutes,
        max_steps=options.max_steps,
        config=RecognizerConfig(d_model=options.d_model, n_layers=options.n_layers),
        lr=options.lr,
        noise=options.noise,
        val_share=options.val_share,
        seed=options.seed,
        keep=options.keep,
        accelerator=options.accelerator,
    )
    print(run.summary())
    return run.path
