"""Each log line of a run prints once: Lightning's console handlers give way to Hydra's root handlers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cli.conftest import run_entry_point

LIGHTNING_LINE = "Seed set to 1234"  # logged by lightning.fabric at the start of every training run

ROOT_CONFIGURED = """
import logging, sys
logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="[%(name)s] %(message)s")  # as Hydra does
import lightning
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from valle.cli.logs import log_through_root_only
log_through_root_only()
rank_zero_info("once, please")
logging.getLogger("valle.x").info("mine too")
"""


def test_lightning_lines_print_once_through_the_root_handlers():
    result = subprocess.run(
        [sys.executable, "-c", ROOT_CONFIGURED], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    everything = result.stdout + result.stderr
    assert (
        everything.count("once, please") == 1
        and "[lightning.pytorch.utilities.rank_zero] once, please" in result.stdout
    )
    assert everything.count("mine too") == 1


@pytest.mark.slow
def test_train_py_prints_each_line_once_and_keeps_it_in_the_log_file(tiny_shards, tmp_path):
    result = run_entry_point(
        "train.py", "experiment=tiny_cpu", f"data.root={tiny_shards}", "debug=fdr", cwd=tmp_path, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (result.stdout + result.stderr).count(LIGHTNING_LINE) == 1
    assert LIGHTNING_LINE in (tmp_path / "runs" / "tiny_cpu" / "train.log").read_text()
