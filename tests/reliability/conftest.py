"""Reference runs the reliability trials compare against: one uninterrupted prepare, one uninterrupted
training."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.cli.test_prepare_cli import compose_prepare
from tests.cli.test_train_cli import compose_train, train_losses
from tests.reliability.children import kill_points, run_to_end, run_watching, timeline_from_mtimes, warm_up

TRIALS = 5  # kill -9 trials per command
CSV_LOG = "csv/version_0"  # the first launch's CSV log, inside the run directory
MAX_STEPS = 10
TRAIN_ARGS = (
    "experiment=tiny_cpu",
    f"trainer.max_steps={MAX_STEPS}",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
)


def prepare_cfg(corpus: Path, output: Path, *overrides: str):
    """The offline mel codec, its codebooks fitted on the corpus (part of the run); one utterance a shard."""
    return compose_prepare(
        f"input={corpus}",
        f"output={output}",
        "codec=mel",
        "codec.codebook_size=64",
        "num_workers=0",
        "max_shard_mb=0.01",
        *overrides,
    )


def train_cfg(shards: Path, run_dir: Path, *overrides: str):
    """tiny_cpu for MAX_STEPS steps with a checkpoint every 2 steps."""
    return compose_train(*TRAIN_ARGS, f"data.root={shards}", f"run_dir={run_dir}", *overrides)


def finished_files(folder: Path) -> dict[str, bytes]:
    """What a prepare run leaves for training to read: every file but temporaries and locks."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}


@pytest.fixture(scope="session")
def prepared_once(tiny_corpus, tmp_path_factory) -> tuple[dict[str, bytes], list]:
    """An uninterrupted prepare: its files, and TRIALS kill points drawn over its timeline (up to the
    index)."""
    output = tmp_path_factory.mktemp("prepared_once")
    warm_up()
    started = time.time()
    run_to_end("prepare", prepare_cfg(tiny_corpus, output))
    files = finished_files(output)
    assert "index.json" in files and len([n for n in files if n.endswith(".tar")]) > 5
    return files, kill_points(
        timeline_from_mtimes(output, started, last="index.json"), TRIALS, seed="prepare"
    )


def training_anchor(path: str) -> str | None:
    """The glob a trial waits for: the start of fitting, each checkpoint (its name without the loss)."""
    if path == f"{CSV_LOG}/hparams.yaml":
        return path
    if path.startswith("checkpoints/") and path.endswith(".ckpt"):
        return path.split("-loss")[0] + ("*" if "-loss" in path else "")
    return None


@pytest.fixture(scope="session")
def trained_once(tiny_shards, tmp_path_factory) -> tuple[dict[int, float], list]:
    """An uninterrupted training run: its losses by step, and TRIALS kill points drawn over its timeline
    (its start, the start of fitting, each checkpoint's appearance, its end)."""
    run_dir = tmp_path_factory.mktemp("trained_once") / "run"
    warm_up()
    timeline = run_watching("train", train_cfg(tiny_shards, run_dir), run_dir, training_anchor)
    losses = train_losses(run_dir)
    assert sorted(losses) == list(range(MAX_STEPS))
    return losses, kill_points(timeline, TRIALS, seed="train")
