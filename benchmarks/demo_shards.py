"""The demo's corpus encoded with other mel codec settings, for recipe-search rows that change the codes
(docs/benchmarks.md, "Input dropout, 25 frames/s, a prefix-LM text"; "fewer, larger codebooks"). A model
takes its codebook size from the codes.

    python benchmarks/demo_shards.py --out /tmp/d25 --hop-length 960 --n-fft 2048    # 25 frames/s
    python benchmarks/demo_recipe.py --out /tmp/d25 --name fps25 --minutes 8 model.segment_positions=2.2
    python benchmarks/demo_shards.py --out /tmp/k1024 --codebook-size 1024    # fewer, larger codebooks
    python benchmarks/demo_recipe.py --out /tmp/k1024 --name k1024 --minutes 15

Builds OUT/corpus (the festival wavs; reused where they exist) and OUT/shards with codebooks fit on it,
as `python -m valle.demo out=OUT stage=corpus` and `stage=shards` do with the demo's settings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from valle.cli.demo.settings import MEL, SIZES
from valle.cli.demo.stages import make_corpus, make_shards


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hop-length", type=int, default=MEL["hop_length"], help="24 kHz samples per frame")
    parser.add_argument("--n-fft", type=int, default=MEL["n_fft"])
    parser.add_argument("--levels", type=int, default=MEL["n_levels"], help="residual levels")
    parser.add_argument("--codebook-size", type=int, default=SIZES["full"].codebook_size)
    args = parser.parse_args()
    out, size = args.out.resolve(), SIZES["full"]
    make_corpus(out, size)
    mel = {
        "hop_length": args.hop_length,
        "n_fft": args.n_fft,
        "n_levels": args.levels,
        "codebook_size": args.codebook_size,
    }
    print(make_shards(out, size, mel=mel))


if __name__ == "__main__":
    main()
