"""`make demo`: the main job on the built-in corpus, offline, scored like the VALL-E paper.

    python -m valle.demo [out=outputs/demo] [size=full|ci] [minutes=20] [steps=N] [stage=all|NAME]

Stages (each reuses what a previous run finished, so a rerun is quick and `stage=NAME` reruns one):
  1. corpus    festival voices and their sox pitch/tempo variants read the built-in sentences; three
               voices and the last 40 sentences are held out of training (valle.corpus)
  2. shards    prepare.py's work with the offline `mel` codec: its codebooks are fit on the corpus
  3. train     train.py experiment=demo for a time budget (resumes from its last checkpoint)
  4. export    the last checkpoint → one portable file (it carries the mel codebooks)
  5. speak     every held-out voice says held-out sentences: cross-utterance (a 3 s prompt from another
               recording of that voice) and continuation (the recording's own first words, up to 3 s, cut
               at a word boundary found by forced alignment; the model says the rest)
  6. evaluate  ground truth, codec resynthesis and both model modes scored with pocketsphinx (WER, CER)
               and resemblyzer (SIM) → report.md, report.json and PNG plots; the continuation row is
               scored on what the model generated only
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from valle.corpus import FESTIVAL_VOICES, Voice, build_corpus, festival_voices
from valle.corpus.sentences import all_sentences
from valle.errors import exit_on_user_error
from valle.evaluate.asr import WordTiming
from valle.evaluate.report import EvalItem

log = logging.getLogger("valle.demo")  # not __name__: that is "__main__" under python -m
ROOT = Path(__file__).resolve().parents[2]
STAGES = ("corpus", "shards", "train", "export", "speak", "evaluate")
N_SENTENCES, N_HELD_OUT_SENTENCES = 400, 40  # the last 40 are never spoken in training
# One variant of each festival voice is held out: the model has heard that voice, never at that pitch/tempo.
HELD_OUT = {("kal_diphone", 250, 1.0), ("ked_diphone", -250, 1.0), ("cmu_us_slt_arctic_hts", 0, 1.07)}
MEL = dict(sample_rate=24_000, hop_length=480, n_mels=80, n_fft=1024, n_levels=4)  # 50 frames/s
PROMPT_SECONDS = 3.0
ROWS = ("ground truth", "resynthesis", "continuation", "cross-utterance")


@dataclass(frozen=True)
class DemoSize:
    """How much of everything: `full` is `make demo`, `ci` the shortened run the tests make."""

    train_sentences: int  # per training voice
    held_out_sentences: int  # per held-out voice (each is a target, and a prompt for its neighbour)
    codebook_size: int
    minutes: float  # training time budget (the other stages take about 8 minutes on 2 CPU cores)
    max_steps: int
    max_ar_steps_per_phoneme: float  # the runaway guard: an undertrained model may never say stop


SIZES = {
    "full": DemoSize(train_sentences=40, held_out_sentences=6, codebook_size=256, minutes=20.0, max_steps=100_000,
                     max_ar_steps_per_phoneme=12.0),
    "ci": DemoSize(train_sentences=5, held_out_sentences=2, codebook_size=32, minutes=2.0, max_steps=6,
                   max_ar_steps_per_phoneme=3.0),
}


def stage(n: int, name: str, detail: object) -> None:
    print(f"[{n}/{len(STAGES)}] {name}: {detail}", flush=True)


def voices() -> tuple[list[Voice], list[Voice]]:
    """(training voices, held-out voices) of the built-in festival corpus."""
    every = festival_voices(FESTIVAL_VOICES)
    held = [v for v in every if (v.name, v.pitch_cents, v.speed) in HELD_OUT]
    return [v for v in every if v not in held], held


# ------------------------------------------------------------------------------------------- stages
def make_corpus(out: Path, size: DemoSize) -> Path:
    train, held = voices()
    sentences = all_sentences(N_SENTENCES)
    n_train = N_SENTENCES - N_HELD_OUT_SENTENCES
    corpus = out / "corpus"
    build_corpus(corpus, train, size.train_sentences, sentences=sentences[:n_train],
                 spread=n_train // len(train), jobs=os.cpu_count() or 1, progress=True)
    build_corpus(corpus, held, size.held_out_sentences, group="held_out", sentences=sentences[n_train:],
                 spread=size.held_out_sentences, jobs=os.cpu_count() or 1, progress=True)
    return corpus


def make_shards(out: Path, size: DemoSize) -> str:
    """prepare.py layout=folder codec=mel codec.weights=fit on the training voices."""
    from valle.cli.prepare import fit_mel_codebooks_for
    from valle.codecs import build_codec
    from valle.data.prepare import PrepareSettings, prepare, summarize

    settings = PrepareSettings(layout="folder", input=str(out / "corpus" / "builtin"), output=str(out / "shards"),
                               num_workers=0, batch_seconds=0)
    codec_kwargs = {**MEL, "codebook_size": size.codebook_size}
    codebooks = fit_mel_codebooks_for(settings, codec_kwargs)
    codec = build_codec("mel", **codec_kwargs, weights=str(codebooks)).eval()
    return summarize(prepare(settings, codec, codec.info))


def train(out: Path, size: DemoSize, minutes: float, steps: int) -> Path:
    """Compose train.py's config for the demo experiment and run it (resuming if possible)."""
    from hydra import compose, initialize_config_dir

    from valle.cli.train import run

    os.environ.setdefault("VALLE_ROOT", str(ROOT))
    seconds = int(minutes * 60)
    budget = f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    overrides = ["experiment=demo", f"data.root={out / 'shards'}", f"run_dir={out / 'run'}",
                 f"trainer.max_steps={steps}", f"trainer.max_time={budget}"]
    if size is SIZES["ci"]:
        overrides += ["trainer.val_check_interval=3", "data.val_utterances=2", "model.scale.d_model=64",
                      "model.scale.n_layers=2"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    run(cfg)
    return out / "run" / "checkpoints" / "last.ckpt"


def export(out: Path) -> Path:
    from valle.export import export_checkpoint

    checkpoint, model = out / "run" / "checkpoints" / "last.ckpt", out / "model.pt"
    if model.is_file() and model.stat().st_mtime >= checkpoint.stat().st_mtime:
        return model  # already exported from this checkpoint
    return export_checkpoint(checkpoint, model)


@dataclass
class Item:
    """One held-out recording and the files the speak stage made for it (paths relative to `out`)."""

    key: str
    speaker: str
    text: str
    truth: str  # the recording
    prompt: str  # cross-utterance prompt: the first seconds of another recording of the same voice
    prompt_key: str
    continuation_seconds: float  # the continuation prompt: the recording's first seconds, up to a word boundary
    continuation_text: str  # the words after them: what the continuation row must say
    outputs: dict[str, str]  # row → wav (the continuation row: the generated part alone)


def continuation_split(timings: list[WordTiming], text: str, max_seconds: float) -> tuple[float, str, str]:
    """Cut a recording of `text` at a word boundary for a continuation prompt.

    Args:
        timings: where each word of `normalize(text)` is spoken (`PocketSphinxAligner.align`).
        text: the transcript as written; it is cut between two of its whitespace-separated tokens.
        max_seconds: the longest prompt wanted; the first boundary is taken when even that is later.

    Returns:
        (seconds of audio in the prompt, the prompt's transcript, the rest of the transcript).
    """
    from valle.evaluate.text import normalize

    tokens = text.split()
    words_before = [len(normalize(" ".join(tokens[:j])).split()) for j in range(len(tokens) + 1)]
    # Token j starts a new word that is not the first or past the last: the next word's start is the cut.
    cuts = [(timings[words_before[j]].start_seconds, j) for j in range(1, len(tokens))
            if 0 < words_before[j] < len(timings) and words_before[j] > words_before[j - 1]]
    if not cuts:
        raise ValueError(f"{text!r}: no word boundary to cut at; it needs at least two words")
    seconds, j = max((c for c in cuts if c[0] <= max_seconds), default=cuts[0])
    return seconds, " ".join(tokens[:j]), " ".join(tokens[j:])


def held_out_items(out: Path) -> list[tuple[str, Path, Path]]:
    """(speaker, wav, prompt wav) for every held-out recording; the prompt is the speaker's next one."""
    items = []
    for folder in sorted((out / "corpus" / "held_out").iterdir()):
        wavs = sorted(folder.glob("*.wav"))
        items += [(folder.name, wav, wavs[(i + 1) % len(wavs)]) for i, wav in enumerate(wavs)]
    return items


@torch.inference_mode()
def speak(out: Path, size: DemoSize) -> list[Item]:
    """Synthesize every held-out recording's text in both modes; writes samples/ and its manifest."""
    import valle
    from valle.audio import load_for_codec, write_wav
    from valle.evaluate.asr import PocketSphinxAligner
    from valle.sampling.pipeline import SamplerConfig
    from valle.sampling.prompt import Prompt, prompt_audio
    from valle.sampling.synthesize import Synthesizer

    synthesizer = Synthesizer(valle.load(out / "model.pt"))
    codec, rate = synthesizer.codec, synthesizer.codec.sample_rate
    config = SamplerConfig(seed=0, ar_temperature=0.8, top_p=0.9,
                           max_ar_steps_per_phoneme=size.max_ar_steps_per_phoneme)
    aligner = PocketSphinxAligner()
    samples = out / "samples"
    items, cross, continuation = [], [], []
    for speaker, wav_path, prompt_path in held_out_items(out):
        key, text = wav_path.stem, wav_path.with_suffix(".txt").read_text().strip()
        truth = load_for_codec(wav_path, rate)
        truth_codes = codec.encode(truth, rate)
        # Continuation: the recording's own first words (up to 3 s, at most half of it) and their
        # transcript; the model says the rest of the text, which is all that is scored.
        seconds, said, rest = continuation_split(aligner.align(truth, rate, text), text,
                                                 min(PROMPT_SECONDS, truth.numel() / rate / 2))
        frames = round(seconds * codec.frame_rate)
        continuation.append(Prompt(truth_codes[:, :frames], said, f"{key} (first {frames} frames)"))
        # Cross-utterance: another recording of the voice, trimmed and cropped as infer.py would.
        prompt = prompt_audio(prompt_path, rate, PROMPT_SECONDS)
        cross.append(Prompt(codec.encode(prompt, rate), source=str(prompt_path)))
        rows = {"resynthesis": f"samples/resynthesis/{key}.wav", "continuation": f"samples/continuation/{key}.wav",
                "cross-utterance": f"samples/cross-utterance/{key}.wav"}
        write_wav(out / rows["resynthesis"], codec.decode(truth_codes), rate)
        prompt_wav = f"samples/prompts/{key}.wav"  # the prompt as the model got it, before the codec
        write_wav(out / prompt_wav, prompt, rate)
        items.append(Item(key, speaker, text, str(wav_path.relative_to(out)), prompt_wav, prompt_path.stem,
                          frames / codec.frame_rate, rest, rows))
    for row, prompts in (("cross-utterance", cross), ("continuation", continuation)):
        started = time.perf_counter()
        texts = [item.continuation_text if row == "continuation" else item.text for item in items]
        results = synthesizer.synthesize(texts, prompts, "en-us", config, prompt_seconds=None, progress=True)
        for item, result in zip(items, results, strict=True):
            write_wav(out / item.outputs[row], result.wav, rate)
        log.info("%s: %d utterances in %.1f s", row, len(items), time.perf_counter() - started)
    manifest = samples / "manifest.json"
    manifest.write_text(json.dumps([asdict(i) for i in items], indent=2))
    return items


def evaluate(out: Path) -> tuple[Path, str]:
    """Score the four rows; write report.md, report.json and the plots."""
    from valle.audio import read_audio
    from valle.evaluate.asr import PocketSphinxASR
    from valle.evaluate.report import evaluate_rows, format_markdown, to_json
    from valle.evaluate.sim import SpeakerEncoder

    items = [Item(**i) for i in json.loads((out / "samples" / "manifest.json").read_text())]
    audio = {}

    def read(path: str) -> tuple[torch.Tensor, int]:
        if path not in audio:
            audio[path] = read_audio(out / path)
        return audio[path]

    scores = evaluate_rows(eval_rows(items, read), asr=PocketSphinxASR(), encoder=SpeakerEncoder())
    (out / "report.json").write_text(to_json(scores))
    plots = make_plots(out, items[0])
    report = out / "report.md"
    table = format_markdown(scores)
    report.write_text(render_report(out, table, plots, items))
    return report, table


def eval_rows(items: list[Item], read: Callable[[str], tuple[torch.Tensor, int]]) -> dict[str, list[EvalItem]]:
    """The four rows' items: each scored on what it says, against the prompt it was given.

    - continuation: the generated audio alone against the rest of the transcript; SIM (prompt) against
      the recording's first seconds it continued, SIM (ground truth) and duration against the rest of it;
    - cross-utterance: against the other recording's prompt and the whole recording;
    - ground truth and resynthesis had no prompt: their SIM (prompt) is against the cross-utterance
      prompt (another recording of the voice), what a perfect clone would score.
    """
    rows: dict[str, list[EvalItem]] = {row: [] for row in ROWS}
    for item in items:
        truth, rate = read(item.truth)
        prompt, prompt_rate = read(item.prompt)
        others = [read(i.truth) for i in items if i.speaker != item.speaker]
        cut = round(item.continuation_seconds * rate)
        for row in ROWS:
            wav, wav_rate = read(item.outputs[row]) if row in item.outputs else (truth, rate)
            if row == "continuation":
                rows[row].append(EvalItem(item.key, item.continuation_text, wav, wav_rate, truth[..., :cut],
                                          truth[..., cut:], rate, rate, others=others))
            else:
                rows[row].append(EvalItem(item.key, item.text, wav, wav_rate, prompt,
                                          None if row == "ground truth" else truth, prompt_rate, rate, others=others))
    return rows


def make_plots(out: Path, item: Item) -> list[Path]:
    """Training curves, and spectrograms of one held-out item's prompt, ground truth and outputs."""
    from valle.plot import plot_run, plot_spectrograms

    curves = plot_run(out / "run", out / "plots")
    spectrograms = plot_spectrograms({name: out / path for name, path in
                                      [("prompt", item.prompt), ("ground truth", item.truth),
                                       *[(row, item.outputs[row]) for row in ROWS[1:]]]},
                                     out / "plots" / "spectrograms.png", title=f"{item.key}: {item.text}")
    return [*curves, spectrograms]


def render_report(out: Path, table: str, plots: list[Path], items: list[Item]) -> str:
    from valle.checkpoints import describe_file, load_file

    data = load_file(out / "model.pt")  # read once: the description and the weights' size
    meta = describe_file(data, out / "model.pt")
    stats, scale = meta["stats"], meta["model"]["scale"]
    params = sum(v.numel() for v in data["model"].values()) / 1e6
    training = (f"{stats.get('steps', 0)} steps in {stats.get('train_seconds', 0) / 60:.1f} min, "
                f"{stats.get('samples', 0)} samples; d_model {scale['d_model']}, {scale['n_layers']} layers, "
                f"{params:.1f} M parameters")
    images = "\n".join(f"![{p.stem}]({p.relative_to(out)})" for p in plots)
    speakers = sorted({i.speaker for i in items})
    return f"""# valle demo report

Held-out voices ({len(speakers)}: {", ".join(speakers)}) say held-out sentences (never in training):
{len(items)} utterances per row. Rows as in the VALL-E paper:

- **ground truth**: the festival recordings;
- **resynthesis**: the recordings through the mel codec (encode, decode), the ceiling for the model;
- **continuation**: the recording's first words (up to {PROMPT_SECONDS:g} s and half of it, cut at a word boundary
  found by forced alignment) and their transcript as the prompt; the model says the rest of the sentence,
  and only what it generated is scored: against the rest of the transcript and the rest of the recording;
- **cross-utterance**: a {PROMPT_SECONDS:g} s prompt from another recording of the same voice, and the target
  sentence.

WER/CER: pocketsphinx (its bundled English model) after text normalisation. SIM: cosine of resemblyzer
speaker embeddings, against the prompt the row was given (continuation: the recording's first words;
cross-utterance: the other recording; ground truth and resynthesis, which have none: the cross-utterance
prompt), the ground truth, and (*other voices*) the recordings of the other held-out voices. The goal:
the model's WER within 2× of resynthesis, and SIM (prompt) above SIM (other voices).

{table}
Training: {training}.

{images}
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("options", nargs="*", help="out=DIR size=full|ci minutes=M steps=N stage=NAME|all")
    options = dict(o.split("=", 1) for o in parser.parse_args(argv).options)
    unknown = set(options) - {"out", "size", "minutes", "steps", "stage"}
    if unknown:
        raise SystemExit(f"unknown option(s) {sorted(unknown)}; see python -m valle.demo --help")
    out = Path(options.get("out", "outputs/demo")).resolve()
    if options.get("size", "full") not in SIZES:
        raise SystemExit(f"size={options['size']}: choose one of {', '.join(SIZES)}")
    size = SIZES[options.get("size", "full")]
    minutes, steps = float(options.get("minutes", size.minutes)), int(options.get("steps", size.max_steps))
    only = options.get("stage", "all")
    if only != "all" and only not in STAGES:
        raise SystemExit(f"stage={only}: choose all or one of {', '.join(STAGES)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out.mkdir(parents=True, exist_ok=True)
    run = lambda name: only in ("all", name)  # noqa: E731
    if run("corpus"):
        corpus = make_corpus(out, size)
        stage(1, "corpus", f"{corpus} ({sum(1 for _ in corpus.rglob('*.wav'))} wavs)")
    if run("shards"):
        stage(2, "shards", "\n" + make_shards(out, size))
    if run("train"):
        stage(3, "train", train(out, size, minutes, steps))
    if run("export"):
        stage(4, "export", export(out))
    if run("speak"):
        stage(5, "speak", f"{len(speak(out, size))} held-out utterances × 3 rows in {out / 'samples'}")
    if run("evaluate"):
        report, table = evaluate(out)
        stage(6, "evaluate", f"{report}\n\n{table}")


if __name__ == "__main__":
    exit_on_user_error(main)()
