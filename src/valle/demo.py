"""`make demo`: the main job on the built-in corpus, offline.

Stages so far: build the built-in corpus, prepare shards. Each stage reuses what a previous run
finished, so a rerun is quick. (Training, synthesis and evaluation join as they land.)
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from valle.codecs import build_codec
from valle.corpus import build_corpus
from valle.data.prepare import PrepareSettings, prepare, summarize


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", default="out=outputs/demo", help="out=DIR (default outputs/demo)")
    args = parser.parse_args(argv)
    out = Path(args.out.removeprefix("out="))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    corpus = build_corpus(out / "corpus", n_sentences=8)
    print(f"[1/2] corpus: {corpus} ({sum(1 for _ in corpus.rglob('*.wav'))} wavs)")
    # No codec weights can be downloaded offline: the demo encodes with EnCodec at random init
    # until the offline `mel` codec lands; the codes are real codes of a real (untrained) codec.
    codec = build_codec("encodec", bandwidth_kbps=6, weights="random").eval()
    # On CPU one utterance per codec call, read in this process, is fastest (docs/benchmarks.md).
    settings = PrepareSettings(layout="folder", input=str(corpus), output=str(out / "shards"), num_workers=0,
                               batch_seconds=0)
    print("[2/2] shards:\n" + summarize(prepare(settings, codec, codec.info)))


if __name__ == "__main__":
    main()
