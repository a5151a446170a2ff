"""VALL-E-paper-style evaluation rows: WER, CER, speaker similarity and duration ratio per system.

A row is a named list of `EvalItem`s ("ground truth", "resynthesis", "continuation",
"cross-utterance", ...). Each item's audio is transcribed and scored against its text; when the item
carries a prompt and/or the ground-truth recording, the speaker similarity to each is averaged over
the row, and the duration ratio (output seconds / ground-truth seconds) tells whether a model
rambles or truncates.

Each item carries its own prompt and reference, so every row is compared with what it was given: a
continuation item is the generated audio alone, its text the words after the prompt, its prompt the
recording's first seconds it continued and its reference the rest of that recording
(`valle.demo.eval_rows`); a cross-utterance item's prompt is the other recording it imitated.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from statistics import fmean
from typing import Protocol

import torch

from valle.evaluate.text import cer, normalize, wer

log = logging.getLogger(__name__)


class ASR(Protocol):
    def transcribe(self, wav: torch.Tensor, sample_rate: int) -> str: ...


class Embedder(Protocol):
    def embed(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor: ...
    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> float: ...


@dataclass
class EvalItem:
    """One utterance to score.

    Attributes:
        key: utterance id, shared by the rows that render the same text.
        text: what `audio` should say (raw text; normalised before scoring).
        audio: the waveform to score, float [channels, samples] or [samples].
        sample_rate: of `audio`, and of the prompt and reference unless given below.
        prompt_audio: the acoustic prompt the output was conditioned on, if any.
        reference_audio: the ground-truth recording of `text`, if any.
        others: recordings (waveform, rate) of *other* speakers: SIM (other voices) is the mean
            similarity to them, the baseline SIM (prompt) must beat for the voice to count as cloned.
    """

    key: str
    text: str
    audio: torch.Tensor
    sample_rate: int
    prompt_audio: torch.Tensor | None = None
    reference_audio: torch.Tensor | None = None
    prompt_sample_rate: int | None = None
    reference_sample_rate: int | None = None
    others: Sequence[tuple[torch.Tensor, int]] = ()


@dataclass
class ItemScores:
    key: str
    reference: str  # normalised text
    hypothesis: str  # normalised ASR output ("" without ASR)
    seconds: float
    sim_prompt: float | None = None
    sim_reference: float | None = None
    sim_other: float | None = None
    duration_ratio: float | None = None


@dataclass
class RowScores:
    """One table row; WER and CER are fractions (0.05 = 5 %), None when that column was not measured."""

    name: str
    n_items: int
    wer: float | None
    cer: float | None
    sim_prompt: float | None
    sim_reference: float | None
    duration_ratio: float | None
    items: list[ItemScores] = field(default_factory=list)
    sim_other: float | None = None


def _seconds(wav: torch.Tensor, sample_rate: int) -> float:
    return wav.shape[-1] / sample_rate


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return fmean(present) if present else None


def score_item(item: EvalItem, asr: ASR | None, encoder: Embedder | None,
               cache: dict[int, torch.Tensor]) -> ItemScores:
    """Transcribe and compare one item. `cache` maps id(tensor) → embedding, so a prompt or ground
    truth shared by several rows is embedded once per `evaluate_rows` call."""
    def embed(wav: torch.Tensor, rate: int | None) -> torch.Tensor:
        assert encoder is not None
        if id(wav) not in cache:
            cache[id(wav)] = encoder.embed(wav, rate or item.sample_rate)
        return cache[id(wav)]

    scores = ItemScores(item.key, normalize(item.text),
                        normalize(asr.transcribe(item.audio, item.sample_rate)) if asr else "",
                        _seconds(item.audio, item.sample_rate))
    if encoder is not None:
        try:
            out = embed(item.audio, item.sample_rate)
        except ValueError as error:  # silent or unvoiced output: no speaker to compare, a result in itself
            log.warning("%s: no SIM (%s)", item.key, error)
            encoder = None
    if encoder is not None:
        if item.prompt_audio is not None:
            scores.sim_prompt = encoder.similarity(out, embed(item.prompt_audio, item.prompt_sample_rate))
        if item.reference_audio is not None:
            scores.sim_reference = encoder.similarity(
                out, embed(item.reference_audio, item.reference_sample_rate))
        if item.others:
            scores.sim_other = fmean(encoder.similarity(out, embed(wav, rate)) for wav, rate in item.others)
    if item.reference_audio is not None:
        ref_seconds = _seconds(item.reference_audio, item.reference_sample_rate or item.sample_rate)
        scores.duration_ratio = scores.seconds / ref_seconds
    return scores


def evaluate_rows(rows: Mapping[str, Sequence[EvalItem]], asr: ASR | None = None,
                  encoder: Embedder | None = None) -> list[RowScores]:
    """Score every row.

    Args:
        rows: row name → its items, in table order.
        asr: recogniser for WER / CER (e.g. `PocketSphinxASR()`); None leaves those columns empty.
        encoder: speaker encoder for SIM (e.g. `SpeakerEncoder()`); None leaves those columns empty.

    Returns:
        One `RowScores` per row, with per-item details in `.items`.

    Raises:
        ValueError: a row is empty, or a reference text is empty after normalisation.
    """
    cache: dict[int, torch.Tensor] = {}
    results = []
    for name, items in rows.items():
        if not items:
            raise ValueError(f"row {name!r} has no items")
        scored = [score_item(item, asr, encoder, cache) for item in items]
        refs, hyps = [s.reference for s in scored], [s.hypothesis for s in scored]
        results.append(RowScores(
            name=name, n_items=len(scored),
            wer=wer(refs, hyps) if asr else None, cer=cer(refs, hyps) if asr else None,
            sim_prompt=_mean([s.sim_prompt for s in scored]),
            sim_reference=_mean([s.sim_reference for s in scored]),
            duration_ratio=_mean([s.duration_ratio for s in scored]), items=scored,
            sim_other=_mean([s.sim_other for s in scored])))
        log.info("%s: WER %s, SIM-prompt %s", name, results[-1].wer, results[-1].sim_prompt)
    return results


def format_markdown(rows: Sequence[RowScores]) -> str:
    """A Markdown table with WER / CER in percent and SIM as cosine, '–' where not measured."""
    def cell(value: float | None, percent: bool = False) -> str:
        if value is None:
            return "–"
        return f"{100 * value:.1f}" if percent else f"{value:.3f}"

    others = any(r.sim_other is not None for r in rows)
    lines = ["| row | n | WER % | CER % | SIM (prompt) | SIM (ground truth) |"
             + (" SIM (other voices) |" if others else "") + " duration ratio |",
             "|---|---:|---:|---:|---:|---:|" + ("---:|" if others else "") + "---:|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.n_items} | {cell(r.wer, True)} | {cell(r.cer, True)} | "
                     f"{cell(r.sim_prompt)} | {cell(r.sim_reference)} |"
                     + (f" {cell(r.sim_other)} |" if others else "") + f" {cell(r.duration_ratio)} |")
    return "\n".join(lines) + "\n"


def to_json(rows: Sequence[RowScores], details: bool = True) -> str:
    """The rows as a JSON list (fractions, not percent); `details=False` drops the per-item scores."""
    data = [asdict(r) for r in rows]
    if not details:
        for row in data:
            row.pop("items")
    return json.dumps(data, indent=2)
