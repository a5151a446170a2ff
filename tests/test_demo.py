from __future__ import annotations

import json

import pytest

from valle.demo import main


@pytest.mark.slow
def test_demo_runs_every_stage_and_a_rerun_reuses_them(tmp_path, capsys):
    main([f"out={tmp_path}", "steps=6"])
    index = json.loads((tmp_path / "shards" / "index.json").read_text())
    assert len(index["samples"]) == len(list((tmp_path / "corpus" / "builtin").rglob("*.wav"))) == 40
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file() and (tmp_path / "model.pt").is_file()
    samples = sorted((tmp_path / "samples").glob("*.wav"))
    assert len(samples) == 2 and all(p.stat().st_size > 1000 for p in samples)
    output = capsys.readouterr().out
    assert "speakers: 4" in output and "[5/5] speak" in output
    main([f"out={tmp_path}", "steps=6"])  # a rerun reuses the corpus, the shards and the finished run
    assert "0 written, " in capsys.readouterr().out
