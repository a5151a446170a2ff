"""Two prepare processes on the same output folder at once: never an interleaved result."""

from __future__ import annotations

import pytest

from tests.reliability.children import start
from tests.reliability.conftest import finished_files, prepare_cfg


@pytest.mark.slow
def test_a_second_prepare_on_the_same_folder_refuses_or_changes_nothing(prepared_once, tiny_corpus, tmp_path):
    files, _ = prepared_once
    cfg = prepare_cfg(tiny_corpus, tmp_path / "out")
    errors = [tmp_path / "first.err", tmp_path / "second.err"]
    processes = [start("prepare", cfg, error) for error in errors]
    for process in processes:
        process.join(300)
    outcomes = sorted(process.exitcode for process in processes)
    refusals = [e.read_text() for e in errors if e.is_file()]
    print(f"exit codes {outcomes}; refusals: {refusals}")
    assert outcomes in ([0, 0], [0, 1])
    if outcomes == [0, 1]:
        [refusal] = refusals
        assert refusal.startswith("InUseError") and str(tmp_path / "out") in refusal
    again = finished_files(tmp_path / "out")
    assert sorted(again) == sorted(files)
    assert [name for name in files if again[name] != files[name]] == []
