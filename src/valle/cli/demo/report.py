"""report.md, report.html and the plots: the rows' table, the learning curve, players beside prompts."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from valle.cli.demo.settings import (
    BEST_OF_MARK,
    CURVE_ITEMS_PER_VOICE,
    CURVE_METRICS,
    DECODING,
    PROMPT_SECONDS,
)
from valle.cli.demo.speak import Item, first_per_voice, manifest_rows
from valle.evaluate.curve import CurvePoint


def clips(item: Item) -> dict[str, str]:
    """What to hear of one held-out item, label → wav relative to `out`: its prompt, the recording, each
    output."""
    return {"prompt": item.prompt, "ground truth": item.truth, **item.outputs}


def make_plots(
    out: Path, listened: Sequence[Item], points: Sequence[CurvePoint] = (), references: dict | None = None
) -> list[Path]:
    """Training curves, the learning curve (when scored), and spectrograms of each listened item's clips
    (plots/spectrograms/KEY.png)."""
    from valle.evaluate.curve import METRIC_LABELS
    from valle.plot import plot_learning_curve, plot_run, plot_spectrograms

    plots = plot_run(out / "run", out / "plots")
    if points:
        plots.append(
            plot_learning_curve(
                points,
                out / "plots" / "learning_curve.png",
                CURVE_METRICS,
                labels=METRIC_LABELS,
                references=references,
                baselines={"sim_prompt": "sim_other"},
                title="held-out cross-utterance items, by training time",
            )
        )
    for item in listened:
        plots.append(
            plot_spectrograms(
                {name: out / path for name, path in clips(item).items()},
                out / "plots" / "spectrograms" / f"{item.key}.png",
                title=textwrap.fill(f"{item.key}: {item.text}", 120),
            )
        )
    return plots


def training_summary(out: Path) -> str:
    """One line on the exported model: steps, training time, samples, size."""
    from valle.checkpoints import card_of, load_file

    data = load_file(out / "model.pt")  # read once: the card and the weights' size
    card = card_of(data, out / "model.pt")
    stats, scale = card.stats, card.config.scale
    params = sum(v.numel() for v in data["model"].values()) / 1e6
    return (
        f"{stats.get('steps', 0)} steps in {stats.get('train_seconds', 0) / 60:.1f} min, "
        f"{stats.get('samples', 0)} samples; d_model {scale.d_model}, {scale.n_layers} layers, "
        f"{params:.1f} M parameters"
    )


def listening_markdown(listened: Sequence[Item]) -> str:
    """A Markdown table of links to each listened item's prompt, recording and outputs."""
    labels = list(clips(listened[0]))
    lines = ["| utterance | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for item in listened:
        lines.append(
            f"| `{item.key}`: {item.text} | "
            + " | ".join(f"[wav]({path})" for path in clips(item).values())
            + " |"
        )
    return "\n".join(lines) + "\n"


def curve_section(points: Sequence[CurvePoint], n_items: int) -> str:
    from valle.evaluate.curve import format_curve_markdown

    if not points:
        return "No learning curve yet (the `curve` stage scores the training snapshots).\n"
    return (
        f"The same {n_items} held-out cross-utterance items scored with each training snapshot "
        f"(`run/curve/`, every few minutes of training) and the exported model; their outputs are in "
        f"`samples/curve/`, the figures in `curve.json`.\n\n![learning curve](plots/learning_curve.png)\n\n"
        + format_curve_markdown(points, n_items)
    )


def best_of_note(rows: Sequence[str]) -> str:
    """The report's line on the best-of rows (`best_of=N`), if it has them."""
    best = [row for row in rows if BEST_OF_MARK in row]
    if not best:
        return ""
    n = best[0].rpartition(" ")[2]
    return (
        f"- {', '.join(f'**{row}**' for row in best)}: the same items, each the clearest of {n} draws to a\n"
        "  small recognizer of level-0 codes trained on the training shards only (`sampler.best_of`; not\n"
        "  pocketsphinx, which scores them).\n"
    )


def render_report(
    out: Path,
    table: str,
    plots: list[Path],
    items: list[Item],
    listened: Sequence[Item] = (),
    points: Sequence[CurvePoint] = (),
    training: str = "",
) -> str:
    """report.md: the rows, the scores, links to listen to, the learning curve and the figures."""
    figures = "\n".join(
        f"![{p.stem}]({p.relative_to(out)})"
        for p in plots
        if p.parent.name != "spectrograms" and p.name != "learning_curve.png"
    )
    spectrograms = "\n".join(
        f"![{p.stem}]({p.relative_to(out)})" for p in plots if p.parent.name == "spectrograms"
    )
    speakers = sorted({i.speaker for i in items})
    n_curve = len(first_per_voice(items, CURVE_ITEMS_PER_VOICE))
    return f"""# valle demo report

Held-out voices ({len(speakers)}: {", ".join(speakers)}) say held-out sentences (never in training):
{len(items)} utterances per row. Rows as in the VALL-E paper:

- **ground truth**: the festival recordings;
- **resynthesis**: the recordings through the mel codec (encode, decode), the ceiling for the model;
- **ground truth, remainders**, **resynthesis, remainders**: the same, cut where each continuation's prompt
  ends and scored as the continuation row is: the floor and the ceiling for the continuations, whose two to
  five words without their sentence's start read worse than whole sentences;
- **continuation**: the recording's first words (up to {PROMPT_SECONDS:g} s and half of it, cut at a word
  boundary found by forced alignment) and their transcript as the prompt; the model says the rest of the
  sentence, and only what it generated is scored: against the rest of the transcript and the rest of the
  recording;
- **cross-utterance**: a {PROMPT_SECONDS:g} s prompt from another recording of the same voice, and the target
  sentence;
{best_of_note(manifest_rows(items))}
Sentence ID: pocketsphinx decoding constrained to the row's sentences (a JSGF grammar; continuation: the
sentences' remainders), top-1 accuracy against chance. PER: pocketsphinx phone decoding against the
transcript's CMU-dictionary phones. WER/CER: pocketsphinx (its bundled English model) after text
normalisation. SIM: cosine of resemblyzer speaker embeddings, against the prompt the row was given
(continuation: the recording's first words; cross-utterance: the other recording; ground truth and
resynthesis, which have none: the cross-utterance prompt), the ground truth, and (*other voices*) the
recordings of the other held-out voices. The goal: the model's WER within 2× of its ceiling (the
resynthesis for cross-utterance, the resynthesised remainders for continuation), and SIM (prompt) above SIM
(other voices). `report.html` has the same with players.

{table}
Training: {training}. Decoding: {DECODING}.

## Listen

{listening_markdown(listened) if listened else ""}
{spectrograms}

## Learning curve

{curve_section(points, n_curve)}
## Training

{figures}
"""


def write_report_html(
    out: Path,
    table: str,
    plots: list[Path],
    items: list[Item],
    listened: Sequence[Item],
    points: Sequence[CurvePoint],
    training: str,
) -> Path:
    """report.html: scores, players for the listened items beside their prompts, the learning curve and
    what each snapshot said, the training figures; every link relative to `out`."""
    from valle.evaluate.curve import format_curve_markdown
    from valle.evaluate.html import (
        Clip,
        ClipRow,
        Section,
        figure_html,
        listening_html,
        table_html,
        write_page,
    )

    spectrogram = {p.stem: str(p.relative_to(out)) for p in plots if p.parent.name == "spectrograms"}
    listen = [
        ClipRow(
            item.key,
            item.text,
            [Clip(label, path) for label, path in clips(item).items()],
            spectrogram.get(item.key),
        )
        for item in listened
    ]
    notes = [line for line in table.splitlines() if line.strip() and not line.startswith("|")]
    sections = [
        Section("Scores", table_html(table), notes),
        Section(
            "Listen",
            listening_html(listen),
            ["The prompt is the cross-utterance one; the continuation clips are the generated part alone."],
        ),
    ]
    if points:
        heard = first_per_voice(items, 1)  # one sentence per voice, as each snapshot said it
        by_model = [
            ClipRow(
                f"{p.model}",
                f"step {p.step}, {p.minutes:.1f} min",
                [
                    Clip(f"{item.key}: {item.text}", f"samples/curve/{Path(p.model).stem}/{item.key}.wav")
                    for item in heard
                ],
            )
            for p in points
        ]
        n_curve = len(first_per_voice(items, CURVE_ITEMS_PER_VOICE))
        curve = [
            figure_html("plots/learning_curve.png", "held-out figures by training time"),
            table_html(format_curve_markdown(points, n_curve)),
            listening_html(by_model, first_column="model"),
        ]
        sections.append(
            Section(
                "Learning curve",
                "\n".join(curve),
                [
                    "The same held-out cross-utterance items "
                    "scored with each training snapshot and the exported model."
                ],
            )
        )
    figures = [p for p in plots if p.parent.name != "spectrograms" and p.name != "learning_curve.png"]
    sections.append(Section("Training", "\n".join(figure_html(p.relative_to(out), p.stem) for p in figures)))
    voices = ", ".join(sorted({i.speaker for i in items}))
    return write_page(
        out / "report.html",
        "valle demo report",
        sections,
        [
            f"{len(items)} held-out utterances per row, voices {voices}. Training: {training}. "
            f"Decoding: {DECODING}. "
            "report.md describes the rows and the columns."
        ],
    )
