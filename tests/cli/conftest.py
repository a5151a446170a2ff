"""Running the entry points as a user does: in a subprocess (the model file is `random_export`, in
tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
