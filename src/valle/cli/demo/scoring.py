"""The curve and evaluate stages: every row and training snapshot scored by the instrument."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch

from valle.cli.demo.report import make_plots, render_report, training_summary, write_report_html
from valle.cli.demo.settings import (
    CURVE_ITEMS_PER_VOICE,
    LISTEN_PER_VOICE,
    REMAINDERS,
    DemoSize,
    is_continuation,
    sampler_config,
)
from valle.cli.demo.speak import Item, first_per_voice, manifest_rows, read_manifest, speak_cross_utterance
from valle.evaluate.curve import CurvePoint
from valle.evaluate.report import EvalItem, RowScores


def scorers() -> dict:
    """`evaluate_rows`' recognisers and speaker encoder: pocketsphinx (words, sentences, phones) and
    resemblyzer."""
    from valle.evaluate.asr import PocketSphinxASR
    from valle.evaluate.phones import PhoneRecognizer
    from valle.evaluate.sentence_id import SentenceIdentifier
    from valle.evaluate.sim import SpeakerEncoder

    return {
        "asr": PocketSphinxASR(),
        "encoder": SpeakerEncoder(),
        "identifier": SentenceIdentifier,
        "phones": PhoneRecognizer(),
    }


@contextmanager
def one_thread() -> Iterator[None]:
    """Score with one torch thread: resemblyzer's LSTM on one short utterance gains nothing from more, and
    on a CPU shared with other jobs a thread pool made each embedding take seconds instead of ~0.2 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class AudioCache:
    """Waveforms of files under `out`, read once: a prompt or a recording serves several rows."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.audio: dict[str, tuple[torch.Tensor, int]] = {}

    def __call__(self, path: str) -> tuple[torch.Tensor, int]:
        from valle.audio import read_audio

        if path not in self.audio:
            self.audio[path] = read_audio(self.out / path)
        return self.audio[path]


@torch.inference_mode()
def learning_curve(
    out: Path,
    size: DemoSize,
    run_dir: Path | None = None,
    final: Path | None = None,
    curve_file: Path | None = None,
) -> list[CurvePoint]:
    """Score every training snapshot (run/curve/) and the exported model on the same held-out items.

    The items: the first `CURVE_ITEMS_PER_VOICE` held-out recordings of each voice, in cross-utterance
    mode with speak's prompts and sampler (seed included); sentence ID among all the held-out texts, as
    in the report's cross-utterance row. Each model's outputs go to samples/curve/<model>/, its scores
    to curve.json (`valle.evaluate.curve`), which a rerun extends rather than recomputes.

    `run_dir` (default out/run), the `final` model (default out/model.pt) and `curve_file` (default
    out/curve.json) let a recipe search (`benchmarks/demo_recipe.py`) score its own runs the same way.
    """
    run_dir, final = run_dir or out / "run", final or out / "model.pt"
    curve_file = curve_file or out / "curve.json"
    outputs = (
        "samples/curve"
        if curve_file == out / "curve.json"
        else str(curve_file.parent.relative_to(out) / "samples")
    )
    import valle
    from valle.evaluate.curve import snapshot_files, update_curve
    from valle.evaluate.report import evaluate_rows
    from valle.sampling.synthesize import Synthesizer

    items = read_manifest(out)
    chosen = first_per_voice(items, CURVE_ITEMS_PER_VOICE)
    candidates = list(dict.fromkeys(item.text for item in items))
    config = sampler_config(size)
    read = AudioCache(out)

    def score(model: Path) -> RowScores:
        synthesizer = Synthesizer(valle.load(model))
        spoken = speak_cross_utterance(synthesizer, out, chosen, config, f"{outputs}/{model.stem}")
        rows = eval_rows(spoken, read, rows=("cross-utterance",))
        for scored in rows["cross-utterance"]:
            scored.candidates = candidates
        with one_thread():  # one process per core builds its own scorers (a finished curve loads none)
            [row] = evaluate_rows(rows, scorers=scorers, jobs=os.cpu_count() or 1)
        return row

    models = [*snapshot_files(run_dir / "curve"), *([final] if final.is_file() else [])]
    settings = {"row": "cross-utterance", "sampler": asdict(config), "candidates": len(candidates)}
    return update_curve(curve_file, models, [item.key for item in chosen], settings, score)


def evaluate(out: Path) -> tuple[Path, str]:
    """Score every row; write report.md, report.html, report.json and the plots."""
    from valle.evaluate.curve import curve_points, read_curve
    from valle.evaluate.report import evaluate_rows, format_markdown, to_json

    items = read_manifest(out)
    with one_thread():  # one process per core, each with its own scorers: ~2 s an item on one core
        scores = evaluate_rows(eval_rows(items, AudioCache(out)), scorers=scorers, jobs=os.cpu_count() or 1)
    (out / "report.json").write_text(to_json(scores))
    curve = read_curve(out / "curve.json")
    points = curve_points(curve)
    references = {
        row.name: {k: getattr(row, k) for k in ("sentence_id", "per", "wer", "sim_prompt", "duration_ratio")}
        for row in scores
        if row.name == "resynthesis"
    }
    if curve["settings"].get("candidates"):
        references["chance"] = {"sentence_id": 1 / curve["settings"]["candidates"]}
    listened = first_per_voice(items, LISTEN_PER_VOICE)
    plots = make_plots(out, listened, points, references)
    table = format_markdown(scores)
    report = out / "report.md"
    training = training_summary(out)
    report.write_text(render_report(out, table, plots, items, listened, points, training))
    write_report_html(out, table, plots, items, listened, points, training)
    return report, table


def eval_rows(
    items: list[Item], read: Callable[[str], tuple[torch.Tensor, int]], rows: Sequence[str] | None = None
) -> dict[str, list[EvalItem]]:
    """The rows' items (default: every row the manifest has): each scored on what it says, against the
    prompt it was given.

    - continuation (and its best of N): the generated audio alone against the rest of the transcript;
      SIM (prompt) against the recording's first seconds it continued, SIM (ground truth) and duration
      against the rest of it;
    - the remainders: the recording, and its resynthesis, after the continuation prompt's cut, scored as
      the continuation rows (their floor and ceiling);
    - cross-utterance (and its best of N): against the other recording's prompt and the whole recording;
    - ground truth and resynthesis had no prompt: their SIM (prompt) is against the cross-utterance
      prompt (another recording of the voice), what a perfect clone would score.
    """
    scored: dict[str, list[EvalItem]] = {row: [] for row in rows or manifest_rows(items)}
    for item in items:
        truth, rate = read(item.truth)
        prompt, prompt_rate = read(item.prompt)
        others = [read(i.truth) for i in items if i.speaker != item.speaker]
        cut = round(item.continuation_seconds * rate)
        for row in scored:
            source = REMAINDERS.get(row, row)  # a remainder row cuts its source's audio
            wav, wav_rate = read(item.outputs[source]) if source in item.outputs else (truth, rate)
            if row in REMAINDERS:
                wav = wav[..., round(item.continuation_seconds * wav_rate) :]
            if is_continuation(row):
                scored[row].append(
                    EvalItem(
                        item.key,
                        item.continuation_text,
                        wav,
                        wav_rate,
                        truth[..., :cut],
                        truth[..., cut:],
                        rate,
                        rate,
                        others=others,
                    )
                )
            else:
                scored[row].append(
                    EvalItem(
                        item.key,
                        item.text,
                        wav,
                        wav_rate,
                        prompt,
                        None if row == "ground truth" else truth,
                        prompt_rate,
                        rate,
                        others=others,
                    )
                )
    return scored
