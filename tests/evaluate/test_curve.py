"""The learning curve's bookkeeping: which snapshots to score, resuming, the table and the figure."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import real_speech_dir
from valle.audio import read_audio
from valle.evaluate.curve import (
    CurvePoint,
    format_curve_markdown,
    read_curve,
    snapshot_files,
    training_position,
    update_curve,
)
from valle.evaluate.report import EvalItem, evaluate_rows
from valle.plot import plot_learning_curve


def snapshot(path, steps: int, seconds: float):
    """A checkpoint as `callbacks=curve` leaves it, as far as the curve reads it: hparams and stats."""
    torch.save(
        {
            "hyper_parameters": {"model": {}, "symbols": {}, "codec": {}},
            "state_dict": {},
            "valle_stats": {"steps": steps, "train_seconds": seconds},
        },
        path,
    )
    return path


def export(path, steps: int, seconds: float):
    torch.save(
        {
            "format": "valle",
            "version": 1,
            "model": {},
            "config": {},
            "symbols": {},
            "codec": {},
            "stats": {"steps": steps, "train_seconds": seconds},
        },
        path,
    )
    return path


class Scorer:
    """Scores a 'model' by its step: the real recording cut to step/10 of its length, against the whole of it,
    so each point's duration ratio says which model made it. Counts its calls."""

    def __init__(self) -> None:
        self.wav, self.rate = read_audio(real_speech_dir() / "LJ049-0124.wav")
        self.calls: list[str] = []

    def __call__(self, model):
        self.calls.append(model.name)
        step = training_position(model)[0]
        cut = self.wav[..., : self.wav.shape[-1] * step // 10]
        items = [EvalItem(f"u{i}", "text", cut, self.rate, reference_audio=self.wav) for i in range(3)]
        return evaluate_rows({"cross-utterance": items})[0]


@pytest.fixture
def run(tmp_path):
    folder = tmp_path / "run" / "curve"
    folder.mkdir(parents=True)
    snapshot(folder / "step0000008.ckpt", 8, 240.0)
    snapshot(folder / "step0000004.ckpt", 4, 120.0)
    (folder / "step0000010.ckpt").write_bytes(
        (folder / "step0000004.ckpt").read_bytes()[:300]
    )  # killed mid-write
    return tmp_path


def test_snapshots_are_listed_by_step_and_an_incomplete_one_is_left_out(run):
    assert [p.name for p in snapshot_files(run / "run" / "curve")] == ["step0000004.ckpt", "step0000008.ckpt"]
    assert training_position(run / "run" / "curve" / "step0000008.ckpt") == (8, 4.0)


def test_each_model_is_scored_once_and_a_rerun_resumes(run):
    score, curve = Scorer(), run / "curve.json"
    models = [*snapshot_files(run / "run" / "curve"), export(run / "model.pt", 8, 250.0)]
    points = update_curve(curve, models, ["u0", "u1", "u2"], {"seed": 0}, score)
    # the export holds the last snapshot's weights (same step): not scored twice
    assert score.calls == ["step0000004.ckpt", "step0000008.ckpt"]
    assert [(p.model, p.step, p.minutes) for p in points] == [
        ("step0000004.ckpt", 4, 2.0),
        ("step0000008.ckpt", 8, 4.0),
    ]
    assert [p.metrics["duration_ratio"] for p in points] == pytest.approx([0.4, 0.8], abs=0.01)
    assert points[0].n["duration_ratio"] == 3 and points[0].intervals["wer"] is None  # no ASR: not measured
    assert json.loads(curve.read_text())["points"][1]["model"] == "step0000008.ckpt"

    # more training: a new snapshot and a new export; only they are scored
    snapshot(run / "run" / "curve" / "step0000009.ckpt", 9, 270.0)
    models = [*snapshot_files(run / "run" / "curve"), export(run / "model.pt", 10, 300.0)]
    points = update_curve(curve, models, ["u0", "u1", "u2"], {"seed": 0}, score)
    assert score.calls[2:] == ["step0000009.ckpt", "model.pt"]
    assert [p.step for p in points] == [4, 8, 9, 10] and points[-1].metrics[
        "duration_ratio"
    ] == pytest.approx(1.0)
    update_curve(curve, models, ["u0", "u1", "u2"], {"seed": 0}, score)
    assert len(score.calls) == 4  # nothing new

    # other items or settings: the old points are not comparable, the curve starts over
    update_curve(curve, models, ["u0", "u1", "u2"], {"seed": 1}, score)
    assert len(score.calls) == 8 and read_curve(curve)["settings"] == {"seed": 1}


def test_table_shows_each_figure_with_its_interval_and_leaves_out_unmeasured_columns():
    points = [
        CurvePoint(
            "step0000004.ckpt",
            4,
            2.0,
            {"sentence_id": 1 / 3, "sim_prompt": 0.61, "wer": None},
            {"sentence_id": [0.0, 2 / 3], "sim_prompt": [0.55, 0.66]},
            {"sentence_id": 3, "sim_prompt": 3},
        ),
        CurvePoint(
            "model.pt",
            10,
            5.0,
            {"sentence_id": 1.0, "sim_prompt": 0.7, "wer": None},
            {"sentence_id": [1.0, 1.0], "sim_prompt": [0.65, 0.75]},
            {"sentence_id": 2, "sim_prompt": 3},
        ),
    ]
    lines = format_curve_markdown(points, n_items=3).splitlines()
    assert lines[0] == "| model | step | minutes | sentence ID % | SIM (prompt) |"
    assert lines[2] == "| step0000004.ckpt | 4 | 2.0 | 33.3 [0.0–66.7] | 0.610 [0.550–0.660] |"
    assert lines[3] == "| model.pt | 10 | 5.0 | 100.0 [100.0–100.0] (n=2) | 0.700 [0.650–0.750] |"


def test_learning_curve_figure_has_a_panel_per_measured_metric(tmp_path):
    points = [
        CurvePoint(
            f"s{i}",
            i,
            i / 2,
            {"sentence_id": i / 10, "sim_prompt": 0.5 + i / 50, "sim_other": 0.5},
            {"sentence_id": [0.0, i / 5]},
        )
        for i in range(1, 5)
    ]
    path = plot_learning_curve(
        points,
        tmp_path / "curve.png",
        ["sentence_id", "per", "sim_prompt"],
        references={"chance": {"sentence_id": 0.1}},
        baselines={"sim_prompt": "sim_other"},
    )
    assert path.stat().st_size > 5000
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_learning_curve(points, tmp_path / "none.png", ["per", "wer"])
