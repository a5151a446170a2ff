"""`make demo`: the main job on the built-in corpus, offline.

Stages, each reusing what a previous run finished (a rerun is quick):
  1. corpus   espeak-ng speakers read the built-in sentences (valle.corpus)
  2. shards   prepare.py's work: phonemes + codec codes → webdataset shards + index
  3. train    train.py experiment=tiny_cpu on those shards (resumes from its last checkpoint)
  4. export   the last checkpoint → one portable file
  5. speak    held-out voices' prompts → the held-out sentences, as wavs

No codec weights can be downloaded offline, so the demo encodes and decodes with EnCodec's real
architecture at random init: every stage runs for real, but the audio is noise until the offline
`mel` codec lands (issue: the offline main job).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from valle.codecs import build_codec
from valle.corpus import build_corpus, espeak_voices
from valle.data.prepare import PrepareSettings, prepare, summarize

ROOT = Path(__file__).resolve().parents[2]
TRAIN_VOICES = ["en-us+m3", "en-us+f2", "en-gb+m1", "en-gb+f4"]
HELD_OUT_VOICES = ["en-us+m7", "en-029+f3"]


def stage(n: int, name: str, detail: object) -> None:
    print(f"[{n}/5] {name}: {detail}", flush=True)


def train(shards: Path, run_dir: Path, steps: int) -> Path:
    """Compose train.py's config for the tiny_cpu experiment and run it (resuming if possible)."""
    from hydra import compose, initialize_config_dir

    from valle.cli.train import run

    os.environ.setdefault("VALLE_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=tiny_cpu", f"data.root={shards}", f"run_dir={run_dir}",
                                          f"trainer.max_steps={steps}", "+trainer.enable_progress_bar=false"])
    run(cfg)
    return run_dir / "checkpoints" / "last.ckpt"


def speak(model_path: Path, corpus: Path, out: Path) -> list[Path]:
    """Each held-out voice reads a sentence, prompted by another of its recordings."""
    import valle
    from valle.audio import write_wav

    model = valle.load(model_path)
    written = []
    for voice in espeak_voices(HELD_OUT_VOICES):
        recordings = sorted((corpus / "held_out" / voice.speaker).glob("*.wav"))
        text = recordings[1].with_suffix(".txt").read_text().strip()
        [speech] = valle.synthesize(model, [text], [recordings[0]], codec_weights="random", seed=0,
                                    ar_temperature=0.8, top_p=0.9, max_ar_steps=600)
        path = out / f"{voice.speaker}.wav"
        write_wav(path, speech.wav, speech.sample_rate)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("options", nargs="*", help="out=DIR (default outputs/demo), steps=N (default 200)")
    options = dict(o.split("=", 1) for o in parser.parse_args(argv).options)
    out, steps = Path(options.get("out", "outputs/demo")).resolve(), int(options.get("steps", 200))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    corpus = build_corpus(out / "corpus", espeak_voices(TRAIN_VOICES), n_sentences=10)
    build_corpus(out / "corpus", espeak_voices(HELD_OUT_VOICES), n_sentences=2, group="held_out", first_sentence=30)
    stage(1, "corpus", f"{corpus} ({sum(1 for _ in corpus.rglob('*.wav'))} wavs)")
    codec = build_codec("encodec", bandwidth_kbps=6, weights="random").eval()
    # On CPU one utterance per codec call, read in this process, is fastest (docs/benchmarks.md).
    settings = PrepareSettings(layout="folder", input=str(corpus / "builtin"), output=str(out / "shards"),
                               num_workers=0, batch_seconds=0)
    stage(2, "shards", "\n" + summarize(prepare(settings, codec, codec.info)))
    checkpoint = train(out / "shards", out / "run", steps)
    stage(3, "train", checkpoint)
    from valle.export import export_checkpoint

    model_path = export_checkpoint(checkpoint, out / "model.pt")
    stage(4, "export", model_path)
    stage(5, "speak", ", ".join(str(p) for p in speak(model_path, out / "corpus", out / "samples")))


if __name__ == "__main__":
    main()
