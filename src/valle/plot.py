"""Training curves from a run's CSV log: `python -m valle.plot runs/NAME` writes PNGs beside it.

Figures: `loss.png` (train and validation loss per level), `accuracy.png` (validation top-1 and
top-10 accuracy per level) and `lr.png` (learning rate), in `RUN_DIR/plots/`. `plot_spectrograms`
draws recordings side by side (the demo report's prompt / ground truth / output figure);
`plot_learning_curve` draws held-out figures against training time (`valle.evaluate.curve`).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

# Figures are built with `Figure` (no pyplot): they only go to files, so no backend is chosen,
# and the caller's matplotlib backend is left as it was.
from matplotlib.figure import Figure

from valle.errors import ConfigError, MissingFileError


def metrics_files(run_dir: str | Path) -> list[Path]:
    """A run's CSV logs, one per launch (`csv/version_N/metrics.csv`), oldest first."""
    files = Path(run_dir).glob("csv/version_*/metrics.csv")
    return sorted(files, key=lambda p: int(p.parent.name.removeprefix("version_")))


def read_metrics(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """All launches' metrics → {metric: [(step, value), ...]} by step; a resumed launch's values win."""
    merged: dict[str, dict[int, float]] = defaultdict(dict)
    for path in metrics_files(run_dir):
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                step = int(float(row.get("step") or 0))
                for name, value in row.items():
                    if name not in ("step", "epoch") and value not in ("", None):
                        merged[name][step] = float(value)
    return {name: sorted(values.items()) for name, values in merged.items()}


def _figure(series: dict, names: list[str], title: str, path: Path, log_y: bool = False) -> Path | None:
    names = [n for n in names if series.get(n)]
    if not names:
        return None
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    for name in names:
        steps, values = zip(*series[name], strict=True)
        ax.plot(steps, values, label=name, marker="." if len(steps) < 30 else None)
    ax.set(title=title, xlabel="step")
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    """Write the run's figures to `out` (default RUN_DIR/plots); returns their paths."""
    run_dir = Path(run_dir)
    launched = any(run_dir.glob("csv/version_*"))  # the CSV logger made its folder: this is a run
    if not launched:
        raise MissingFileError(f"{run_dir}/csv: no CSV log; is it a valle run directory (logger=default)?")
    series = read_metrics(run_dir) if metrics_files(run_dir) else {}
    if not series:  # Lightning writes rows every trainer.log_every_n_steps steps and at validation
        raise ConfigError(
            f"{run_dir}/csv: the run has logged no metrics yet; it logs every trainer.log_every_n_steps "
            "steps (default 50) and at each validation: train longer, or lower trainer.log_every_n_steps"
        )
    out = Path(out) if out is not None else run_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(series)
    figures = [
        _figure(series, [n for n in names if "/loss" in n], "loss", out / "loss.png", log_y=True),
        _figure(
            series,
            [n for n in names if n.startswith("val/") and ("acc" in n or "top10" in n)],
            "validation accuracy",
            out / "accuracy.png",
        ),
        _figure(series, [n for n in names if n.startswith("lr")], "learning rate", out / "lr.png"),
    ]
    return [f for f in figures if f is not None]


def plot_spectrograms(wavs: Mapping[str, str | Path], path: str | Path, title: str = "") -> Path:
    """Log-mel spectrograms of several recordings, one panel each on a shared time axis, as a PNG."""
    import torch
    import torchaudio

    from valle.audio import prepare_waveform, read_audio

    rate = 16_000
    mel = torchaudio.transforms.MelSpectrogram(rate, n_fft=1024, hop_length=160, n_mels=80)
    images = {}
    for name, source in wavs.items():
        wav, source_rate = read_audio(source)
        wav = prepare_waveform(wav, source_rate, rate)
        # a clip shorter than half a window (an undertrained model's few frames) cannot be reflect-padded
        wav = torch.nn.functional.pad(wav, (0, max(0, 513 - wav.shape[-1])))
        images[name] = torch.log10(mel(wav) + 1e-5).numpy()
    seconds = max(image.shape[-1] for image in images.values()) * 160 / rate
    fig = Figure(figsize=(9, 1.8 * len(images)))
    axes = fig.subplots(len(images), 1, squeeze=False)
    for ax, (name, image) in zip(axes[:, 0], images.items(), strict=True):
        ax.imshow(
            image,
            origin="lower",
            aspect="auto",
            cmap="magma",
            extent=(0, image.shape[-1] * 160 / rate, 0, image.shape[0]),
        )
        ax.set_xlim(0, seconds)
        ax.set_ylabel(name, fontsize=8)
        ax.set_yticks([])
    axes[-1, 0].set_xlabel("seconds")
    return save_figure(fig, path, title)


def plot_learning_curve(
    points: Sequence,
    path: str | Path,
    metrics: Sequence[str],
    labels: Mapping[str, str] | None = None,
    references: Mapping[str, Mapping[str, float | None]] | None = None,
    baselines: Mapping[str, str] | None = None,
    title: str = "",
) -> Path:
    """Held-out figures against training minutes, one panel per metric, as a PNG.

    Args:
        points: `valle.evaluate.curve.CurvePoint`s (`.minutes`, `.metrics` and, when present,
            `.intervals`: drawn as a band), by step.
        metrics: the metrics to draw, one panel each; those no point measured are left out.
        labels: metric → panel title (default: the metric's name).
        references: name → {metric: value}, drawn as dashed horizontal lines (e.g. "resynthesis": the
            ceiling a model can reach; "chance").
        baselines: metric → another metric of the same points drawn in its panel as a dotted line (e.g.
            "sim_prompt" → "sim_other": the similarity to other voices that cloning must beat).
    """
    labels, references, baselines = labels or {}, references or {}, baselines or {}
    metrics = [m for m in metrics if any(p.metrics.get(m) is not None for p in points)]
    if not metrics:
        raise ValueError("no metric of the learning curve was measured; nothing to plot")
    columns = min(len(metrics), 3)
    rows = -(-len(metrics) // columns)
    fig = Figure(figsize=(4.2 * columns, 3.2 * rows))
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    colors = ["tab:gray", "tab:green", "tab:red", "tab:purple"]
    for ax, metric in zip(axes, metrics, strict=False):
        for name, style in ((metric, "o-"), (baselines.get(metric), "s:")):
            if not name:
                continue
            measured = [p for p in points if p.metrics.get(name) is not None]
            if not measured:
                continue
            (line,) = ax.plot(
                [p.minutes for p in measured],
                [p.metrics[name] for p in measured],
                style,
                label="model" if name == metric else labels.get(name, name),
            )
            banded = [
                (p.minutes, *p.intervals[name])
                for p in measured
                if (getattr(p, "intervals", None) or {}).get(name)
            ]
            if banded:  # the 95 % bootstrap interval over the items
                ax.fill_between(*zip(*banded, strict=True), color=line.get_color(), alpha=0.15, linewidth=0)
        for color, (name, values) in zip(colors, references.items(), strict=False):
            if values.get(metric) is not None:
                ax.axhline(values[metric], linestyle="--", color=color, label=name)
        ax.set(title=labels.get(metric, metric), xlabel="training minutes")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    return save_figure(fig, path, title)


def save_figure(fig: Figure, path: str | Path, title: str = "") -> Path:
    """Title, lay out and write a figure as a PNG (making its folder); returns the path."""
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


if __name__ == "__main__":  # `python -m valle.plot`: the command itself lives in valle.cli.plot
    import sys

    from valle.cli.plot import main
    from valle.errors import exit_on_user_error

    exit_on_user_error(main)(sys.argv[1:])
