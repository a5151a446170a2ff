"""Score a folder of synthesised wavs against ground truth.

    python -m valle.evaluate hyp_dir=DIR ref_dir=DIR [prompt_dir=DIR] [out=report.md]
                             [name=model] [whisper_model=PATH.pt] [wavlm_model=DIR]

Files are matched by stem: for every `hyp_dir/{stem}.wav` (or .flac) there must be
`ref_dir/{stem}.wav` and its transcript `ref_dir/{stem}.txt`; `prompt_dir/{stem}.wav`, when given,
is the prompt that output was conditioned on. Two rows are scored: "ground truth" (the reference
recordings, against the prompts) and `name` (the outputs, against the prompts and the references).
Sentence identification picks among the transcripts given (chance 1/N) and PER uses pocketsphinx's
phone decoder; both need every word in pocketsphinx's dictionary (items with others are left out of
those columns, with a warning). ASR is PocketSphinx unless `whisper_model` names a local openai-whisper
checkpoint; SIM is resemblyzer unless `wavlm_model` names a local WavLM x-vector folder (e.g.
microsoft/wavlm-base-plus-sv, saved). The Markdown table goes to `out` with the suffix `.md` and the full
scores (per item) beside it with `.json`, whatever suffix `out` has (`out=ev/scores.json` writes
`ev/scores.md` and `ev/scores.json`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from valle.cli.options import REQUIRED, parse_options
from valle.evaluate.folders import load_rows
from valle.evaluate.report import evaluate_rows, format_markdown, to_json


@dataclass
class EvaluateOptions:
    hyp_dir: str = REQUIRED  # the outputs to score
    ref_dir: str = REQUIRED  # their references: {stem}.wav and {stem}.txt
    prompt_dir: str | None = None  # the prompts the outputs were conditioned on ({stem}.wav)
    out: str = "report.md"
    name: str = "model"  # the outputs' row in the table
    whisper_model: str | None = None  # a local openai-whisper checkpoint (default: pocketsphinx)
    wavlm_model: str | None = None  # a local WavLM x-vector folder (default: resemblyzer)


def main(argv: list[str]) -> Path:
    options = parse_options("valle.evaluate", EvaluateOptions, argv, doc=__doc__ or "")
    from valle.evaluate.asr import PocketSphinxASR, WhisperASR
    from valle.evaluate.phones import PhoneRecognizer
    from valle.evaluate.sentence_id import SentenceIdentifier
    from valle.evaluate.sim import SpeakerEncoder, WavLMVerifier

    prompt_dir = Path(options.prompt_dir) if options.prompt_dir else None
    rows = load_rows(Path(options.hyp_dir), Path(options.ref_dir), prompt_dir, options.name)
    asr = WhisperASR(options.whisper_model) if options.whisper_model else PocketSphinxASR()
    encoder = WavLMVerifier(options.wavlm_model) if options.wavlm_model else SpeakerEncoder()
    scores = evaluate_rows(
        rows, asr=asr, encoder=encoder, identifier=SentenceIdentifier, phones=PhoneRecognizer()
    )
    out = Path(options.out).with_suffix(".md")  # out=scores.json must not put the JSON over the table
    out.parent.mkdir(parents=True, exist_ok=True)
    table = format_markdown(scores)
    out.write_text(table, encoding="utf-8")
    out.with_suffix(".json").write_text(to_json(scores), encoding="utf-8")
    print(table + f"\nreport written to {out} and {out.with_suffix('.json')}")
    return out
