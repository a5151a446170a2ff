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
microsoft/wavlm-base-plus-sv, saved). The Markdown table goes to `out` and the full scores (per item) to the
same path with `.json`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from valle.audio import read_audio
from valle.errors import MissingFileError, exit_on_user_error
from valle.evaluate.report import EvalItem, evaluate_rows, format_markdown, to_json

USAGE = __doc__.split("\n\n")[1]
AUDIO_SUFFIXES = (".wav", ".flac")
KEYS = {"hyp_dir", "ref_dir", "prompt_dir", "out", "name", "whisper_model", "wavlm_model"}


def parse_args(argv: list[str]) -> dict[str, str]:
    """`key=value` arguments (Hydra's syntax, without Hydra) → dict; unknown or missing keys fail."""
    args = dict(arg.split("=", 1) for arg in argv if "=" in arg)
    if len(args) != len(argv) or not KEYS.issuperset(args) or not {"hyp_dir", "ref_dir"} <= args.keys():
        raise SystemExit(f"usage:\n{USAGE}\nunknown or missing arguments in: {' '.join(argv)}")
    return args


def find_audio(folder: Path, stem: str) -> Path | None:
    return next((p for p in (folder / (stem + s) for s in AUDIO_SUFFIXES) if p.is_file()), None)


def load_rows(hyp_dir: Path, ref_dir: Path, prompt_dir: Path | None, name: str) -> dict[str, list[EvalItem]]:
    """The "ground truth" and `name` rows, matched by file stem.

    Raises:
        MissingFileError: no `hyp_dir` folder.
        SystemExit: no outputs, or an output without its reference wav / transcript (names the file).
    """
    if not hyp_dir.is_dir():
        raise MissingFileError(f"hyp_dir={hyp_dir}: no such folder")
    hyps = sorted(p for p in hyp_dir.iterdir() if p.suffix in AUDIO_SUFFIXES)
    if not hyps:
        raise SystemExit(f"{hyp_dir}: no .wav or .flac files to score")
    truth, model = [], []
    for hyp in hyps:
        ref, txt = find_audio(ref_dir, hyp.stem), ref_dir / f"{hyp.stem}.txt"
        if ref is None or not txt.is_file():
            raise SystemExit(
                f"{hyp}: needs {ref_dir}/{hyp.stem}.wav and {txt}; add them or remove the output"
            )
        text = txt.read_text(encoding="utf-8").strip()
        ref_wav, ref_rate = read_audio(ref)
        prompt = find_audio(prompt_dir, hyp.stem) if prompt_dir else None
        prompt_wav, prompt_rate = read_audio(prompt) if prompt else (None, None)
        hyp_wav, hyp_rate = read_audio(hyp)
        truth.append(EvalItem(hyp.stem, text, ref_wav, ref_rate, prompt_wav, None, prompt_rate))
        model.append(EvalItem(hyp.stem, text, hyp_wav, hyp_rate, prompt_wav, ref_wav, prompt_rate, ref_rate))
    return {"ground truth": truth, name: model}


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from valle.evaluate.asr import PocketSphinxASR, WhisperASR
    from valle.evaluate.phones import PhoneRecognizer
    from valle.evaluate.sentence_id import SentenceIdentifier
    from valle.evaluate.sim import SpeakerEncoder, WavLMVerifier

    prompt_dir = Path(args["prompt_dir"]) if "prompt_dir" in args else None
    rows = load_rows(Path(args["hyp_dir"]), Path(args["ref_dir"]), prompt_dir, args.get("name", "model"))
    asr = WhisperASR(args["whisper_model"]) if "whisper_model" in args else PocketSphinxASR()
    encoder = WavLMVerifier(args["wavlm_model"]) if "wavlm_model" in args else SpeakerEncoder()
    scores = evaluate_rows(
        rows, asr=asr, encoder=encoder, identifier=SentenceIdentifier, phones=PhoneRecognizer()
    )
    out = Path(args.get("out", "report.md"))
    out.parent.mkdir(parents=True, exist_ok=True)
    table = format_markdown(scores)
    out.write_text(table, encoding="utf-8")
    out.with_suffix(".json").write_text(to_json(scores), encoding="utf-8")
    print(table + f"\nreport written to {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main)(sys.argv[1:]))
