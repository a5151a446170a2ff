from __future__ import annotations

import json
import math

import pytest
import torch

from valle.corpus.sentences import all_sentences
from valle.demo import N_SENTENCES, ROWS, STAGES, Item, continuation_split, eval_rows, main
from valle.evaluate.asr import WordTiming
from valle.evaluate.report import evaluate_rows
from valle.evaluate.text import normalize


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
        # continuation: the recording's first words as the prompt, cut at a word boundary; the rest to say
        assert 0 < item["continuation_seconds"] <= 3.0 and item["continuation_text"]
        assert item["text"].endswith(item["continuation_text"]) and item["text"] != item["continuation_text"]
    # evaluate: every row scored, numbers in range, report and plots written
    rows = {row["name"]: row for row in json.loads((tmp_path / "report.json").read_text())}
    assert list(rows) == list(ROWS)
    for row in rows.values():
        assert row["n_items"] == 6 and 0.0 <= row["wer"] and 0.0 <= row["cer"]
        assert all(-1.0 <= row[k] <= 1.0 for k in ("sim_prompt", "sim_other"))
        assert row["duration_ratio"] is None or row["duration_ratio"] > 0
    continued = {i["key"]: normalize(i["continuation_text"]) for i in manifest}
    assert all(s["reference"] == continued[s["key"]] for s in rows["continuation"]["items"])  # the generated part
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


def test_every_builtin_sentence_can_be_aligned_for_a_continuation_prompt():
    pytest.importorskip("pocketsphinx")
    from valle.evaluate.asr import PocketSphinxAligner

    words = {w for sentence in all_sentences(N_SENTENCES) for w in normalize(sentence).split()}
    lookup = PocketSphinxAligner().decoder.lookup_word
    assert sorted(w for w in words if lookup(w) is None) == []


def test_continuation_prompt_ends_at_the_last_word_boundary_within_the_limit():
    words = [("it", 0.0, 0.2), ("was", 0.25, 0.5), ("forty", 1.0, 1.4), ("two", 1.45, 1.7), ("days", 2.2, 2.9),
             ("ago", 3.3, 3.8)]
    timings = [WordTiming(*w) for w in words]
    text = "It was, 42 days ago."
    assert continuation_split(timings, text, 3.0) == (2.2, "It was, 42", "days ago.")  # "42" is two words
    assert continuation_split(timings, text, 3.5) == (3.3, "It was, 42 days", "ago.")
    assert continuation_split(timings, text, 0.1) == (0.25, "It", "was, 42 days ago.")  # none fits: the first


def test_each_row_is_scored_on_what_it_said_against_the_prompt_it_was_given():
    rate = 100
    truth = torch.arange(1000.0)[None]  # a 10 s recording whose samples say where a slice came from
    audio = {name: (torch.rand(1, n) - 0.5, rate) for name, n in
             [("prompt.wav", 300), ("resynthesis.wav", 1000), ("continuation.wav", 700), ("cross.wav", 900),
              ("other.wav", 800)]}
    audio["truth.wav"] = (truth, rate)
    outputs = {"resynthesis": "resynthesis.wav", "continuation": "continuation.wav", "cross-utterance": "cross.wav"}
    items = [Item("a", "s1", "It was 42 days ago.", "truth.wav", "prompt.wav", "b", 2.5, "days ago.", outputs),
             Item("b", "s2", "Other words.", "other.wav", "prompt.wav", "a", 1.0, "words.", outputs)]
    rows = eval_rows(items, audio.__getitem__)
    assert list(rows) == list(ROWS) and all(len(row) == 2 for row in rows.values())
    continuation, cross, truth_row = rows["continuation"][0], rows["cross-utterance"][0], rows["ground truth"][0]
    # continuation: the generated part alone, its words, the first 2.5 s it continued, the rest as reference
    assert continuation.text == "days ago." and continuation.audio is audio["continuation.wav"][0]
    assert torch.equal(continuation.prompt_audio, truth[:, :250])
    assert torch.equal(continuation.reference_audio, truth[:, 250:])
    # cross-utterance: the other recording's prompt, the whole text and recording
    assert cross.text == items[0].text and cross.prompt_audio is audio["prompt.wav"][0] and cross.reference_audio is truth
    assert truth_row.audio is truth and truth_row.reference_audio is None
    assert [len(i.others) for i in rows["continuation"]] == [1, 1]
    scores = {row.name: row for row in evaluate_rows(rows)}
    assert scores["continuation"].duration_ratio == pytest.approx((700 / 750 + 700 / 700) / 2)
