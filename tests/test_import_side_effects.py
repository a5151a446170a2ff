"""Importing and using valle leaves the process's matplotlib backend, warning filters and log levels alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Dependencies are imported first (what they do at import is theirs); then valle's modules are imported
# and used, and the process-wide settings are compared.
SCRIPT = r"""
import json, logging, sys, tempfile, warnings
from pathlib import Path
import matplotlib, torch, lightning, phonemizer.backend

def state():
    loggers = sorted(logging.root.manager.loggerDict)
    return {"backend": matplotlib.get_backend(), "filters": [repr(f) for f in warnings.filters],
            "levels": {name: logging.getLogger(name).level for name in loggers}}

before = state()
import valle.sampling.synthesize, valle.training.callbacks
from valle.models.quantize import FBGEMM_CPUS, Int8Linear
from valle.plot import plot_run
from valle.text.phonemize import phonemize
phonemize("Hello there, 42 times.")
if torch.backends.cpu.get_cpu_capability() in FBGEMM_CPUS:
    Int8Linear(torch.randn(4, 8))(torch.randn(2, 8))
run = Path(tempfile.mkdtemp())
(run / "csv" / "version_0").mkdir(parents=True)
(run / "csv" / "version_0" / "metrics.csv").write_text("step,train/loss\n0,2.0\n1,1.5\n")
plot_run(run)
print(json.dumps({"before": before, "after": state()}))
"""


def test_importing_and_using_valle_changes_no_process_wide_setting():
    env = {**os.environ, "MPLBACKEND": "svg"}  # a user's choice, which valle must not override
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    states = json.loads(result.stdout.strip().splitlines()[-1])
    before, after = states["before"], states["after"]
    assert after["backend"] == before["backend"] == "svg"
    assert after["filters"] == before["filters"]
    changed = {
        name: level for name, level in after["levels"].items() if level != before["levels"].get(name, 0)
    }  # a new logger is fine at NOTSET (0)
    assert changed == {}
