from __future__ import annotations

import json

import pytest
import torch

from tests.evaluate.speech import espeak
from valle.evaluate import __main__ as cli
from valle.evaluate.report import EvalItem, evaluate_rows, format_markdown, to_json


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
    rows = {"ground truth": [EvalItem("u1", "A b c d.", truth, 100)],
            "model": [EvalItem("u1", "A b c d.", out_a, 100, reference_audio=truth),
                      EvalItem("u2", "a b", out_b, 100, prompt_audio=truth, reference_audio=truth)]}
    gt, model = evaluate_rows(rows, asr=asr, encoder=MeanEncoder())
    assert (gt.name, gt.n_items, gt.wer, gt.sim_prompt, gt.duration_ratio) == ("ground truth", 1, 0.0, None, None)
    assert model.wer == pytest.approx(1 / 6)  # one substitution over 4 + 2 words
    assert model.duration_ratio == pytest.approx((1.5 + 0.5) / 2)
    assert model.sim_prompt == pytest.approx(2 ** -0.5)  # [1, 1] against [0, 1]
    assert model.sim_reference == pytest.approx((1.0 + 2 ** -0.5) / 2)
    assert [i.hypothesis for i in model.items] == ["a b c d", "a x"]


def test_without_models_the_columns_stay_empty_and_the_table_says_so():
    rows = evaluate_rows({"gt": [EvalItem("u", "hi", torch.zeros(100), 100)]})
    assert rows[0].wer is None and rows[0].sim_prompt is None
    table = format_markdown(rows)
    assert table.splitlines()[2] == "| gt | 1 | – | – | – | – | – |"


def test_markdown_and_json_carry_every_row():
    item = EvalItem("u", "a b", torch.zeros(100), 100, reference_audio=torch.zeros(50))
    rows = evaluate_rows({"one": [item], "two": [item]}, asr=EchoASR({100: "a b"}))
    lines = format_markdown(rows).splitlines()
    assert lines[0].startswith("| row | n | WER % | CER % | SIM (prompt)")
    assert lines[2] == "| one | 1 | 0.0 | 0.0 | – | – | 2.000 |"
    data = json.loads(to_json(rows))
    assert [r["name"] for r in data] == ["one", "two"] and data[0]["items"][0]["key"] == "u"
    assert "items" not in json.loads(to_json(rows, details=False))[0]


def test_espeak_reads_worse_and_sounds_less_like_the_speaker(asr, encoder, fixtures, tmp_path):
    wav, rate, text = fixtures["LJ049-0124"]
    prompt, prompt_rate, _ = fixtures["LJ049-0185"]  # cross-utterance: another recording of the speaker
    fake, fake_rate = espeak(text, tmp_path / "espeak.wav")
    rows = {"ground truth": [EvalItem("LJ049-0124", text, wav, rate, prompt, None, prompt_rate)],
            "espeak-ng": [EvalItem("LJ049-0124", text, fake, fake_rate, prompt, wav, prompt_rate, rate)]}
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
    monkeypatch.setattr("valle.evaluate.asr.PocketSphinxASR", lambda: EchoASR({160: "hello there", 320: "general"}))
    monkeypatch.setattr("valle.evaluate.sim.SpeakerEncoder", MeanEncoder)
    out = tmp_path / "out" / "report.md"
    assert cli.main([f"hyp_dir={tmp_path / 'hyp'}", f"ref_dir={tmp_path / 'ref'}",
                     f"prompt_dir={tmp_path / 'prompt'}", f"out={out}", "name=mine"]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [r["name"] for r in rows] == ["ground truth", "mine"]
    assert rows[1]["wer"] == pytest.approx(1 / 4) and rows[1]["duration_ratio"] == 1.0
    assert "| mine | 2 |" in out.read_text() and str(out) in capsys.readouterr().out


def test_cli_names_a_missing_transcript(tmp_path):
    import soundfile as sf

    (tmp_path / "hyp").mkdir()
    (tmp_path / "ref").mkdir()
    sf.write(tmp_path / "hyp" / "a.wav", [0.1] * 160, 16_000)
    sf.write(tmp_path / "ref" / "a.wav", [0.1] * 160, 16_000)
    with pytest.raises(SystemExit, match="a.txt"):
        cli.main([f"hyp_dir={tmp_path / 'hyp'}", f"ref_dir={tmp_path / 'ref'}"])
    with pytest.raises(SystemExit, match="usage"):
        cli.main(["hyp_dir=x", "typo=y"])
