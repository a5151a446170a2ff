"""`python -m valle.evaluate` over folders: what it refuses, what it scores, where the report goes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from valle.audio import prepare_waveform
from valle.cli import evaluate as evaluate_cli
from valle.errors import ConfigError, MissingFileError
from valle.evaluate import asr, phones, sentence_id, sim
from valle.evaluate.folders import load_rows, read_output


@pytest.fixture
def folders(tmp_path):
    """hyp/{a,b}.wav (b empty: a model that said nothing), ref/{a,b}.wav + .txt, prompts/{a,b}.wav."""
    tone = (0.1 * np.sin(np.arange(16_000) / 5)).astype(np.float32)
    for name in ("hyp", "ref", "prompts"):
        (tmp_path / name).mkdir()
        for stem in ("a", "b"):
            empty = name == "hyp" and stem == "b"
            sf.write(str(tmp_path / name / f"{stem}.wav"), tone[:0] if empty else tone, 24_000)
    for stem in ("a", "b"):
        (tmp_path / "ref" / f"{stem}.txt").write_text("hello there")
    return tmp_path


@pytest.mark.parametrize(
    "prompt_dir, error, message",
    [
        ("promts", MissingFileError, "prompt_dir=.*promts: no such folder"),
        ("ref/..", ConfigError, "no prompt"),
    ],
)
def test_a_misspelt_prompt_dir_is_an_error_not_an_empty_sim_column(folders, prompt_dir, error, message):
    with pytest.raises(error, match=message):
        load_rows(folders / "hyp", folders / "ref", folders / prompt_dir, "model")


def test_an_empty_output_is_scored_as_an_empty_result_and_the_report_keeps_its_table(folders, monkeypatch):
    for module, name in ((asr, "PocketSphinxASR"), (sim, "SpeakerEncoder"), (phones, "PhoneRecognizer")):
        monkeypatch.setattr(module, name, lambda: None)  # durations only: the scorers have their own tests
    monkeypatch.setattr(sentence_id, "SentenceIdentifier", None)
    args = [f"hyp_dir={folders / 'hyp'}", f"ref_dir={folders / 'ref'}", f"prompt_dir={folders / 'prompts'}"]
    out = evaluate_cli.main([*args, f"out={folders / 'ev' / 'scores.json'}"])
    assert out == folders / "ev" / "scores.md" and out.read_text().startswith("|")
    items = json.loads((folders / "ev" / "scores.json").read_text())[1]["items"]
    assert [item["duration_ratio"] for item in items] == [1.0, 0.0]


def test_an_empty_output_keeps_its_own_rate_and_resamples_to_nothing(folders):
    wav, rate = read_output(folders / "hyp" / "b.wav")
    assert rate == 24_000 and wav.shape[-1] == 0
    assert prepare_waveform(wav, rate, 16_000).shape == (0,)  # what the recognisers do with it first
