"""`train.py`: a composed config → a fitted ValleModule in `runs/${experiment_name}` (resumable)."""

from __future__ import annotations

import logging
import math
import shutil
import zipfile
from dataclasses import asdict
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from valle.card import ModelCard
from valle.checkpoints import check_compatible, load_model_weights, read_card
from valle.cli.logs import log_through_root_only
from valle.cli.options import typed
from valle.codecs import carried_state
from valle.data.datamodule import DataConfig, ValleDataModule
from valle.errors import ConfigError
from valle.models.config import ValleConfig
from valle.models.lora import LoRAConfig
from valle.training.module import TrainingConfig, ValleModule
from valle.training.optim import OptimConfig
from valle.utils.io import atomic_output

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig) -> ValleDataModule:
    dm = ValleDataModule(typed(DataConfig, cfg.data))
    dm.setup()
    if cfg.get("codec") and cfg.codec != dm.codec_info.name:
        raise ConfigError(
            f"this experiment trains on {cfg.codec} codes but data.root={cfg.data.root} holds "
            f"{dm.codec_info.name} codes; prepare the data with codec={cfg.codec} or pick another "
            "experiment"
        )
    return dm


def check_alignments(model: ValleConfig, dm: ValleDataModule, root: str) -> None:
    """A model with monotonic alignment learns durations from the shards' alignments: refuse data with
    none, and say how much of it lacks them (those utterances train on an even spread, without the
    advance loss)."""
    if not model.monotonic_alignment:
        return
    assert dm.index is not None  # build_datamodule has set it up
    rows = dm.index.samples
    aligned = sum(row.aligned for row in rows)
    fix = (
        'put a `{stem}.TextGrid` with a "words" tier (e.g. from the Montreal Forced Aligner) beside '
        "each audio file and re-run prepare"
    )
    if not aligned:
        raise ConfigError(
            f"model.monotonic_alignment=true, but none of the {len(rows)} utterances in data.root={root} "
            f"has an alignment: {fix}, or set model.monotonic_alignment=false"
        )
    if aligned < len(rows):
        log.warning(
            "%d of %d utterances have no alignment: they train with an even spread of frames over their "
            "text and no advance loss; %s",
            len(rows) - aligned,
            len(rows),
            fix,
        )


def build_module(cfg: DictConfig, dm: ValleDataModule) -> ValleModule:
    model = typed(ValleConfig, cfg.model).with_data(
        len(dm.symbols), dm.codec_info.n_levels, dm.codec_info.codebook_size
    )
    check_alignments(model, dm, cfg.data.root)
    card = ModelCard(
        model, dm.symbols, dm.codec_info, codec_state=carried_state(dm.codec_info, cfg.data.root)
    )
    return ValleModule(
        card,
        optim=asdict(typed(OptimConfig, cfg.optim)),
        training={**asdict(typed(TrainingConfig, cfg.training)), "seed": cfg.seed},
        lora=asdict(typed(LoRAConfig, cfg.lora)) if cfg.get("lora") else None,
        init_from=str(cfg.init_from) if cfg.get("init_from") else None,
    )


def complete(path: Path) -> bool:
    """A checkpoint is a zip whose directory is written last: a file cut short by a kill has none."""
    try:
        with zipfile.ZipFile(path):
            return True
    except (zipfile.BadZipFile, OSError):
        return False


def resume_path(cfg: DictConfig, run_dir: Path) -> str | None:
    """`ckpt_path` when given, else the run directory's newest complete checkpoint (a rerun continues
    where it stopped, even when a kill cut the last write short; see `newest_checkpoint`)."""
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path)
    found = newest_checkpoint(run_dir / "checkpoints")
    return str(found) if found else None


def newest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint in `folder` (last.ckpt first on a tie), or None.

    Newest by time rather than by name: a kill between a step's top-k file and its last.ckpt leaves
    last.ckpt a step behind, and a run resumed in a copied folder writes `last-v1.ckpt` (Lightning keeps
    the `last.ckpt` its restored state names in the original folder).
    """
    candidates = sorted(
        folder.glob("*.ckpt"), key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"), reverse=True
    )
    for candidate in candidates:
        if candidate.is_file():
            if complete(candidate):
                return candidate
            log.warning("skipping %s: incomplete (the run was killed while writing it)", candidate)
    return None


def bring_last_up_to_date(folder: Path) -> None:
    """Make `last.ckpt` the newest complete checkpoint again (an atomic copy), where it fell behind: a kill
    between a step's top-k file and its last.ckpt, then a rerun that had nothing left to train (it resumed
    from that top-k file at the last step), would otherwise leave last.ckpt a step behind for good."""
    last, newest = folder / "last.ckpt", newest_checkpoint(folder)
    if newest is None or newest == last or not last.is_file():
        return
    with atomic_output(last) as tmp:
        shutil.copyfile(newest, tmp)


def run(cfg: DictConfig) -> float | None:
    """Train; returns the last `val/loss`, the total over every level that checkpoints monitor too
    (what a Hydra sweeper minimises)."""
    log_through_root_only()
    run_dir = Path(cfg.run_dir)
    L.seed_everything(cfg.seed, workers=True)
    dm = build_datamodule(cfg)
    module = build_module(cfg, dm)
    ckpt_path = resume_path(cfg, run_dir)
    if ckpt_path:
        check_compatible(read_card(ckpt_path), module.card, what=f"checkpoint {ckpt_path}")
        log.info("resuming from %s", ckpt_path)
    if cfg.get("init_from") and (not ckpt_path or module.hparams["lora"]):
        load_model_weights(module, cfg.init_from)  # a LoRA checkpoint holds only adapters: reload the base
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    trainer.fit(module, dm, ckpt_path=ckpt_path)
    if trainer.is_global_zero:
        bring_last_up_to_date(run_dir / "checkpoints")
        print(
            f"run directory: {run_dir}\ncheckpoints: {run_dir / 'checkpoints'}\n"
            f"metrics: {run_dir / 'csv'}  (plot: python -m valle.plot {run_dir})"
        )
    val_loss = trainer.callback_metrics.get("val/loss")
    return float(val_loss) if isinstance(val_loss, torch.Tensor) else math.nan
