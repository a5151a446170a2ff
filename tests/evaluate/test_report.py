from __future__ import annotations

import json

import pytest
import torch

from tests.evaluate.speech import espeak
from valle.cli import evaluate as cli
from valle.errors import ConfigError
from valle.evaluate.report import EvalItem, evaluate_rows, format_markdown, metrics_of, to_json


class EchoASR:
    """Reads the text back from a lookup: the test decides what was 'heard'."""

    def __init__(self, heard: dict[int, str]) -> None:
        self.heard = heard

    def transcribe(self, wav, sample_rate):
        return self.heard[wav.shape[-1]]


class MeanEncoder:
    """A 2-d 'speaker embedding' from the signal's mean and a constant, so similarity is predictable."""

    def embed(self, wav, sample_rate):
        return torch.tensor([float(wav.mean()), 1.0])

    def similarity(self, a, b):
        return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def test_rows_average_wer_sim_and_duration_by_hand():
    truth = torch.zeros(1, 200)
    out_a, out_b = torch.zeros(1, 300), torch.ones(1, 100)  # 1.5× and 0.5× the reference length
    asr = EchoASR({200: "a b c d", 300: "a b c d", 100: "a x"})
    rows = {
        "ground truth": [EvalItem("u1", "A b c d.", truth, 100)],
        "model": [
            EvalItem("u1", "A b c d.", out_a, 100, reference_audio=truth),
            EvalItem("u2", "a b", out_b, 100, prompt_audio=truth, reference_audio=truth),
        ],
    }
    gt, model = evaluate_rows(rows, asr=asr, encoder=MeanEncoder())
    assert (gt.name, gt.n_items, gt.wer, gt.sim_prompt, gt.duration_ratio) == (
        "ground truth",
        1,
        0.0,
        None,
        None,
    )
    assert model.wer == pytest.approx(1 / 6)  # one substitution over 4 + 2 words
    assert model.duration_ratio == pytest.approx((1.5 + 0.5) / 2)
    assert model.sim_prompt == pytest.approx(2**-0.5)  # [1, 1] against [0, 1]
    assert model.sim_reference == pytest.approx((1.0 + 2**-0.5) / 2)
    assert [i.hypothesis for i in model.items] == ["a b c d", "a x"]


def test_without_models_the_columns_stay_empty_and_the_table_says_so():
    rows = evaluate_rows({"gt": [EvalItem("u", "hi", torch.zeros(100), 100)]})
    assert rows[0].wer is None and rows[0].sim_prompt is None
    assert all(v is None for v in metrics_of(rows[0]).values())
    table = format_markdown(rows)
    assert table.splitlines()[2] == "| gt | 1 |" + " – |" * 9
    assert "chance" not in table  # no sentence identification, no chance level to state


def test_markdown_and_json_carry_every_row():
    item = EvalItem("u", "a b", torch.zeros(100), 100, reference_audio=torch.zeros(50))
    rows = evaluate_rows({"one": [item], "two": [item]}, asr=EchoASR({100: "a b"}))
    lines = format_markdown(rows).splitlines()
    assert lines[0] == (
        "| row | n | sentence-ID % | PER % | WER % | CER % | SIM (prompt) | SIM (ground truth) | "
        "SIM (other voices) | duration ratio | in 0.8–1.25 % |"
    )
    assert lines[2] == (
        "| one | 1 | – | – | 0.0 [0.0–0.0] | 0.0 [0.0–0.0] | – | – | – | 2.000 [2.000–2.000] | "
        "0.0 [0.0–0.0] |"
    )
    data = json.loads(to_json(rows))
    assert [r["name"] for r in data] == ["one", "two"] and data[0]["items"][0]["key"] == "u"
    assert data[0]["wer"] == {"value": 0.0, "low": 0.0, "high": 0.0, "n": 1}
    assert data[0]["per"] == {"value": None, "low": None, "high": None, "n": 0}
    assert "items" not in json.loads(to_json(rows, details=False))[0]


def test_espeak_reads_worse_and_sounds_less_like_the_speaker(asr, encoder, fixtures, tmp_path):
    wav, rate, text = fixtures["LJ049-0124"]
    prompt, prompt_rate, _ = fixtures["LJ049-0185"]  # cross-utterance: another recording of the speaker
    fake, fake_rate = espeak(text, tmp_path / "espeak.wav")
    rows = {
        "ground truth": [EvalItem("LJ049-0124", text, wav, rate, prompt, None, prompt_rate)],
        "espeak-ng": [EvalItem("LJ049-0124", text, fake, fake_rate, prompt, wav, prompt_rate, rate)],
    }
    gt, esp = evaluate_rows(rows, asr=asr, encoder=encoder)
    assert esp.sim_prompt < gt.sim_prompt - 0.2
    assert esp.sim_reference < 0.8 and esp.duration_ratio > 0
    assert esp.wer > gt.wer + 0.2  # measured: 0.857 against 0.286
    table = format_markdown([gt, esp])
    assert "| ground truth | 1 |" in table and "| espeak-ng | 1 |" in table


def test_cli_scores_a_folder_by_stem(tmp_path, monkeypatch, capsys):
    import soundfile as sf

    for folder in ("hyp", "ref", "prompt"):
        (tmp_path / folder).mkdir()
        for stem, n in (("a", 160), ("b", 320)):
            sf.write(tmp_path / folder / f"{stem}.wav", [0.1] * n, 16_000)
    (tmp_path / "ref" / "a.txt").write_text("Hello there.\n")
    (tmp_path / "ref" / "b.txt").write_text("General Kenobi!\n")
    monkeypatch.setattr(
        "valle.evaluate.asr.PocketSphinxASR", lambda: EchoASR({160: "hello there", 320: "general"})
    )
    monkeypatch.setattr("valle.evaluate.sim.SpeakerEncoder", MeanEncoder)
    out = tmp_path / "out" / "report.md"
    assert (
        cli.main(
            [
                f"hyp_dir={tmp_path / 'hyp'}",
                f"ref_dir={tmp_path / 'ref'}",
                f"prompt_dir={tmp_path / 'prompt'}",
                f"out={out}",
                "name=mine",
            ]
        )
        == out
    )
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [r["name"] for r in rows] == ["ground truth", "mine"]
    assert rows[1]["wer"]["value"] == pytest.approx(1 / 4) and rows[1]["duration_ratio"]["value"] == 1.0
    # the real identifier and phone recogniser: flat 0.1 s tones say neither sentence, nor their phones
    assert rows[1]["sentence_id"]["value"] == 0.0 and rows[1]["sentence_id_chance"] == 0.5
    assert rows[1]["per"]["n"] == 2 and rows[1]["per"]["value"] > 0.8
    assert "| mine | 2 |" in out.read_text() and str(out) in capsys.readouterr().out


def test_cli_names_a_missing_transcript(tmp_path):
    import soundfile as sf

    (tmp_path / "hyp").mkdir()
    (tmp_path / "ref").mkdir()
    sf.write(tmp_path / "hyp" / "a.wav", [0.1] * 160, 16_000)
    sf.write(tmp_path / "ref" / "a.wav", [0.1] * 160, 16_000)
    with pytest.raises(ConfigError, match="a.txt"):
        cli.main([f"hyp_dir={tmp_path / 'hyp'}", f"ref_dir={tmp_path / 'ref'}"])
    with pytest.raises(ConfigError, match="unknown option typo; usage"):
        cli.main(["hyp_dir=x", "typo=y"])


class LengthIdentifier:
    """A sentence identifier that 'hears' by length; `built` lists each candidate set it was built for."""

    built: list[list[str]] = []

    def __init__(self, sentences, heard: dict[int, str]) -> None:
        self.sentences, self.heard = list(sentences), heard
        LengthIdentifier.built.append(self.sentences)

    def identify(self, wav, sample_rate):
        said = self.heard.get(wav.shape[-1])
        return self.sentences.index(said) if said in self.sentences else None


class LengthPhones:
    def __init__(self, heard: dict[int, list[str]]) -> None:
        self.heard = heard

    def recognize(self, wav, sample_rate):
        return self.heard[wav.shape[-1]]


def test_sentence_id_picks_among_the_rows_texts_or_the_items_own_candidates():
    heard = {100: "the cat sat", 200: "the cat sat", 300: "dog ran", 400: "the cat sat"}
    LengthIdentifier.built = []
    four = ["The cat sat.", "A dog ran.", "Four hours of steady work faced us.", "Kick the ball."]
    rows = {
        "full": [
            EvalItem("u1", "The cat sat.", torch.zeros(100), 100),
            EvalItem("u2", "A dog ran.", torch.zeros(200), 100),
        ],  # heard as the other sentence
        "again": [
            EvalItem("u1", "The cat sat!", torch.zeros(100), 100),
            EvalItem("u2", "a dog ran", torch.zeros(200), 100),
        ],  # the same set: no second decoder
        "suffix": [
            EvalItem("u1", "cat sat", torch.zeros(100), 100),  # hears "the cat sat": not a candidate
            EvalItem("u2", "dog ran", torch.zeros(300), 100),
        ],
        "closed set of four": [EvalItem("u1", "The cat sat.", torch.zeros(400), 100, candidates=four)],
    }
    full, again, suffix, four_row = evaluate_rows(rows, identifier=lambda s: LengthIdentifier(s, heard))
    assert LengthIdentifier.built == [
        ["the cat sat", "a dog ran"],
        ["cat sat", "dog ran"],
        ["the cat sat", "a dog ran", "four hours of steady work faced us", "kick the ball"],
    ]
    assert (full.sentence_id, full.sentence_id_chance, again.sentence_id) == (0.5, 0.5, 0.5)
    assert [i.identified for i in full.items] == ["the cat sat", "the cat sat"]
    assert [i.sentence_correct for i in suffix.items] == [False, True] and suffix.items[0].identified == ""
    assert (four_row.sentence_id, four_row.sentence_id_chance, four_row.items[0].n_candidates) == (
        1.0,
        0.25,
        4,
    )
    assert "Sentence-ID chance (1 / number of candidate sentences): full 50.0 %" in format_markdown([full])
    with pytest.raises(ConfigError, match="'u9'.*not among its candidate sentences"):
        evaluate_rows(
            {"r": [EvalItem("u9", "Hello.", torch.zeros(100), 100, candidates=["Goodbye."])]},
            identifier=lambda s: LengthIdentifier(s, heard),
        )


def test_per_duration_band_and_words_outside_the_dictionary():
    truth = torch.zeros(100)
    phones = LengthPhones({100: ["K", "AE", "T"], 120: ["K", "AE"], 300: ["S", "IH", "T"]})
    rows = {
        "model": [
            EvalItem("a", "cat", torch.zeros(100), 100, reference_audio=truth),  # ratio 1.0
            EvalItem("b", "cat", torch.zeros(120), 100, reference_audio=truth),  # 1.2: in the band
            EvalItem("c", "sit", torch.zeros(300), 100, reference_audio=truth),  # 3.0: out
            EvalItem("d", "zzxqv", torch.zeros(100), 100),
        ]
    }  # no pronunciation: no PER
    (row,) = evaluate_rows(rows, identifier=lambda s: LengthIdentifier(s, {}), phones=phones)
    assert row.per == pytest.approx(1 / 9)  # one deletion over 3 + 3 + 3 reference phones
    assert row.estimates["per"].n == 3 and row.items[3].reference_phones is None
    assert row.items[2].reference_phones == "S IH T" and row.items[1].hypothesis_phones == "K AE"
    assert row.duration_in_band == pytest.approx(2 / 3) and row.estimates["duration_in_band"].n == 3
    assert row.estimates["sentence_id"].n == 3  # "zzxqv" cannot be in a grammar either
    assert metrics_of(row)["per"] == row.per and set(metrics_of(row)) >= {"sentence_id", "duration_in_band"}
    cells = format_markdown([row]).splitlines()[2].split(" | ")
    assert cells[3] == "11.1 [0.0–33.3] (n=3)"  # PER %: fewer items than the row, said in the cell


def test_real_instrument_tells_the_right_text_from_the_wrong_one(fixtures):
    """Ground truth against the same recordings labelled with another recording's transcript."""
    pytest.importorskip("pocketsphinx")
    from valle.evaluate.phones import PhoneRecognizer
    from valle.evaluate.sentence_id import SentenceIdentifier

    clips = list(fixtures.values())
    texts = [text for _, _, text in clips]
    right = [EvalItem(f"u{i}", text, wav, rate) for i, (wav, rate, text) in enumerate(clips)]
    wrong = [
        EvalItem(f"u{i}", texts[(i + 1) % len(texts)], wav, rate) for i, (wav, rate, _) in enumerate(clips)
    ]
    truth, mislabelled = evaluate_rows(
        {"right text": right, "wrong text": wrong}, identifier=SentenceIdentifier, phones=PhoneRecognizer()
    )
    assert (truth.sentence_id, mislabelled.sentence_id, truth.sentence_id_chance) == (1.0, 0.0, 0.25)
    assert truth.per < 0.65 and mislabelled.per > truth.per + 0.2  # measured: 0.505 against 1.02
    per = truth.estimates["per"]
    assert per.n == 4 and per.low <= per.value <= per.high
