"""What the demo's codec alone leaves of the words: the held-out recordings through the mel codec, no
model, scored with the demo's instrument (docs/benchmarks.md, "Where the codec's ceiling is").

    python benchmarks/codec_ceiling.py --out /tmp/d15 --codebooks /tmp/d15/shards/codebooks.pt \
        /tmp/k1024/shards/codebooks.pt --griffin-lim 32 128

For the first `--items` recordings of `--voices` held-out voices (`--voices 3 --items 20`: the report's
60 cross-utterance items), the rows are:

- the log-mel of the recording, not quantized, inverted by Griffin-Lim with each `--griffin-lim` count
  of iterations: what the vocoder alone costs;
- for each `--codebooks` file (`benchmarks/demo_shards.py` fits them at other sizes): its level 0
  alone, levels 0-1, and every level, decoded as the codec decodes them.

Each row is scored as the report's cross-utterance row with the recording as its prompt (so SIM is to
the recording): sentence ID among `--candidates` held-out texts, PER, WER, SIM, duration ratio. The audio
goes to OUT/samples/ceiling/<row>/.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import replace
from pathlib import Path

import torch
from demo_diagnosis import candidate_texts, recordings

from valle.audio import load_for_codec, write_wav
from valle.cli.demo.scoring import AudioCache, eval_rows, one_thread, scorers
from valle.cli.demo.settings import MEL
from valle.codecs import build_codec
from valle.codecs.mel import load_codebooks
from valle.codecs.mel.codec import LogMel
from valle.evaluate.report import evaluate_rows, format_markdown

ROW = "cross-utterance"
FOLDER = "samples/ceiling"


def row_file(row: str, key: str) -> str:
    return f"{FOLDER}/{re.sub(r'[^a-z0-9]+', '_', row.lower()).strip('_')}/{key}.wav"


@torch.inference_mode()
def codec_rows(out: Path, items: list, codebooks: list[Path], griffin_lim: list[int]) -> dict[str, dict]:
    """{row name: {item key: (waveform, sample rate)}} for every row this benchmark scores."""
    rows: dict[str, dict] = {}
    for path in codebooks:
        books = load_codebooks(path)
        settings = dict(
            sample_rate=books.sample_rate,
            hop_length=books.hop_length,
            n_mels=books.n_mels,
            n_fft=books.n_fft,
        )
        codec = build_codec(
            "mel", **settings, n_levels=books.n_levels, codebook_size=books.codebook_size, weights=str(path)
        ).eval()
        name = f"{books.n_levels} levels of {books.codebook_size}"
        for levels in sorted({1, 2, books.n_levels}):
            row = f"{name}, level 0 alone" if levels == 1 else f"{name}, levels 0-{levels - 1}"
            rows[row] = {}
            for item in items:
                codes = codec.encode(load_for_codec(out / item.truth, codec.sample_rate), codec.sample_rate)
                rows[row][item.key] = (codec.decode_levels(codes[:levels]), codec.sample_rate)
    rate = MEL["sample_rate"]
    log_mel = LogMel(rate, MEL["hop_length"], MEL["n_mels"], MEL["n_fft"])  # the demo's codec settings
    for iterations in griffin_lim:
        row = f"log-mel, not quantized, Griffin-Lim {iterations}"
        rows[row] = {}
        for item in items:
            wav = load_for_codec(out / item.truth, rate)
            rows[row][item.key] = (log_mel.invert(log_mel(wav.reshape(1, -1)), iterations)[0], rate)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--codebooks", type=Path, nargs="*", default=[], help="mel codebooks files")
    parser.add_argument("--griffin-lim", type=int, nargs="*", default=[], help="iterations, one row each")
    parser.add_argument("--voices", type=int, default=3)
    parser.add_argument("--items", type=int, default=20, help="recordings per voice")
    parser.add_argument("--candidates", type=int, default=60, help="sentence ID among this many texts")
    parser.add_argument("--jobs", type=int, default=2, help="scoring processes")
    args = parser.parse_args()
    if not args.codebooks and not args.griffin_lim:
        parser.error("pass --codebooks FILE... and/or --griffin-lim N...: there is nothing to score")
    chosen = recordings(args.out, "held_out", args.voices, args.items, FOLDER)
    read, scored = AudioCache(args.out), {}
    for row, audio in codec_rows(args.out, chosen, args.codebooks, args.griffin_lim).items():
        spoken = []
        for item in chosen:
            wav, rate = audio[item.key]
            write_wav(args.out / row_file(row, item.key), wav, rate)
            spoken.append(replace(item, prompt=item.truth, outputs={ROW: row_file(row, item.key)}))
        scored[row] = eval_rows(spoken, read, rows=(ROW,))[ROW]
    candidates = candidate_texts(args.out, "held_out", [item.text for item in chosen], args.candidates)
    for items in scored.values():
        for item in items:
            item.candidates = candidates
    with one_thread():  # scoring spawns worker processes: keep the `__main__` guard below
        print(format_markdown(evaluate_rows(scored, scorers=scorers, jobs=args.jobs)))
    print(f"audio in {args.out / FOLDER}")


if __name__ == "__main__":
    main()
