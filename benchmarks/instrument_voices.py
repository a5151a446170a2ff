"""Which festival voice variants the demo's instrument reads: every variant says the 60 held-out
sentences, pocketsphinx transcribes them, and the WER per variant is the ground truth's floor for any
model prompted with that voice (docs/benchmarks.md, "Held-out voices the instrument can read").

    python benchmarks/instrument_voices.py --out /tmp/gtv60 \
        kal_diphone:0:1.07 ked_diphone:0:1.07 cmu_us_slt_arctic_hts:-250:1

A variant is NAME:CENTS:SPEED as in `valle.corpus.VARIANTS` (no variant given: all 15). The demo holds
out one variant of each voice (`valle.cli.demo.settings.HELD_OUT`) and each held-out voice reads 20 of
the 60 sentences, so the WER of its third of the sentences is printed too. The recordings stay in
OUT/voices/ (a rerun reuses them); the pocketsphinx options (`--asr lw=5`) are tried on the same audio.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import soundfile
import torch

from valle.cli.demo.settings import N_HELD_OUT_SENTENCES, N_SENTENCES
from valle.corpus import build_corpus, festival_voices
from valle.corpus.sentences import all_sentences
from valle.evaluate.asr import PocketSphinxASR
from valle.evaluate.edits import error_rate, word_edits
from valle.evaluate.text import normalize


def variant_key(spec: str) -> tuple[str, int, float]:
    """ "kal_diphone:250:1" → ("kal_diphone", 250, 1.0); argparse reports a malformed one."""
    name, cents, speed = spec.split(":")
    return name, int(cents), float(speed)


def asr_options(pairs: list[str]) -> dict[str, object]:
    """["lw=5", "bestpath=no"] → {"lw": 5.0, "bestpath": "no"}: numbers as numbers, the rest as given."""
    options: dict[str, object] = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        try:
            options[key] = float(value)
        except ValueError:
            options[key] = value
    return options


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/instrument_voices"))
    parser.add_argument("--asr", nargs="*", default=[], help="pocketsphinx options, e.g. lw=5")
    parser.add_argument(
        "variants", nargs="*", type=variant_key, help="NAME:CENTS:SPEED (default: every variant)"
    )
    args = parser.parse_args()
    every = {(v.name, v.pitch_cents, v.speed): v for v in festival_voices()}
    unknown = [":".join(map(str, key)) for key in args.variants if key not in every]
    if unknown:
        known = " ".join(f"{name}:{cents}:{speed:g}" for name, cents, speed in every)
        parser.error(f"no such variant: {' '.join(unknown)}; the variants are {known}")
    voices = [every[key] for key in args.variants] or list(every.values())
    sentences = all_sentences(N_SENTENCES)[N_SENTENCES - N_HELD_OUT_SENTENCES :]
    build_corpus(args.out, voices, len(sentences), group="voices", sentences=sentences, spread=0, jobs=2)
    asr = PocketSphinxASR(**asr_options(args.asr))
    third = len(sentences) // 3
    print(f"WER % per variant over {len(sentences)} held-out sentences (thirds 1 / 2 / 3), {args.asr}")
    for voice in voices:
        edits = []
        for wav in sorted((args.out / "voices" / voice.speaker).glob("*.wav")):
            audio, rate = soundfile.read(wav, dtype="float32")
            reference = normalize(wav.with_suffix(".txt").read_text())
            edits.append(word_edits(reference, normalize(asr.transcribe(torch.from_numpy(audio), rate))))
        thirds = [100 * error_rate(edits[i : i + third]) for i in range(0, len(edits), third)]
        parts = " / ".join(f"{wer:.1f}" for wer in thirds)
        print(f"{voice.speaker:32s} {100 * error_rate(edits):5.1f}   ({parts})", flush=True)


if __name__ == "__main__":
    main()
