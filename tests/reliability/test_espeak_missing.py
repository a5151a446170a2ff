"""espeak-ng missing: prepare.py stops with one line that gives the install command (no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.cli.test_train_cli import ROOT

HINT = "apt-get install espeak-ng"


def prepare_py(env: dict[str, str], corpus, output) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "prepare.py"),
            f"input={corpus}",
            f"output={output}",
            "codec=mel",
            "codec.weights=random",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=output.parent,
    )


@pytest.mark.parametrize("how", ["no espeak-ng on PATH", "library variable pointing nowhere"])
def test_missing_espeak_is_one_line_with_the_install_command(how, tiny_corpus, tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # an empty folder: no espeak-ng, no espeak
    if how == "library variable pointing nowhere":
        env = {**os.environ, "PHONEMIZER_ESPEAK_LIBRARY": str(tmp_path / "libespeak-ng.so.1")}
    result = prepare_py(env, tiny_corpus, tmp_path / "out")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr[-2000:]
    assert lines[-1].startswith("error: espeak-ng") and HINT in lines[-1], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "out").glob("shard-*"))
