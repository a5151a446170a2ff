"""kill -9 during training at 5 seeded random moments, then the same command again.

Each trial kills a fresh run at a moment drawn over the timeline of an uninterrupted run (its start,
the start of fitting, each checkpoint's appearance), then reruns it. The rerun must resume from the newest
complete checkpoint, never from one the kill cut short, continue the step count, and log the losses the
uninterrupted run logged.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.reliability.children import kill_9_at, run_to_end, start
from tests.reliability.conftest import MAX_STEPS, TRIALS, train_cfg
from valle.cli.train import bring_last_up_to_date, complete, resume_path
from valle.plot import metrics_files


def global_step(checkpoint: Path) -> int:
    return int(torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)["global_step"])


def losses_logged_by(files: list[Path]) -> dict[int, float]:
    """train/loss by step, as logged in these CSV files."""
    losses: dict[int, float] = {}
    for path in files:
        with open(path, newline="", encoding="utf-8") as handle:
            losses.update(
                (int(row["step"]), float(row["train/loss"]))
                for row in csv.DictReader(handle)
                if row.get("train/loss")
            )
    return losses


def newest_complete_step(folder: Path) -> int:
    """The largest step among the complete checkpoints in `folder` (0: none)."""
    return max((global_step(p) for p in folder.glob("*.ckpt") if complete(p)), default=0)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(TRIALS))
def test_kill_9_then_rerun_resumes_from_the_last_complete_checkpoint(
    trial, trained_once, tiny_shards, tmp_path
):
    losses, points = trained_once
    cfg = train_cfg(tiny_shards, tmp_path / "run")
    assert kill_9_at(start("train", cfg), tmp_path / "run", points[trial]), f"it ended before {points[trial]}"

    checkpoints = tmp_path / "run" / "checkpoints"
    resumed_from = resume_path(cfg, tmp_path / "run")  # what the rerun will load
    expected_step = newest_complete_step(checkpoints)
    if resumed_from is None:
        assert expected_step == 0
    else:
        assert complete(Path(resumed_from)) and global_step(Path(resumed_from)) == expected_step
    torn = [p for p in checkpoints.glob("*.ckpt") if not complete(p)]
    assert not torn, f"a kill left torn checkpoints: {torn}"
    print(f"trial {trial}: killed at {points[trial]}; resuming from step {expected_step}")

    earlier_launches = set(metrics_files(tmp_path / "run"))
    run_to_end("train", cfg)
    # Only the rerun's own log counts; a kill after the last step leaves it nothing to train (and a CSV
    # logger with nothing to log may write no file at all).
    resumed = losses_logged_by([p for p in metrics_files(tmp_path / "run") if p not in earlier_launches])
    assert sorted(resumed) == list(range(expected_step, MAX_STEPS)), "the step count does not continue"
    for step, loss in resumed.items():
        assert loss == pytest.approx(losses[step], abs=1e-4), f"step {step} after resuming at {expected_step}"
    assert global_step(checkpoints / "last.ckpt") == MAX_STEPS


def test_resume_takes_a_newer_step_checkpoint_over_a_last_ckpt_a_step_behind(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"global_step": 2}, folder / "last.ckpt")
    newer = folder / "step0000004-loss1.000.ckpt"
    torch.save({"global_step": 4}, newer)  # killed after this step's top-k file, before its last.ckpt
    os.utime(folder / "last.ckpt", ns=(1_000_000_000, 1_000_000_000))
    os.utime(newer, ns=(2_000_000_000, 2_000_000_000))
    assert resume_path(OmegaConf.create({"ckpt_path": None}), tmp_path) == str(newer)


def test_a_rerun_with_nothing_left_to_train_brings_last_ckpt_up_to_the_newest_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"global_step": 8}, folder / "last.ckpt")
    newest = folder / "step0000010-loss1.000.ckpt"
    torch.save({"global_step": 10}, newest)  # killed after the last step's top-k file, before its last.ckpt
    os.utime(folder / "last.ckpt", ns=(1_000_000_000, 1_000_000_000))
    os.utime(newest, ns=(2_000_000_000, 2_000_000_000))
    bring_last_up_to_date(folder)
    assert torch.load(folder / "last.ckpt")["global_step"] == 10 and newest.is_file()
    bring_last_up_to_date(folder)  # up to date: nothing changes
    assert torch.load(folder / "last.ckpt")["global_step"] == 10
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt", newest.name]  # no temporary left
