"""A learning curve: the same held-out items scored with every training snapshot, by training time.

Training with `callbacks=curve` keeps a weights-only checkpoint every few minutes of training in
`RUN_DIR/curve/` (configs/callbacks/curve.yaml). `update_curve` scores each snapshot (and the final
export) with a caller's function, always on the same items with the same sampler seed, and records
the figures in a JSON file:

    {"items": [keys...], "settings": {...}, "points": [{"model": "step0000400.ckpt", "step": 400,
     "minutes": 3.1, "metrics": {"sentence_id": 0.33, "per": 0.71, ...},
     "intervals": {"sentence_id": [0.11, 0.56], ...}, "n": {"sentence_id": 9, ...}}, ...]}

(`metrics` as `valle.evaluate.report.metrics_of` gives them, with their 95 % bootstrap intervals and n.)

It is resumable: a snapshot already in the file is not scored again, the file is rewritten after each
new point, and a change of items or settings starts it over. `minutes` is the training time the
checkpoint records (`valle_stats.train_seconds`: the optimizer steps, not validation or start-up).
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from valle.checkpoints import card_dict, load_file
from valle.evaluate.report import RowScores, estimate_of, format_cell, metrics_of
from valle.evaluate.stats import Estimate
from valle.utils.io import atomic_write_json

log = logging.getLogger(__name__)

# The curve's columns, in table and figure order, with how they read.
METRIC_LABELS = {
    "sentence_id": "sentence ID",
    "per": "PER",
    "wer": "WER",
    "cer": "CER",
    "sim_prompt": "SIM (prompt)",
    "sim_reference": "SIM (ground truth)",
    "sim_other": "SIM (other voices)",
    "duration_ratio": "duration ratio",
    "duration_in_band": "duration in band",
}
PERCENT = {"sentence_id", "per", "wer", "cer", "duration_in_band"}
TABLE_METRICS = ("sentence_id", "per", "wer", "sim_prompt", "sim_other", "duration_ratio")


@dataclass
class CurvePoint:
    """One scored model: its file name, where training was, and its figures (None = not measured)."""

    model: str
    step: int
    minutes: float
    metrics: dict[str, float | None]
    intervals: dict[str, list[float] | None] = field(default_factory=dict)  # 95 % bootstrap [low, high]
    n: dict[str, int] = field(default_factory=dict)  # items each figure was computed from

    @classmethod
    def of(cls, model: str, step: int, minutes: float, row: RowScores) -> CurvePoint:
        estimates = {key: estimate_of(row, key) for key in metrics_of(row)}
        return cls(
            model,
            step,
            round(minutes, 3),
            metrics_of(row),
            {k: None if e.low is None or e.high is None else [e.low, e.high] for k, e in estimates.items()},
            {k: e.n for k, e in estimates.items()},
        )


def snapshot_files(folder: str | Path) -> list[Path]:
    """The complete snapshot checkpoints in `folder`, by step (a file cut short by a kill has no zip
    directory)."""

    def complete(path: Path) -> bool:
        try:
            with zipfile.ZipFile(path):
                return True
        except (zipfile.BadZipFile, OSError):
            log.warning("skipping %s: incomplete (training was killed while writing it)", path)
            return False

    def step(path: Path) -> int:
        found = re.search(r"\d+", path.stem)
        return int(found.group()) if found else -1

    return sorted((p for p in Path(folder).glob("*.ckpt") if complete(p)), key=lambda p: (step(p), p.name))


def training_position(path: str | Path) -> tuple[int, float]:
    """(optimizer steps, minutes of training) recorded in a checkpoint or export."""
    stats = card_dict(load_file(path), path).get("stats") or {}  # the stats alone: no config to check
    return int(stats.get("steps", 0)), float(stats.get("train_seconds", 0.0)) / 60


def read_curve(path: str | Path) -> dict:
    """The curve file's content; an empty curve when there is none."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {"items": [], "settings": {}, "points": []}


def curve_points(data: Mapping) -> list[CurvePoint]:
    return [CurvePoint(**p) for p in data.get("points", [])]


def update_curve(
    path: str | Path,
    models: Sequence[str | Path],
    items: Sequence[str],
    settings: Mapping,
    score: Callable[[Path], RowScores],
) -> list[CurvePoint]:
    """Score the models the curve file lacks; returns every point, by step.

    Args:
        path: the curve file (JSON), read if present and rewritten after each new point.
        models: snapshot checkpoints and/or exports. Two files at the same step hold the same weights:
            only the first is scored (list snapshots before the final export).
        items: keys of the items every model is scored on; settings: anything else that makes points
            comparable (sampler, seed). When either differs from the file's, the curve starts over.
        score: a model file → its scores on `items` (one row of `valle.evaluate.report.evaluate_rows`).

    A point whose model is no longer listed at its step (a retrained run's export) is dropped.
    """
    path = Path(path)
    data = read_curve(path)
    settings = json.loads(json.dumps(settings))  # as the file will hold it (tuples become lists)
    if data["items"] != list(items) or data["settings"] != settings:
        if data["points"]:
            log.warning("%s: scored on other items or settings; starting the curve over", path)
        data = {"items": list(items), "settings": settings, "points": []}
    positions: dict[Path, tuple[int, float]] = {}
    for model in map(Path, models):
        step, minutes = training_position(model)
        if step not in {s for s, _ in positions.values()}:
            positions[model] = (step, minutes)
    listed = {(model.name, step) for model, (step, _) in positions.items()}
    points = {(p.model, p.step): p for p in curve_points(data) if (p.model, p.step) in listed}
    for model, (step, minutes) in positions.items():
        if (model.name, step) in points:
            continue
        log.info("learning curve: scoring %s (step %d, %.1f min)", model.name, step, minutes)
        points[model.name, step] = CurvePoint.of(model.name, step, minutes, score(model))
        data["points"] = [asdict(p) for p in sorted(points.values(), key=lambda p: p.step)]
        atomic_write_json(path, data)
    data["points"] = [asdict(p) for p in sorted(points.values(), key=lambda p: p.step)]
    atomic_write_json(path, data)
    return curve_points(data)


def estimate_at(point: CurvePoint, metric: str) -> Estimate:
    """One figure of a point with its interval and n, as the report tables take it."""
    low, high = point.intervals.get(metric) or (None, None)
    return Estimate(point.metrics.get(metric), low, high, point.n.get(metric, 0))


def format_curve_markdown(
    points: Sequence[CurvePoint], n_items: int, metrics: Sequence[str] = TABLE_METRICS
) -> str:
    """A Markdown table, one row per point: each figure with its 95 % interval, as in the report's table
    ("(n=…)" when fewer than `n_items` items were measured); columns no point measured are left out."""
    metrics = [m for m in metrics if any(p.metrics.get(m) is not None for p in points)]
    header = [
        "model",
        "step",
        "minutes",
        *(METRIC_LABELS.get(m, m) + (" %" if m in PERCENT else "") for m in metrics),
    ]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for p in points:
        lines.append(
            f"| {p.model} | {p.step} | {p.minutes:.1f} | "
            + " | ".join(format_cell(estimate_at(p, m), m in PERCENT, n_items) for m in metrics)
            + " |"
        )
    return "\n".join(lines) + "\n"
