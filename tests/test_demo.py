from __future__ import annotations

import json
import math

import pytest

from valle.demo import ROWS, STAGES, main


@pytest.mark.parametrize("option, message", [("stage=bogus", "choose all or one of corpus"),
                                             ("size=huge", "choose one of full, ci"),
                                             ("steps_=3", "unknown option")])
def test_bad_options_name_the_choices(tmp_path, option, message):
    with pytest.raises(SystemExit, match=message):
        main([f"out={tmp_path}", option])


@pytest.mark.slow
def test_shortened_demo_runs_every_stage_writes_its_files_and_scores_every_row(tmp_path, capsys):
    main([f"out={tmp_path}", "size=ci"])
    output = capsys.readouterr().out
    assert all(f"[{n}/{len(STAGES)}] {name}" in output for n, name in enumerate(STAGES, start=1))

    # corpus: 12 training voices × 5 sentences, 3 held-out voices × 2 held-out sentences
    assert len(list((tmp_path / "corpus" / "builtin").rglob("*.wav"))) == 60
    assert len(list((tmp_path / "corpus" / "held_out").rglob("*.wav"))) == 6
    # shards: mel codes, with the codebooks they were encoded with
    index = json.loads((tmp_path / "shards" / "index.json").read_text())
    assert index["codec"]["name"] == "mel" and len(index["samples"]) == 60
    assert (tmp_path / "shards" / "codebooks.pt").is_file()
    # train + export
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file() and (tmp_path / "model.pt").is_file()
    # speak: every held-out recording in every generated row
    manifest = json.loads((tmp_path / "samples" / "manifest.json").read_text())
    assert len(manifest) == 6
    for item in manifest:
        assert set(item["outputs"]) == set(ROWS) - {"ground truth"}
        assert all((tmp_path / path).stat().st_size > 1000 for path in item["outputs"].values())
    # evaluate: every row scored, numbers in range, report and plots written
    rows = {row["name"]: row for row in json.loads((tmp_path / "report.json").read_text())}
    assert list(rows) == list(ROWS)
    for row in rows.values():
        assert row["n_items"] == 6 and 0.0 <= row["wer"] and 0.0 <= row["cer"]
        assert all(-1.0 <= row[k] <= 1.0 for k in ("sim_prompt", "sim_other"))
        assert row["duration_ratio"] is None or row["duration_ratio"] > 0
    truth = rows["ground truth"]
    assert truth["wer"] < 0.5  # pocketsphinx reads festival speech well: the scoring itself works
    assert truth["sim_prompt"] > truth["sim_other"]  # and the speaker encoder tells the voices apart
    assert math.isclose(rows["resynthesis"]["duration_ratio"], 1.0, abs_tol=0.05)
    report = (tmp_path / "report.md").read_text()
    assert all(f"| {row} |" in report for row in ROWS)
    for png in ("loss.png", "spectrograms.png"):
        assert (tmp_path / "plots" / png).stat().st_size > 5000 and f"plots/{png}" in report

    main([f"out={tmp_path}", "size=ci", "stage=export"])  # one stage alone: reuses the finished export
    assert capsys.readouterr().out.strip() == f"[4/6] export: {tmp_path / 'model.pt'}"
