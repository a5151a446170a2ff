"""VALL-E-paper-style evaluation rows: sentence ID, PER, WER, CER, speaker similarity and duration per system.

A row is a named list of `EvalItem`s ("ground truth", "resynthesis", "continuation",
"cross-utterance", ...). Each item's audio is scored against its text: sentence identification among
a closed set of candidate sentences, phoneme error rate, and word / character error rates through an
open-vocabulary recogniser. When the item carries a prompt and/or the ground-truth recording, the
speaker similarity to each is averaged over the row, and the duration ratio (output seconds /
ground-truth seconds) tells whether a model rambles or truncates. Every row figure comes with its n
and a 95 % bootstrap interval over the row's items (`valle.evaluate.stats`).

Each item carries its own prompt and reference, so every row is compared with what it was given: a
continuation item is the generated audio alone, its text the words after the prompt, its prompt the
recording's first seconds it continued and its reference the rest of that recording
(`valle.cli.demo.scoring.eval_rows`); a cross-utterance item's prompt is the other recording it imitated.

Sentence identification's closed set is, per item, `EvalItem.candidates` when given and otherwise the
distinct texts of the item's row. The continuation row's texts are sentence suffixes, so by default
its items are identified among the suffixes, which is what they say.

Scoring takes ~2 s an item on one core (mostly pocketsphinx), so `evaluate_rows(..., scorers=factory,
jobs=n)` scores items in n worker processes (`valle.evaluate.workers`), each building its own
recognisers; an item's scores do not depend on where, or after which other item, it was scored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from statistics import fmean
from typing import Any

from valle.errors import ConfigError
from valle.evaluate.edits import char_edits, error_rate, word_edits
from valle.evaluate.scoring import (
    ASR,
    SCORER_NAMES,
    Embedder,
    EvalItem,
    ItemScorer,
    ItemScores,
    Phones,
    SentenceID,
)
from valle.evaluate.stats import N_RESAMPLES, NOT_MEASURED, Estimate, estimate, mean_estimate

log = logging.getLogger(__name__)

DURATION_BAND = (0.8, 1.25)  # output / ground-truth seconds counted as "the right length"
METRICS = (
    "sentence_id",
    "per",
    "wer",
    "cer",
    "sim_prompt",
    "sim_reference",
    "sim_other",
    "duration_ratio",
    "duration_in_band",
)


@dataclass
class RowScores:
    """One table row. Rates are fractions (0.05 = 5 %), None when that column was not measured.

    The float fields are the point values; `estimates` holds each metric of `METRICS` with its n and
    95 % bootstrap interval. `sentence_id_chance` is the mean of 1/N over the identified items.
    """

    name: str
    n_items: int
    wer: float | None
    cer: float | None
    sim_prompt: float | None
    sim_reference: float | None
    duration_ratio: float | None
    items: list[ItemScores] = field(default_factory=list)
    sim_other: float | None = None
    sentence_id: float | None = None
    sentence_id_chance: float | None = None
    per: float | None = None
    duration_in_band: float | None = None
    estimates: dict[str, Estimate] = field(default_factory=dict)


def summarize(
    name: str, scored: Sequence[ItemScores], with_asr: bool, n_resamples: int = N_RESAMPLES
) -> RowScores:
    """Row figures from item scores, each with its n and bootstrap interval (resampling the items)."""
    low, high = DURATION_BAND
    phoned = [s for s in scored if s.reference_phones is not None]
    judged = [s for s in scored if s.sentence_correct is not None]  # identified, right or wrong
    correct = [float(s.sentence_correct) for s in scored if s.sentence_correct is not None]
    estimates = {
        "sentence_id": mean_estimate(correct, n_resamples),
        "per": estimate(
            [word_edits(s.reference_phones or "", s.hypothesis_phones or "") for s in phoned],
            error_rate,
            n_resamples,
        ),
        "wer": estimate([word_edits(s.reference, s.hypothesis) for s in scored], error_rate, n_resamples)
        if with_asr
        else NOT_MEASURED,
        "cer": estimate([char_edits(s.reference, s.hypothesis) for s in scored], error_rate, n_resamples)
        if with_asr
        else NOT_MEASURED,
        "sim_prompt": mean_estimate([s.sim_prompt for s in scored], n_resamples),
        "sim_reference": mean_estimate([s.sim_reference for s in scored], n_resamples),
        "sim_other": mean_estimate([s.sim_other for s in scored], n_resamples),
        "duration_ratio": mean_estimate([s.duration_ratio for s in scored], n_resamples),
        "duration_in_band": mean_estimate(
            [None if s.duration_ratio is None else float(low <= s.duration_ratio <= high) for s in scored],
            n_resamples,
        ),
    }
    value = {k: e.value for k, e in estimates.items()}
    chance = fmean(1 / s.n_candidates for s in judged if s.n_candidates) if judged else None
    return RowScores(
        name=name,
        n_items=len(scored),
        wer=value["wer"],
        cer=value["cer"],
        sim_prompt=value["sim_prompt"],
        sim_reference=value["sim_reference"],
        duration_ratio=value["duration_ratio"],
        items=list(scored),
        sim_other=value["sim_other"],
        sentence_id=value["sentence_id"],
        sentence_id_chance=chance,
        per=value["per"],
        duration_in_band=value["duration_in_band"],
        estimates=estimates,
    )


def evaluate_rows(
    rows: Mapping[str, Sequence[EvalItem]],
    asr: ASR | None = None,
    encoder: Embedder | None = None,
    identifier: Callable[[Sequence[str]], SentenceID] | None = None,
    phones: Phones | None = None,
    *,
    scorers: Callable[[], Mapping[str, Any]] | None = None,
    jobs: int = 1,
) -> list[RowScores]:
    """Score every row.

    The scorers come either as objects (`asr=`, `encoder=`, `identifier=`, `phones=`) or as `scorers=`,
    a function that builds them; only the second can score in worker processes.

    Args:
        rows: row name → its items, in table order.
        asr: recogniser for WER / CER (e.g. `PocketSphinxASR()`); None leaves those columns empty.
        encoder: speaker encoder for SIM (e.g. `SpeakerEncoder()`); None leaves those columns empty.
        identifier: candidate sentences → a sentence identifier, e.g. the class `SentenceIdentifier`;
            built once per distinct candidate set. None leaves the sentence-ID column empty.
        phones: phone recogniser for PER (e.g. `PhoneRecognizer()`); None leaves that column empty.
        scorers: a zero-argument, module-level (picklable) function returning some of those four as a
            dict, e.g. `valle.cli.demo.scoring.scorers`; called once in this process (`jobs` = 1) or
            once in each worker.
        jobs: worker processes scoring items in parallel (at most one per item); 1 scores here, in order.
            The scores, their order and the bootstrap intervals are those of `jobs` = 1.

    Returns:
        One `RowScores` per row, with per-item details in `.items`.

    Raises:
        ValueError: a row is empty; ConfigError (a ValueError): a text is empty after normalisation,
            or is not among its item's candidates; `jobs` < 1; `jobs` > 1 with scorer objects rather
            than `scorers=`. An error while scoring in a worker is raised here as it was raised there.
    """
    given = {
        key: value
        for key, value in zip(SCORER_NAMES, (asr, encoder, identifier, phones), strict=True)
        if value is not None
    }
    if jobs < 1:
        raise ConfigError(f"jobs={jobs}: pass the number of worker processes, 1 or more")
    if scorers is not None and given:
        raise ConfigError(f"pass the scorers as objects ({', '.join(given)}=) or as scorers=, not both")
    if jobs > 1 and given:
        raise ConfigError(
            f"jobs={jobs} needs scorers=, a module-level function that builds the scorers "
            "(e.g. valle.cli.demo.scoring.scorers): live decoders cannot be sent to worker processes"
        )
    for name, items in rows.items():
        if not items:
            raise ValueError(f"row {name!r} has no items")
    workers = min(jobs, sum(map(len, rows.values())))
    if scorers is not None and workers > 1:
        from valle.evaluate.workers import score_in_workers

        scored_rows = score_in_workers(rows, scorers, workers)
    else:
        scored_rows = _score_here(
            ItemScorer.build(rows, scorers)
            if scorers is not None
            else ItemScorer(rows, asr, encoder, identifier, phones)
        )
    results = []
    with closing(scored_rows):  # a pool of workers stops with it, whatever happens here
        for name, scored, with_asr in scored_rows:
            results.append(summarize(name, scored, with_asr))
            log.info(
                "%s: %s",
                name,
                ", ".join(f"{k} {v:.3f}" for k, v in metrics_of(results[-1]).items() if v is not None),
            )
    return results


def _score_here(scorer: ItemScorer) -> Generator[tuple[str, list[ItemScores], bool], None, None]:
    """(row name, its item scores, whether words were recognised) for each row in turn, scored here."""
    for name, items in scorer.rows.items():
        yield name, [scorer(name, index) for index in range(len(items))], scorer.asr is not None


def metrics_of(row: RowScores) -> dict[str, float | None]:
    """The row's point values by metric name (`METRICS`), flat: {"sentence_id": 0.75, "per": 0.41, ...}."""
    return {key: getattr(row, key) for key in METRICS}


def estimate_of(row: RowScores, key: str) -> Estimate:
    """One metric of a row with its interval (no interval for a row built by hand without `estimates`)."""
    if key in row.estimates:
        return row.estimates[key]
    value = getattr(row, key)
    return NOT_MEASURED if value is None else Estimate(value, None, None, row.n_items)


# (header, metric, percent?) in table order
COLUMNS = (
    ("sentence-ID %", "sentence_id", True),
    ("PER %", "per", True),
    ("WER %", "wer", True),
    ("CER %", "cer", True),
    ("SIM (prompt)", "sim_prompt", False),
    ("SIM (ground truth)", "sim_reference", False),
    ("SIM (other voices)", "sim_other", False),
    ("duration ratio", "duration_ratio", False),
    (f"in {DURATION_BAND[0]}–{DURATION_BAND[1]} %", "duration_in_band", True),
)


def format_cell(figure: Estimate, percent: bool, n_items: int) -> str:
    """One table cell: "12.3 [8.1–16.0]" (percent) or "0.812 [0.790–0.835]", with "(n=…)" when the figure
    covers fewer items than the row; "–" when not measured."""
    if figure.value is None:
        return "–"

    def number(x: float) -> str:
        return f"{100 * x:.1f}" if percent else f"{x:.3f}"

    text = number(figure.value)
    if figure.low is not None and figure.high is not None:
        text += f" [{number(figure.low)}–{number(figure.high)}]"
    return text + (f" (n={figure.n})" if figure.n != n_items else "")


def format_markdown(rows: Sequence[RowScores]) -> str:
    """A Markdown table, every figure with its 95 % interval, then the sentence-ID chance levels."""
    lines = [
        "| row | n | " + " | ".join(header for header, _, _ in COLUMNS) + " |",
        "|---|---:|" + "---:|" * len(COLUMNS),
    ]
    for r in rows:
        cells = [format_cell(estimate_of(r, key), percent, r.n_items) for _, key, percent in COLUMNS]
        lines.append(f"| {r.name} | {r.n_items} | " + " | ".join(cells) + " |")
    chances = [
        f"{r.name} {100 * r.sentence_id_chance:.1f} %" for r in rows if r.sentence_id_chance is not None
    ]
    notes = [f"\n[low–high]: 95 % bootstrap interval over the row's items ({N_RESAMPLES} resamples)."]
    if chances:
        notes.append("Sentence-ID chance (1 / number of candidate sentences): " + ", ".join(chances) + ".")
    return "\n".join(lines + notes) + "\n"


def to_json(rows: Sequence[RowScores], details: bool = True) -> str:
    """The rows as a JSON list: each metric as {"value", "low", "high", "n"} (fractions, not percent).

    `details=False` drops the per-item scores.
    """
    data = []
    for r in rows:
        row: dict[str, object] = {
            "name": r.name,
            "n_items": r.n_items,
            "sentence_id_chance": r.sentence_id_chance,
        }
        row.update({key: asdict(estimate_of(r, key)) for key in METRICS})
        if details:
            row["items"] = [asdict(item) for item in r.items]
        data.append(row)
    return json.dumps(data, indent=2)
