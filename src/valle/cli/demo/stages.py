"""The demo's building stages: the corpus, its shards, the training run, the exported model, the
recognizer."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from valle.cli.demo.settings import (
    MEL,
    N_HELD_OUT_SENTENCES,
    N_SENTENCES,
    ROOT,
    DemoSize,
    log,
    voices,
    width_for_budget,
)
from valle.corpus import build_corpus
from valle.corpus.sentences import all_sentences
from valle.errors import ConfigError


# ------------------------------------------------------------------------------------------- stages
def make_corpus(out: Path, size: DemoSize) -> Path:
    train, held = voices()
    sentences = all_sentences(N_SENTENCES)
    n_train = N_SENTENCES - N_HELD_OUT_SENTENCES
    corpus = out / "corpus"
    build_corpus(
        corpus,
        train,
        size.train_sentences,
        sentences=sentences[:n_train],
        spread=n_train // len(train),
        jobs=os.cpu_count() or 1,
        progress=True,
    )
    build_corpus(
        corpus,
        held,
        size.held_out_sentences,
        group="held_out",
        sentences=sentences[n_train:],
        spread=size.held_out_sentences,
        jobs=os.cpu_count() or 1,
        progress=True,
    )
    return corpus


def make_shards(out: Path, size: DemoSize, mel: dict[str, int] | None = None) -> str:
    """prepare.py layout=folder codec=mel codec.weights=fit on the training voices.

    `mel` overrides the codec settings of `MEL` and the size's codebook size (recipe searches: e.g.
    25 frames/s is `hop_length=960, n_fft=2048`; `benchmarks/demo_shards.py`)."""
    from valle.codecs import build_codec
    from valle.data.prepare import PrepareSettings, fit_mel_codebooks_for, prepare, summarize

    settings = PrepareSettings(
        layout="folder",
        input=str(out / "corpus" / "builtin"),
        output=str(out / "shards"),
        num_workers=0,
        batch_seconds=0,
    )
    codec_kwargs = {**MEL, "codebook_size": size.codebook_size, **(mel or {})}
    codebooks = fit_mel_codebooks_for(settings, codec_kwargs)
    codec = build_codec("mel", **codec_kwargs, weights=str(codebooks)).eval()
    return summarize(prepare(settings, codec, codec.info))


def train(
    out: Path,
    size: DemoSize,
    minutes: float,
    steps: int,
    run_dir: Path | None = None,
    overrides: Sequence[str] = (),
) -> Path:
    """Compose train.py's config for the demo experiment and run it (resuming if possible).

    The full demo's width follows the budget (`width_for_budget`); a run that already trained keeps its
    own. `run_dir` (default `out/run`) and extra Hydra `overrides` (over all of that) are for recipe
    searches (`benchmarks/demo_recipe.py`), which train variants on the same shards.
    """
    from hydra import compose, initialize_config_dir

    from valle.cli.train import run

    os.environ.setdefault("VALLE_ROOT", str(ROOT))
    seconds = int(minutes * 60)
    budget = f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    run_dir = run_dir or out / "run"
    width, trained = width_for_budget(size, minutes), trained_width(run_dir)
    if trained is not None and width is not None and trained != width:
        log.warning(
            "%s trained d_model %d, and resumes at that width; a %g-minute budget trains d_model %d from "
            "the start: give it a new out= (or remove %s)",
            run_dir,
            trained,
            minutes,
            width,
            run_dir,
        )
    width = trained or width
    overrides = [
        "experiment=demo",
        f"data.root={out / 'shards'}",
        f"run_dir={run_dir}",
        f"trainer.max_steps={steps}",
        f"trainer.max_time={budget}",
        *size.train_overrides,
        *([f"model.scale.d_model={width}"] if width else []),
        *overrides,
    ]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    run(cfg)
    return run_dir / "checkpoints" / "last.ckpt"


def trained_width(run_dir: Path) -> int | None:
    """The d_model of the newest checkpoint in `run_dir` (None: nothing trained there yet)."""
    from valle.checkpoints import read_card
    from valle.cli.train import newest_checkpoint

    checkpoint = newest_checkpoint(run_dir / "checkpoints")
    return None if checkpoint is None else read_card(checkpoint).config.scale.d_model


def export(out: Path) -> Path:
    """The newest complete checkpoint of out/run → out/model.pt (skipped when that is newer already).

    Raises:
        ConfigError: no checkpoint yet (run the train stage first).
    """
    from valle.cli.train import newest_checkpoint
    from valle.export import export_checkpoint

    checkpoint, model = newest_checkpoint(out / "run" / "checkpoints"), out / "model.pt"
    if checkpoint is None:
        raise ConfigError(f"{out / 'run' / 'checkpoints'}: no checkpoint to export; run stage=train first")
    if model.is_file() and model.stat().st_mtime >= checkpoint.stat().st_mtime:
        return model  # already exported from this checkpoint
    return export_checkpoint(checkpoint, model)


RECOGNIZER_FILE = "recognizer.pt"


def recognizer(out: Path, size: DemoSize) -> str:
    """out/recognizer.pt: the level-0 recognizer that picks the best-of rows' draws, trained on the demo's
    training shards only (skipped when it is newer than the shards' index). Returns a line about it.

    Raises:
        ConfigError: no shards yet (run stage=shards first).
    """
    from valle.data.index import INDEX_NAME
    from valle.training.recognizer import train_recognizer

    index, path = out / "shards" / INDEX_NAME, out / RECOGNIZER_FILE
    if not index.is_file():
        raise ConfigError(f"{index}: no shards to train the recognizer on; run stage=shards first")
    if path.is_file() and path.stat().st_mtime >= index.stat().st_mtime:
        return f"{path} (trained before)"
    run = train_recognizer(
        out / "shards", path, minutes=size.recognizer_minutes, max_steps=size.recognizer_steps
    )
    return run.summary()
