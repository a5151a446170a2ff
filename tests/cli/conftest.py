"""Fixtures for running the entry points as a user does: in a subprocess, with a model file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from valle.checkpoints import EXPORT_FORMAT
from valle.export import EXPORT_VERSION
from valle.models.config import ValleConfig
from valle.models.valle import Valle
from valle.text import SymbolMap, phonemize

ROOT = Path(__file__).resolve().parents[2]


def run_entry_point(
    *command: str, cwd: Path, full_error: bool = False, timeout: int = 300
) -> subprocess.CompletedProcess:
    """`python infer.py ...` (a root shim, by file name) or `python -m valle.x ...`, as a user runs it."""
    program = [str(ROOT / command[0])] if command[0].endswith(".py") else ["-m", command[0]]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    if full_error:
        env["HYDRA_FULL_ERROR"] = "1"
    return subprocess.run(
        [sys.executable, *program, *command[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def random_export(tiny_codec, tmp_path_factory) -> Path:
    """A tiny random-weight model as an export file: for runs that need a model, not a good one."""
    symbols = SymbolMap.build([phonemize("The quick brown fox jumps over the lazy dog, twice!")], ["en-us"])
    torch.manual_seed(0)
    config = ValleConfig.tiny().with_data(len(symbols), tiny_codec.n_levels, tiny_codec.codebook_size)
    path = tmp_path_factory.mktemp("export") / "model.pt"
    torch.save(
        {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "model": Valle(config).state_dict(),
            "config": config.to_dict(),
            "codec": tiny_codec.info.to_dict(),
            "symbols": symbols.to_dict(),
            "stats": {},
            "dtype": "fp32",
            "codec_state": None,
        },
        path,
    )
    return path
