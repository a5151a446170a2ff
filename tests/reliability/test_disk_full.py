"""A full disk while prepare writes shards and while training writes a checkpoint: a one-line error,
what was written before stays intact, and the same command completes once there is space.

The disk is a small tmpfs mounted for the test (root, or password-less sudo); where mounting is not
permitted the tests skip and say so.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import prepare_settings
from tests.reliability.children import run_to_end, start
from tests.reliability.conftest import MAX_STEPS, finished_files, train_cfg
from tests.reliability.test_kill_prepare import assert_only_complete_shards_are_listed
from tests.reliability.test_kill_train import global_step, losses_logged_by
from valle.cli.train import complete
from valle.codecs import build_codec
from valle.data.prepare import prepare
from valle.plot import metrics_files
from valle.utils.io import DiskFullError

SUDO = [] if os.geteuid() == 0 else ["sudo", "-n"]


def _mount(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([*SUDO, "mount", *args], capture_output=True, text=True)
    except FileNotFoundError as error:  # no sudo (or no mount) on this machine
        return subprocess.CompletedProcess(args, 1, "", str(error))


@pytest.fixture
def small_disk(tmp_path):
    """`small_disk(kib)` → a folder on a fresh tmpfs of that size; `small_disk.grow(folder, kib)` frees
    space."""
    mounted: list[Path] = []

    def mount(kib: int) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        result = _mount("-t", "tmpfs", "-o", f"size={kib}k,mode=1777", "tmpfs", str(folder))
        if result.returncode:
            pytest.skip(
                f"a small tmpfs cannot be mounted here ({result.stderr.strip() or 'mount failed'}); "
                "run as root or with password-less sudo to test a full disk"
            )
        mounted.append(folder)
        return folder

    def grow(folder: Path, kib: int) -> None:
        assert _mount("-o", f"remount,size={kib}k", str(folder)).returncode == 0

    mount.grow = grow
    yield mount
    for folder in mounted:
        subprocess.run([*SUDO, "umount", "-l", str(folder)], capture_output=True)


@pytest.fixture(scope="module")
def mel_codec():
    return build_codec("mel", weights="random", codebook_size=64)


def test_prepare_on_a_full_disk_stops_keeps_its_shards_and_completes_later(
    small_disk, mel_codec, tiny_corpus, tmp_path
):
    reference = prepare(
        prepare_settings(tiny_corpus, tmp_path / "reference", max_shard_mb=0.01), mel_codec, mel_codec.info
    )
    assert len(reference.index.shards) == 15
    disk = small_disk(96)  # room for a few of the 15 shards (and their manifests) only
    settings = prepare_settings(tiny_corpus, disk, max_shard_mb=0.01)
    with pytest.raises(
        DiskFullError, match=f"no space left on the device of {disk}/.* free some space"
    ) as error:
        prepare(settings, mel_codec, mel_codec.info)
    assert "\n" not in str(error.value)
    done = list(disk.glob("shard-*.json"))
    assert 0 < len(done) < 15 and not (disk / "index.json").exists()
    assert_only_complete_shards_are_listed(disk)
    assert not list(disk.glob(".*.tmp")), "a failed write left its temporary file"

    small_disk.grow(disk, 4096)
    again = prepare(settings, mel_codec, mel_codec.info)
    assert again.shards_written == 15 - len(done)
    assert finished_files(disk) == finished_files(tmp_path / "reference")


@pytest.mark.slow
def test_training_on_a_full_disk_stops_keeps_its_checkpoints_and_resumes_later(
    small_disk, trained_once, tiny_shards, tmp_path
):
    losses, _ = trained_once
    checkpoint_mib = 6  # the tiny model with its optimizer state: about 5.8 MiB
    disk = small_disk(int(3.5 * checkpoint_mib * 1024))  # step 2's two files fit, step 4's do not all fit
    cfg = train_cfg(tiny_shards, disk / "run")
    error_file = tmp_path / "error.txt"
    process = start("train", cfg, error_file)
    process.join(300)
    assert process.exitcode != 0
    error = error_file.read_text(encoding="utf-8")
    assert error.startswith("DiskFullError: no space left on the device of ") and "free some space" in error
    checkpoints = sorted((disk / "run" / "checkpoints").glob("*.ckpt"))
    assert checkpoints and all(complete(p) for p in checkpoints), "a checkpoint was torn"
    assert not list((disk / "run" / "checkpoints").glob(".*.tmp")), "a failed write left its temporary file"
    assert global_step(disk / "run" / "checkpoints" / "last.ckpt") >= 2

    small_disk.grow(disk, 200 * 1024)
    run_to_end("train", cfg)
    assert global_step(disk / "run" / "checkpoints" / "last.ckpt") == MAX_STEPS
    for step, loss in losses_logged_by(metrics_files(disk / "run")[-1:]).items():
        assert loss == pytest.approx(losses[step], abs=1e-4), step
