"""train.py through Hydra: composition of every preset, a real run, resume, sweeps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from valle.cli.train import complete, newest_checkpoint, resume_path, typed
from valle.data.datamodule import DataConfig
from valle.errors import user_message
from valle.models.config import ValleConfig
from valle.plot import plot_run, read_metrics

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
TRAINERS = sorted(p.stem for p in (ROOT / "configs" / "trainer").glob("*.yaml"))


def compose_train(*overrides: str):
    os.environ.setdefault("VALLE_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=["data.root=/data", "run_dir=/tmp/valle-compose", *overrides])


def train_py(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def train_losses(run_dir: Path) -> dict[int, float]:
    return dict(read_metrics(run_dir)["train/loss"])


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_into_valid_configs(experiment):
    cfg = compose_train(f"experiment={experiment}")
    assert "experiment" not in cfg, "an experiment file lacks `# @package _global_`"
    assert cfg.experiment_name == experiment
    model = typed(ValleConfig, cfg.model)
    assert model.scale.d_model % model.scale.n_heads == 0
    strategy = cfg.trainer.get("strategy")
    if isinstance(strategy, dict) or OmegaConf.is_dict(strategy):
        instantiate(strategy)


@pytest.mark.parametrize("trainer", TRAINERS)
def test_every_trainer_preset_instantiates_its_strategy(trainer):
    cfg = compose_train(f"trainer={trainer}")
    strategy = cfg.trainer.get("strategy")
    if OmegaConf.is_dict(strategy):
        name = type(instantiate(strategy)).__name__
        assert name == {"deepspeed_stage_2": "DeepSpeedStrategy", "fsdp": "FSDPStrategy"}[trainer]
    if cfg.trainer.accelerator in ("auto", "cpu"):
        instantiate(cfg.trainer, logger=False)


def test_experiments_live_only_in_conf_and_are_found_through_the_search_path():
    assert not (ROOT / "configs" / "experiment").exists()
    assert sorted(p.name for p in (ROOT / "conf").iterdir()) == ["experiment"]
    cfg = compose_train("experiment=retnet_dac")
    assert cfg.model.backbone.name == "retnet" and cfg.codec == "dac"


def test_typos_fail_at_start_up():
    with pytest.raises(ConfigKeyError):
        typed(ValleConfig, compose_train("+model.scale.d_modle=512").model)
    with pytest.raises(ValidationError) as wrong_type:  # one line for the user, naming the key as typed
        typed(DataConfig, compose_train("data.max_tokens=lots").data)
    assert user_message(wrong_type.value) == (
        "data.max_tokens: Value 'lots' of type 'str' could not be converted to Integer; "
        "give a value of that type on the command line"
    )


def tiny_run(shards: Path, *overrides: str) -> list[str]:
    """train.py overrides of the tiny CPU runs below: a validation and checkpoint every 3 steps."""
    return [
        "experiment=tiny_cpu",
        f"data.root={shards}",
        "trainer.val_check_interval=3",
        "trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1",
        *overrides,
    ]


@pytest.fixture(scope="module")
def uninterrupted(tiny_shards, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("straight")
    train_py(cwd, *tiny_run(tiny_shards, "trainer.max_steps=6"))
    return cwd / "runs" / "tiny_cpu"


@pytest.fixture(scope="module")
def uninterrupted_with_dropout(tiny_shards, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("straight-dropout")
    train_py(cwd, *tiny_run(tiny_shards, "trainer.max_steps=6", "model.backbone.dropout=0.1"))
    return cwd / "runs" / "tiny_cpu"


def test_train_py_writes_checkpoints_logs_and_plots(uninterrupted):
    checkpoints = sorted(p.name for p in (uninterrupted / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in checkpoints and len(checkpoints) == 3
    assert (uninterrupted / "tensorboard").is_dir() and len(train_losses(uninterrupted)) == 6
    assert {p.name for p in plot_run(uninterrupted)} == {"loss.png", "accuracy.png", "lr.png"}


def test_a_run_that_stops_between_checkpoints_keeps_its_last_step(tiny_shards, tmp_path):
    """max_steps (or max_time) between two checkpoint intervals: last.ckpt is the step it stopped at, which
    the demo exports, not the interval before it (Lightning's own ModelCheckpoint keeps that one)."""
    args = tiny_run(tiny_shards)
    train_py(tmp_path, *args, "trainer.max_steps=5")
    run_dir = tmp_path / "runs" / "tiny_cpu"
    checkpoints = run_dir / "checkpoints"
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 5 and newest_checkpoint(checkpoints) == checkpoints / "last.ckpt"
    assert {p.name[:11] for p in checkpoints.glob("step*.ckpt")} == {"step0000003"}  # top-k as before
    resumed = train_py(tmp_path, *args, "trainer.max_steps=6")  # and a longer budget goes on from there
    assert "resuming from" in resumed.stderr + resumed.stdout
    assert sorted(train_losses(run_dir)) == list(range(6))


def test_rerun_resumes_and_continues_exactly_like_an_uninterrupted_run(uninterrupted, tiny_shards, tmp_path):
    args = tiny_run(tiny_shards)
    train_py(tmp_path, *args, "trainer.max_steps=3")  # "killed" after its step-3 checkpoint
    resumed = train_py(tmp_path, *args, "trainer.max_steps=6")
    assert "resuming from" in resumed.stderr + resumed.stdout
    straight, interrupted = train_losses(uninterrupted), train_losses(tmp_path / "runs" / "tiny_cpu")
    assert sorted(interrupted) == list(range(6))
    for step in range(6):
        assert interrupted[step] == pytest.approx(straight[step], abs=1e-4), step


@pytest.mark.slow
def test_multirun_sweep_gives_each_job_its_own_run_dir(tiny_shards, tmp_path):
    train_py(
        tmp_path,
        "-m",
        "experiment=tiny_cpu",
        f"data.root={tiny_shards}",
        "debug=fdr",
        "model.scale.d_model=32,64",
    )
    for job in ("0", "1"):
        assert (tmp_path / "multirun" / "tiny_cpu" / job / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_kill_9_after_a_checkpoint_then_rerun_continues_the_run(dropout, request, tiny_shards, tmp_path):
    """With dropout the checkpoint's generator states make the resumed steps draw the same masks."""
    import signal
    import time

    straight_run = request.getfixturevalue("uninterrupted_with_dropout" if dropout else "uninterrupted")
    args = [
        sys.executable,
        str(ROOT / "train.py"),
        *tiny_run(tiny_shards, f"model.backbone.dropout={dropout}"),
    ]
    process = subprocess.Popen(
        [*args, "trainer.max_steps=200"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoints = tmp_path / "runs" / "tiny_cpu" / "checkpoints"
    deadline = time.time() + 300
    while not complete(checkpoints / "last.ckpt") and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # wherever it is: maybe in the middle of the next checkpoint
    process.wait()
    resumed = train_py(tmp_path, *args[2:], "trainer.max_steps=6")
    assert "resuming from" in resumed.stderr + resumed.stdout
    straight, killed = train_losses(straight_run), train_losses(tmp_path / "runs" / "tiny_cpu")
    for step in range(6):  # the same computation path: near-exact
        assert killed[step] == pytest.approx(straight[step], rel=1e-6), step


def test_resume_skips_a_checkpoint_cut_short_by_a_kill(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    good = folder / "step0000003-loss1.000.ckpt"
    torch.save({"x": torch.zeros(3)}, good)
    (folder / "last.ckpt").write_bytes(good.read_bytes()[:-200])  # killed mid-write
    cfg = OmegaConf.create({"ckpt_path": None})
    assert not complete(folder / "last.ckpt") and resume_path(cfg, tmp_path) == str(good)
    assert resume_path(cfg, tmp_path / "nothing") is None


def test_the_newest_checkpoint_wins_when_a_resumed_copy_wrote_last_v1(tmp_path):
    """A run resumed in a copied folder saves `last-v1.ckpt` (Lightning keeps the original folder's
    `last.ckpt` in its restored state); resuming and the demo's export take that newer file."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"global_step": 5850}, folder / "last.ckpt")
    torch.save({"global_step": 12750}, folder / "last-v1.ckpt")
    os.utime(folder / "last.ckpt", ns=(1_000_000_000, 1_000_000_000))
    os.utime(folder / "last-v1.ckpt", ns=(2_000_000_000, 2_000_000_000))
    assert newest_checkpoint(folder) == folder / "last-v1.ckpt"
    assert resume_path(OmegaConf.create({"ckpt_path": None}), tmp_path) == str(folder / "last-v1.ckpt")
    assert newest_checkpoint(tmp_path / "empty") is None
