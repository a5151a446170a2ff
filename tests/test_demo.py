from __future__ import annotations

import json
import math
import re

import pytest
import torch

from valle.cli.demo import main
from valle.cli.demo.scoring import AudioCache, eval_rows
from valle.cli.demo.settings import (
    N_SENTENCES,
    REMAINDERS,
    SIZES,
    STAGES,
    best_of_row,
    is_continuation,
    rows_for,
    spoken_rows,
)
from valle.cli.demo.speak import Item, continuation_split, read_manifest
from valle.cli.demo.stages import trained_width
from valle.corpus.sentences import all_sentences
from valle.errors import ConfigError
from valle.evaluate.asr import WordTiming
from valle.evaluate.report import evaluate_rows
from valle.evaluate.sentence_id import SentenceIdentifier
from valle.evaluate.text import normalize


@pytest.mark.parametrize(
    "option, message",
    [
        ("stage=bogus", "stage=bogus: choose one of all, corpus"),
        ("size=huge", "size=huge: choose one of full, quick, ci"),
        ("steps_=3", "unknown option steps_"),
        ("minutes=ten", "minutes: Value 'ten'"),
        ("best_of=1", "best_of=1: pass 0 \\(no best-of rows\\) or the number of draws"),
    ],
)
def test_bad_options_name_the_choices(tmp_path, option, message):
    with pytest.raises(ConfigError, match=message):
        main([f"out={tmp_path}", option])


@pytest.mark.slow
def test_shortened_demo_runs_every_stage_writes_its_files_and_scores_every_row(tmp_path, capsys):
    ROWS = rows_for(SIZES["ci"].best_of)  # size=ci speaks the best-of rows too, with their recognizer
    OUTPUTS = ("resynthesis", *spoken_rows(SIZES["ci"].best_of))  # the rows with wavs of their own
    assert len(ROWS) == 8 and len(OUTPUTS) == 5
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
    assert trained_width(tmp_path / "run") == 64  # size=ci's width: what a rerun resumes at
    # speak: every held-out recording in every generated row
    manifest = json.loads((tmp_path / "samples" / "manifest.json").read_text())
    assert len(manifest) == 6
    for item in manifest:
        assert list(item["outputs"]) == list(OUTPUTS)
        assert all((tmp_path / path).stat().st_size > 1000 for path in item["outputs"].values())
        # continuation: the recording's first words as the prompt, cut at a word boundary; the rest to say
        assert 0 < item["continuation_seconds"] <= 3.0 and item["continuation_text"]
        assert item["text"].endswith(item["continuation_text"]) and item["text"] != item["continuation_text"]
    # curve: snapshots kept during training (by steps in size=ci), each scored on the same held-out items
    snapshots = sorted(p.name for p in (tmp_path / "run" / "curve").glob("*.ckpt"))
    curve = json.loads((tmp_path / "curve.json").read_text())
    assert snapshots and [p["model"] for p in curve["points"]][: len(snapshots)] == snapshots
    assert (
        len(curve["items"]) == 6
    )  # size=ci: 2 held-out recordings per voice, fewer than CURVE_ITEMS_PER_VOICE
    for point in curve["points"]:
        assert point["step"] > 0 and point["minutes"] > 0 and point["n"]["per"] == 6
        assert 0.0 <= point["metrics"]["sentence_id"] <= 1.0 and point["metrics"]["per"] >= 0.0
        assert all(
            (tmp_path / "samples" / "curve" / point["model"].rsplit(".", 1)[0] / f"{key}.wav").is_file()
            for key in curve["items"]
        )
    # evaluate: every row scored, numbers in range, report and plots written
    rows = {row["name"]: row for row in json.loads((tmp_path / "report.json").read_text())}
    assert list(rows) == list(ROWS)
    value = lambda row, metric: rows[row][metric]["value"]  # noqa: E731
    for row in rows.values():
        assert row["n_items"] == 6 and 0.0 <= row["wer"]["value"] and 0.0 <= row["cer"]["value"]
        for sim in (row["sim_prompt"], row["sim_other"]):  # none where the toy model said nothing voiced
            assert sim["n"] == 0 if sim["value"] is None else -1.0 <= sim["value"] <= 1.0
        assert row["wer"]["low"] <= row["wer"]["value"] <= row["wer"]["high"]  # with its bootstrap interval
        assert row["duration_ratio"]["value"] is None or row["duration_ratio"]["value"] > 0
    continued = {i["key"]: normalize(i["continuation_text"]) for i in manifest}
    assert all(  # the continuation rows: scored on the generated part
        s["reference"] == continued[s["key"]]
        for row in filter(is_continuation, ROWS)
        for s in rows[row]["items"]
    )
    assert (
        value("ground truth", "wer") < 0.5
    )  # pocketsphinx reads festival speech well: the scoring itself works
    assert value("ground truth", "sentence_id") >= 0.8  # and tells the held-out sentences apart
    assert value("ground truth", "sim_prompt") > value("ground truth", "sim_other")  # and the voices too
    assert rows["ground truth"]["sim_prompt"]["n"] == rows["resynthesis"]["sim_prompt"]["n"] == 6
    assert math.isclose(value("resynthesis", "duration_ratio"), 1.0, abs_tol=0.05)
    report = (tmp_path / "report.md").read_text()
    assert all(f"| {row} |" in report for row in ROWS)
    for png in ("loss.png", "learning_curve.png"):
        assert (tmp_path / "plots" / png).stat().st_size > 5000 and f"plots/{png}" in report
    assert len(list((tmp_path / "plots" / "spectrograms").glob("*.png"))) == 3  # one listened item per voice
    assert all(f"| {point['model']} | {point['step']} |" in report for point in curve["points"])
    links = re.findall(r"\]\(([^)]+)\)", report)
    assert (
        all((tmp_path / link).is_file() for link in links)
        and sum(link.endswith(".wav") for link in links)
        == 3 * (2 + len(OUTPUTS))  # the prompt, the recording and every output, one item per voice
    )
    # report.html: every player and image loads in a browser (skips without chromium)
    from tests.helpers.browser import assert_page_loads

    media = assert_page_loads(tmp_path / "report.html")
    assert len(media["audio"]) == 3 * (2 + len(OUTPUTS)) + 3 * len(curve["points"])

    main([f"out={tmp_path}", "size=ci", "stage=export"])  # one stage alone: reuses the finished export
    assert capsys.readouterr().out.strip() == f"[4/{len(STAGES)}] export: {tmp_path / 'model.pt'}"
    main([f"out={tmp_path}", "size=ci", "stage=curve"])  # and the curve: every model already scored
    assert json.loads((tmp_path / "curve.json").read_text()) == curve


@pytest.mark.slow
def test_a_short_run_learns_to_say_held_out_sentences_in_held_out_voices(tmp_path):
    """Does training learn to talk? `size=quick` is the demo's corpus and recipe for 500 steps
    (~5 minutes on 2 cores); its cross-utterance outputs (held-out voices, held-out
    sentences, 3 s prompts from other recordings) and continuations are identified among the held-out
    sentences far above chance. A model that ignores the text, or babbles, scores near chance: the
    property is the gap, not a tuned number."""
    for name in ("corpus", "shards", "train", "export", "recognizer", "speak"):
        main([f"out={tmp_path}", "size=quick", f"stage={name}"])
    items = read_manifest(tmp_path)
    assert len(items) == 3 * SIZES["quick"].held_out_sentences
    # both modes, each identified among its row's 24 texts (continuation: the words after its prompt)
    rows = eval_rows(items, AudioCache(tmp_path), rows=("cross-utterance", "continuation"))
    scored = [item for row in evaluate_rows(rows, identifier=SentenceIdentifier) for item in row.items]
    chance = 1 / len(items)
    assert all(item.n_candidates == len(items) for item in scored)
    identified = sum(bool(item.sentence_correct) for item in scored) / len(scored)
    # a model that ignores the text scores about 1/24 (P(>= 4x) < 0.1 % over 48 items); on a 2-core
    # AMD EPYC 500 steps scored 52 % (cross-utterance 10 / 24, continuation 15 / 24), 700 steps 37.5 %
    assert identified >= 4 * chance, f"sentence ID {identified:.0%} against chance {chance:.0%}"


def test_every_builtin_sentence_can_be_aligned_for_a_continuation_prompt():
    pytest.importorskip("pocketsphinx")
    from valle.evaluate.asr import PocketSphinxAligner

    words = {w for sentence in all_sentences(N_SENTENCES) for w in normalize(sentence).split()}
    lookup = PocketSphinxAligner().decoder.lookup_word
    assert sorted(w for w in words if lookup(w) is None) == []


def test_continuation_prompt_ends_at_the_last_word_boundary_within_the_limit():
    words = [
        ("it", 0.0, 0.2),
        ("was", 0.25, 0.5),
        ("forty", 1.0, 1.4),
        ("two", 1.45, 1.7),
        ("days", 2.2, 2.9),
        ("ago", 3.3, 3.8),
    ]
    timings = [WordTiming(*w) for w in words]
    text = "It was, 42 days ago."
    assert continuation_split(timings, text, 3.0) == (2.2, "It was, 42", "days ago.")  # "42" is two words
    assert continuation_split(timings, text, 3.5) == (3.3, "It was, 42 days", "ago.")
    assert continuation_split(timings, text, 0.1) == (0.25, "It", "was, 42 days ago.")  # none fits: the first


def test_each_row_is_scored_on_what_it_said_against_the_prompt_it_was_given():
    rate = 100
    truth = torch.arange(1000.0)[None]  # a 10 s recording whose samples say where a slice came from
    audio = {
        name: (torch.rand(1, n) - 0.5, rate)
        for name, n in [
            ("prompt.wav", 300),
            ("resynthesis.wav", 1000),
            ("continuation.wav", 700),
            ("continuation-best.wav", 600),
            ("cross.wav", 900),
            ("other.wav", 800),
        ]
    }
    audio["truth.wav"] = (truth, rate)
    outputs = {
        "resynthesis": "resynthesis.wav",
        "continuation": "continuation.wav",
        best_of_row("continuation", 8): "continuation-best.wav",
        "cross-utterance": "cross.wav",
    }
    items = [
        Item("a", "s1", "It was 42 days ago.", "truth.wav", "prompt.wav", "b", 2.5, "days ago.", outputs),
        Item("b", "s2", "Other words.", "other.wav", "prompt.wav", "a", 1.0, "words.", outputs),
    ]
    rows = eval_rows(items, audio.__getitem__)
    assert list(rows) == ["ground truth", "resynthesis", *REMAINDERS, *list(outputs)[1:]]
    assert all(len(row) == 2 for row in rows.values())
    continuation, cross, truth_row = (
        rows["continuation"][0],
        rows["cross-utterance"][0],
        rows["ground truth"][0],
    )
    # continuation: the generated part alone, its words, the first 2.5 s it continued, the rest as reference
    assert continuation.text == "days ago." and continuation.audio is audio["continuation.wav"][0]
    assert torch.equal(continuation.prompt_audio, truth[:, :250])
    assert torch.equal(continuation.reference_audio, truth[:, 250:])
    best = rows[best_of_row("continuation", 8)][0]  # its best of N: the same, but for the audio
    assert best.text == "days ago." and best.audio is audio["continuation-best.wav"][0]
    assert torch.equal(best.reference_audio, truth[:, 250:])
    # cross-utterance: the other recording's prompt, the whole text and recording
    assert (
        cross.text == items[0].text
        and cross.prompt_audio is audio["prompt.wav"][0]
        and cross.reference_audio is truth
    )
    assert truth_row.audio is truth and truth_row.reference_audio is None
    # the remainders: the recording and its resynthesis from the cut on, scored as the continuation
    for row, source in REMAINDERS.items():
        remainder = rows[row][0]
        whole = truth if source == "ground truth" else audio["resynthesis.wav"][0]
        assert remainder.text == "days ago." and torch.equal(remainder.audio, whole[:, 250:])
        assert torch.equal(remainder.prompt_audio, truth[:, :250])
        assert torch.equal(remainder.reference_audio, truth[:, 250:])
    assert [len(i.others) for i in rows["continuation"]] == [1, 1]
    scores = {row.name: row for row in evaluate_rows(rows)}
    assert scores["continuation"].duration_ratio == pytest.approx((700 / 750 + 700 / 700) / 2)


def test_the_full_demo_trains_wider_from_a_30_minute_budget(tmp_path):
    from valle.cli.demo.settings import width_for_budget

    full, quick, ci = SIZES["full"], SIZES["quick"], SIZES["ci"]
    assert width_for_budget(full, 15) is None and width_for_budget(full, 29.9) is None
    assert width_for_budget(full, 30) == width_for_budget(full, 120) == 256
    # quick stops by steps (its 30 minutes are only a cap) and ci has its own tiny width
    assert width_for_budget(quick, quick.minutes) is None and width_for_budget(ci, 60) is None
    assert trained_width(tmp_path) is None  # nothing trained: the budget decides


def test_curve_overrides_keep_snapshots_by_time_or_for_ci_by_steps(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from valle.cli.demo.settings import ROOT, SIZES, curve_overrides

    ci_steps = max(1, SIZES["ci"].max_steps // 2)
    for size, interval, steps in ((SIZES["full"], 2.5 * 60, 0), (SIZES["ci"], None, ci_steps)):
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            cfg = compose(
                "train", overrides=["experiment=demo", f"run_dir={tmp_path}", *curve_overrides(size, 2.5)]
            )
        snapshots = instantiate(cfg.callbacks.curve)
        assert (
            snapshots.dirpath == str(tmp_path / "curve")
            and snapshots.save_top_k == -1
            and not snapshots.save_last
        )
        assert snapshots.save_weights_only  # weights, stats and codebooks: what valle.load reads
        assert (snapshots._train_time_interval.total_seconds() if interval else None) == interval
        assert snapshots._every_n_train_steps == steps
        assert "checkpoint" in cfg.callbacks  # the resumable checkpoints are kept as they were


def test_make_demo_speaks_the_best_of_rows_only_when_asked():
    """`make demo` spends the recognizer's minutes on training; `best_of=N` adds the rows back."""
    assert (
        spoken_rows(SIZES["full"].best_of)
        == spoken_rows(SIZES["quick"].best_of)
        == (
            "continuation",
            "cross-utterance",
        )
    )
    assert rows_for(8) == (
        "ground truth",
        "resynthesis",
        "ground truth, remainders",
        "resynthesis, remainders",
        "continuation",
        "continuation, best of 8",
        "cross-utterance",
        "cross-utterance, best of 8",
    )
    assert [is_continuation(row) for row in rows_for(8)] == [
        False,
        False,
        True,
        True,
        True,
        True,
        False,
        False,
    ]


def test_report_html_links_every_clip_and_figure_the_demo_writes(tmp_path):
    """The report pages over real recordings laid out as the demo lays them out, opened in headless
    Chromium."""
    OUTPUTS = ("resynthesis", *spoken_rows(8))
    import shutil

    from tests.conftest import real_speech_dir
    from tests.helpers.browser import assert_page_loads
    from valle.cli.demo.report import make_plots, render_report, write_report_html
    from valle.cli.demo.settings import CURVE_METRICS
    from valle.cli.demo.speak import first_per_voice
    from valle.evaluate.curve import CurvePoint

    wavs = sorted(real_speech_dir().glob("*.wav"))
    items = []
    for i, wav in enumerate(wavs):  # two "voices" of two recordings each
        speaker, key, text = f"voice{i // 2}", wav.stem, wav.with_suffix(".txt").read_text().strip()
        outputs = {row: f"samples/{row}/{key}.wav" for row in OUTPUTS}
        item = Item(
            key,
            speaker,
            text,
            f"corpus/held_out/{speaker}/{key}.wav",
            f"samples/prompts/{key}.wav",
            wavs[i ^ 1].stem,
            1.0,
            text.split(" ", 1)[1],
            outputs,
        )
        for path in [
            item.truth,
            item.prompt,
            *outputs.values(),
            f"samples/curve/step0000002/{key}.wav",
            f"samples/curve/model/{key}.wav",
        ]:
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(wav, tmp_path / path)
        items.append(item)
    log = tmp_path / "run" / "csv" / "version_0" / "metrics.csv"
    log.parent.mkdir(parents=True)
    log.write_text("step,train/loss\n1,5.0\n2,4.0\n")
    points = [
        CurvePoint("step0000002.ckpt", 2, 0.5, {"sentence_id": 0.25, "sim_prompt": 0.6}),
        CurvePoint("model.pt", 3, 0.7, {"sentence_id": 0.5, "sim_prompt": 0.7}),
    ]
    listened = first_per_voice(items, 1)
    plots = make_plots(tmp_path, listened, points, {"chance": {"sentence_id": 0.25}})
    assert {p.name for p in plots} >= {"loss.png", "learning_curve.png", *(f"{i.key}.png" for i in listened)}
    table = "| row | n | WER % |\n|---|---:|---:|\n| ground truth | 4 | 20.0 |\n"
    report = render_report(tmp_path, table, plots, items, listened, points, "3 steps")
    links = re.findall(r"\]\(([^)]+)\)", report)
    assert len(links) == (2 + len(OUTPUTS)) * len(listened) + len(plots) and all(
        (tmp_path / link).is_file() for link in links
    )
    assert "| step0000002.ckpt | 2 | 0.5 |" in report and "plots/learning_curve.png" in report

    write_report_html(tmp_path, table, plots, items, listened, points, "3 steps")
    media = assert_page_loads(tmp_path / "report.html")
    assert (
        len(media["audio"]) == (2 + len(OUTPUTS)) * len(listened) + len(points) * 2
    )  # the rows, then each model's voices
    assert len(media["images"]) == len(plots) and len(CURVE_METRICS) > 1
