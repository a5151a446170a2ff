from __future__ import annotations

import json

import pytest

from valle.demo import main


@pytest.mark.slow
def test_demo_builds_the_corpus_and_prepares_shards(tmp_path, capsys):
    main([f"out={tmp_path}"])
    index = json.loads((tmp_path / "shards" / "index.json").read_text())
    assert len(index["samples"]) == len(list((tmp_path / "corpus").rglob("*.wav"))) == 48
    assert "speakers: 6" in capsys.readouterr().out
    main([f"out={tmp_path}"])  # a rerun reuses both stages
    assert "0 written, " in capsys.readouterr().out
