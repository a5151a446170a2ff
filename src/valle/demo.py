"""`make demo`: the main job on the built-in corpus, offline, scored like the VALL-E paper.

    python -m valle.demo [out=outputs/demo] [size=full|ci] [minutes=15] [steps=N] [curve_minutes=3] \
        [stage=all|NAME]

Stages (each reuses what a previous run finished, so a rerun is quick and `stage=NAME` reruns one):
  1. corpus    festival voices and their sox pitch/tempo variants read the built-in sentences; three
               voices and the last 60 sentences are held out of training (valle.corpus)
  2. shards    prepare.py's work with the offline `mel` codec: its codebooks are fit on the corpus
  3. train     train.py experiment=demo for a time budget (resumes from its last checkpoint); a weights-only
               snapshot every `curve_minutes` of training goes to run/curve/ (callbacks=curve)
  4. export    the last checkpoint → one portable file (it carries the mel codebooks)
  5. speak     every held-out voice says held-out sentences: cross-utterance (a 3 s prompt from another
               recording of that voice) and continuation (the recording's own first words, up to 3 s, cut
               at a word boundary found by forced alignment; the model says the rest)
  6. curve     the learning curve: every snapshot and the exported model speak the same held-out items
               (the first 3 of each voice, cross-utterance, speak's sampler and seed) and are scored as
               below → curve.json (resumable: a scored snapshot is not scored again)
  7. evaluate  ground truth, codec resynthesis and both model modes scored with pocketsphinx (sentence ID
               among the row's sentences, PER, WER, CER) and resemblyzer (SIM), each with a 95 %
               bootstrap interval → report.md, report.html (players beside their prompts, the learning
               curve), report.json and PNG plots; the continuation row is scored on what it generated only
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from valle.codecs.base import Codec
from valle.corpus import FESTIVAL_VOICES, Voice, build_corpus, festival_voices
from valle.corpus.sentences import all_sentences
from valle.errors import exit_on_user_error
from valle.evaluate.asr import WordTiming
from valle.evaluate.curve import CurvePoint
from valle.evaluate.report import EvalItem, RowScores
from valle.sampling.pipeline import SamplerConfig
from valle.sampling.prompt import Prompt
from valle.utils.io import atomic_write_json

log = logging.getLogger("valle.demo")  # not __name__: that is "__main__" under python -m
ROOT = Path(__file__).resolve().parents[2]
STAGES = ("corpus", "shards", "train", "export", "speak", "curve", "evaluate")
N_SENTENCES, N_HELD_OUT_SENTENCES = 560, 60  # the last 60 are never spoken in training
# One variant of each festival voice is held out: the model has heard that voice, never at that pitch/tempo.
HELD_OUT = {("kal_diphone", 250, 1.0), ("ked_diphone", -250, 1.0), ("cmu_us_slt_arctic_hts", 0, 1.07)}
MEL = dict(sample_rate=24_000, hop_length=480, n_mels=80, n_fft=1024, n_levels=4)  # 50 frames/s
PROMPT_SECONDS = 3.0
ROWS = ("ground truth", "resynthesis", "continuation", "cross-utterance")
CURVE_MINUTES = 3.0  # a training snapshot for the learning curve every 3 minutes (size=ci: by steps)
CURVE_ITEMS_PER_VOICE = (
    3  # the learning curve's fixed held-out items: 9, under a minute per snapshot on 2 cores
)
CURVE_METRICS = ("sentence_id", "per", "wer", "sim_prompt", "duration_ratio")  # the learning curve's panels
LISTEN_PER_VOICE = 1  # the report's players: the first held-out item of each voice


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
    # full: every training voice reads all 500 training sentences (6000 utterances, 4.7 hours), built in
    # about a minute; 40 sentences a voice (480 utterances) were memorised within 15 minutes of training.
    "full": DemoSize(
        train_sentences=N_SENTENCES - N_HELD_OUT_SENTENCES,
        held_out_sentences=20,
        codebook_size=256,
        minutes=15.0,
        max_steps=100_000,
        max_ar_steps_per_phoneme=12.0,
    ),
    "ci": DemoSize(
        train_sentences=5,
        held_out_sentences=2,
        codebook_size=32,
        minutes=2.0,
        max_steps=6,
        max_ar_steps_per_phoneme=3.0,
    ),
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
    build_corpus(
        corpus,
        train,
        size.train_sentences,
        sentences=sentences[:n_train],
        spread=n_train // len(train),
        jobs=os.cpu_count() or 1,
        progress=True,
    )
    build_corpus(
        corpus,
        held,
        size.held_out_sentences,
        group="held_out",
        sentences=sentences[n_train:],
        spread=size.held_out_sentences,
        jobs=os.cpu_count() or 1,
        progress=True,
    )
    return corpus


def make_shards(out: Path, size: DemoSize, mel: dict[str, int] | None = None) -> str:
    """prepare.py layout=folder codec=mel codec.weights=fit on the training voices.

    `mel` overrides the codec settings of `MEL` (recipe searches: e.g. 25 frames/s is
    `hop_length=960, n_fft=2048`, `benchmarks/demo_shards.py`)."""
    from valle.codecs import build_codec
    from valle.data.prepare import PrepareSettings, fit_mel_codebooks_for, prepare, summarize

    settings = PrepareSettings(
        layout="folder",
        input=str(out / "corpus" / "builtin"),
        output=str(out / "shards"),
        num_workers=0,
        batch_seconds=0,
    )
    codec_kwargs = {**MEL, **(mel or {}), "codebook_size": size.codebook_size}
    codebooks = fit_mel_codebooks_for(settings, codec_kwargs)
    codec = build_codec("mel", **codec_kwargs, weights=str(codebooks)).eval()
    return summarize(prepare(settings, codec, codec.info))


def train(
    out: Path,
    size: DemoSize,
    minutes: float,
    steps: int,
    run_dir: Path | None = None,
    overrides: Sequence[str] = (),
) -> Path:
    """Compose train.py's config for the demo experiment and run it (resuming if possible).

    `run_dir` (default `out/run`) and extra Hydra `overrides` are for recipe searches
    (`benchmarks/demo_recipe.py`), which train variants on the same shards.
    """
    from hydra import compose, initialize_config_dir

    from valle.cli.train import run

    os.environ.setdefault("VALLE_ROOT", str(ROOT))
    seconds = int(minutes * 60)
    budget = f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    run_dir = run_dir or out / "run"
    overrides = [
        "experiment=demo",
        f"data.root={out / 'shards'}",
        f"run_dir={run_dir}",
        f"trainer.max_steps={steps}",
        f"trainer.max_time={budget}",
        *overrides,
    ]
    if size is SIZES["ci"]:
        overrides += [
            "trainer.val_check_interval=3",
            "data.val_utterances=2",
            "model.scale.d_model=64",
            "model.scale.n_layers=2",
            "training.guided_attention.layers=[1]",
        ]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    run(cfg)
    return run_dir / "checkpoints" / "last.ckpt"


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
    continuation_seconds: (
        float  # the continuation prompt: the recording's first seconds, up to a word boundary
    )
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
    cuts = [
        (timings[words_before[j]].start_seconds, j)
        for j in range(1, len(tokens))
        if 0 < words_before[j] < len(timings) and words_before[j] > words_before[j - 1]
    ]
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
def plan_items(out: Path, codec: Codec) -> tuple[list[Item], list[Prompt], list[Prompt]]:
    """Every held-out recording's prompts in both modes; writes the prompt and resynthesis wavs and the
    manifest (samples/manifest.json), whose outputs speak() then fills.

    Returns:
        (items, cross-utterance prompts, continuation prompts), in the same order.
    """
    from valle.audio import load_for_codec, write_wav
    from valle.evaluate.asr import PocketSphinxAligner
    from valle.sampling.prompt import prompt_audio

    rate = codec.sample_rate
    aligner = PocketSphinxAligner()
    items, cross, continuation = [], [], []
    for speaker, wav_path, prompt_path in held_out_items(out):
        key, text = wav_path.stem, wav_path.with_suffix(".txt").read_text().strip()
        truth = load_for_codec(wav_path, rate)
        truth_codes = codec.encode(truth, rate)
        # Continuation: the recording's own first words (up to 3 s, at most half of it) and their
        # transcript; the model says the rest of the text, which is all that is scored.
        seconds, said, rest = continuation_split(
            aligner.align(truth, rate, text), text, min(PROMPT_SECONDS, truth.numel() / rate / 2)
        )
        frames = round(seconds * codec.frame_rate)
        continuation.append(Prompt(truth_codes[:, :frames], said, f"{key} (first {frames} frames)"))
        # Cross-utterance: another recording of the voice, trimmed and cropped as infer.py would.
        prompt = prompt_audio(prompt_path, rate, PROMPT_SECONDS)
        cross.append(Prompt(codec.encode(prompt, rate), source=str(prompt_path)))
        rows = {
            "resynthesis": f"samples/resynthesis/{key}.wav",
            "continuation": f"samples/continuation/{key}.wav",
            "cross-utterance": f"samples/cross-utterance/{key}.wav",
        }
        write_wav(out / rows["resynthesis"], codec.decode(truth_codes), rate)
        prompt_wav = f"samples/prompts/{key}.wav"  # the prompt as the model got it, before the codec
        write_wav(out / prompt_wav, prompt, rate)
        items.append(
            Item(
                key,
                speaker,
                text,
                str(wav_path.relative_to(out)),
                prompt_wav,
                prompt_path.stem,
                frames / codec.frame_rate,
                rest,
                rows,
            )
        )
    atomic_write_json(out / "samples" / "manifest.json", [asdict(i) for i in items])
    return items, cross, continuation


@torch.inference_mode()
def speak(out: Path, size: DemoSize) -> list[Item]:
    """Synthesize every held-out recording's text in both modes; writes samples/ and its manifest."""
    import valle
    from valle.audio import write_wav
    from valle.sampling.synthesize import Synthesizer

    synthesizer = Synthesizer(valle.load(out / "model.pt"))
    rate = synthesizer.codec.sample_rate
    config = sampler_config(size)
    items, cross, continuation = plan_items(out, synthesizer.codec)
    for row, prompts in (("cross-utterance", cross), ("continuation", continuation)):
        started = time.perf_counter()
        texts = [item.continuation_text if row == "continuation" else item.text for item in items]
        results = synthesizer.synthesize(texts, prompts, "en-us", config, prompt_seconds=None, progress=True)
        for item, result in zip(items, results, strict=True):
            write_wav(out / item.outputs[row], result.wav, rate)
        log.info("%s: %d utterances in %.1f s", row, len(items), time.perf_counter() - started)
    return items


def read_manifest(out: Path) -> list[Item]:
    return [Item(**i) for i in json.loads((out / "samples" / "manifest.json").read_text())]


def first_per_voice(items: Sequence[Item], n: int) -> list[Item]:
    """The first `n` items of each held-out voice, in manifest order: a fixed subset, the same every run."""
    taken: dict[str, int] = {}
    chosen = []
    for item in items:
        if taken.setdefault(item.speaker, 0) < n:
            taken[item.speaker] += 1
            chosen.append(item)
    return chosen


def sampler_config(size: DemoSize) -> SamplerConfig:
    """The sampler settings the demo speaks with (speak and the learning curve)."""
    return SamplerConfig(
        seed=0, ar_temperature=0.8, top_p=0.9, max_ar_steps_per_phoneme=size.max_ar_steps_per_phoneme
    )


def curve_overrides(size: DemoSize, curve_minutes: float) -> list[str]:
    """train.py overrides that keep the learning curve's snapshots in run/curve/
    (configs/callbacks/curve.yaml)."""
    if size is SIZES["ci"]:  # a few steps in seconds: snapshot by steps, so that there is one to score
        return [
            "callbacks=curve",
            "callbacks.curve.train_time_interval=null",
            f"callbacks.curve.every_n_train_steps={max(1, size.max_steps // 2)}",
        ]
    return ["callbacks=curve", f"callbacks.curve.train_time_interval.minutes={curve_minutes:g}"]


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
    from valle.audio import write_wav
    from valle.evaluate.curve import snapshot_files, update_curve
    from valle.evaluate.report import evaluate_rows
    from valle.sampling.prompt import prompt_audio
    from valle.sampling.synthesize import Synthesizer

    items = read_manifest(out)
    chosen = first_per_voice(items, CURVE_ITEMS_PER_VOICE)
    candidates = list(dict.fromkeys(item.text for item in items))
    config = sampler_config(size)
    read = AudioCache(out)

    def score(model: Path) -> RowScores:
        synthesizer = Synthesizer(valle.load(model))
        codec, rate = synthesizer.codec, synthesizer.codec.sample_rate
        prompts = [
            Prompt(codec.encode(prompt_audio(path, rate, PROMPT_SECONDS), rate), source=str(path))
            for path in ((out / item.truth).with_name(f"{item.prompt_key}.wav") for item in chosen)
        ]
        results = synthesizer.synthesize(
            [item.text for item in chosen], prompts, "en-us", config, prompt_seconds=None
        )
        spoken = []
        for item, result in zip(chosen, results, strict=True):
            spoken.append(
                replace(item, outputs={"cross-utterance": f"{outputs}/{model.stem}/{item.key}.wav"})
            )
            write_wav(out / spoken[-1].outputs["cross-utterance"], result.wav, rate)
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
    """Score the four rows; write report.md, report.html, report.json and the plots."""
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
    items: list[Item], read: Callable[[str], tuple[torch.Tensor, int]], rows: Sequence[str] = ROWS
) -> dict[str, list[EvalItem]]:
    """The rows' items (default: all four): each scored on what it says, against the prompt it was given.

    - continuation: the generated audio alone against the rest of the transcript; SIM (prompt) against
      the recording's first seconds it continued, SIM (ground truth) and duration against the rest of it;
    - cross-utterance: against the other recording's prompt and the whole recording;
    - ground truth and resynthesis had no prompt: their SIM (prompt) is against the cross-utterance
      prompt (another recording of the voice), what a perfect clone would score.
    """
    scored: dict[str, list[EvalItem]] = {row: [] for row in rows}
    for item in items:
        truth, rate = read(item.truth)
        prompt, prompt_rate = read(item.prompt)
        others = [read(i.truth) for i in items if i.speaker != item.speaker]
        cut = round(item.continuation_seconds * rate)
        for row in rows:
            wav, wav_rate = read(item.outputs[row]) if row in item.outputs else (truth, rate)
            if row == "continuation":
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


def clips(item: Item) -> dict[str, str]:
    """What to hear of one held-out item, label → wav relative to `out`: its prompt, the recording, each
    output."""
    return {"prompt": item.prompt, "ground truth": item.truth, **{row: item.outputs[row] for row in ROWS[1:]}}


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
    from valle.checkpoints import describe_file, load_file

    data = load_file(out / "model.pt")  # read once: the description and the weights' size
    meta = describe_file(data, out / "model.pt")
    stats, scale = meta["stats"], meta["model"]["scale"]
    params = sum(v.numel() for v in data["model"].values()) / 1e6
    return (
        f"{stats.get('steps', 0)} steps in {stats.get('train_seconds', 0) / 60:.1f} min, "
        f"{stats.get('samples', 0)} samples; d_model {scale['d_model']}, {scale['n_layers']} layers, "
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
- **continuation**: the recording's first words (up to {PROMPT_SECONDS:g} s and half of it, cut at a word
  boundary found by forced alignment) and their transcript as the prompt; the model says the rest of the
  sentence, and only what it generated is scored: against the rest of the transcript and the rest of the
  recording;
- **cross-utterance**: a {PROMPT_SECONDS:g} s prompt from another recording of the same voice, and the target
  sentence.

Sentence ID: pocketsphinx decoding constrained to the row's sentences (a JSGF grammar; continuation: the
sentences' remainders), top-1 accuracy against chance. PER: pocketsphinx phone decoding against the
transcript's CMU-dictionary phones. WER/CER: pocketsphinx (its bundled English model) after text
normalisation. SIM: cosine of resemblyzer speaker embeddings, against the prompt the row was given
(continuation: the recording's first words; cross-utterance: the other recording; ground truth and
resynthesis, which have none: the cross-utterance prompt), the ground truth, and (*other voices*) the
recordings of the other held-out voices. The goal: the model's WER within 2× of resynthesis, and SIM
(prompt) above SIM (other voices). `report.html` has the same with players.

{table}
Training: {training}.

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
            ["The prompt is the cross-utterance one; the continuation clip is the generated part alone."],
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
            "report.md describes the rows and the columns."
        ],
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "options", nargs="*", help="out=DIR size=full|ci minutes=M steps=N curve_minutes=M stage=NAME|all"
    )
    options = dict(o.split("=", 1) for o in parser.parse_args(argv).options)
    unknown = set(options) - {"out", "size", "minutes", "steps", "curve_minutes", "stage"}
    if unknown:
        raise SystemExit(f"unknown option(s) {sorted(unknown)}; see python -m valle.demo --help")
    out = Path(options.get("out", "outputs/demo")).resolve()
    if options.get("size", "full") not in SIZES:
        raise SystemExit(f"size={options['size']}: choose one of {', '.join(SIZES)}")
    size = SIZES[options.get("size", "full")]
    minutes, steps = float(options.get("minutes", size.minutes)), int(options.get("steps", size.max_steps))
    curve_minutes = float(options.get("curve_minutes", CURVE_MINUTES))
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
        stage(3, "train", train(out, size, minutes, steps, overrides=curve_overrides(size, curve_minutes)))
    if run("export"):
        stage(4, "export", export(out))
    if run("speak"):
        stage(5, "speak", f"{len(speak(out, size))} held-out utterances × 3 rows in {out / 'samples'}")
    if run("curve"):
        from valle.evaluate.curve import format_curve_markdown

        points = learning_curve(out, size)
        n_items = len(first_per_voice(read_manifest(out), CURVE_ITEMS_PER_VOICE))
        stage(6, "curve", f"{out / 'curve.json'}\n\n{format_curve_markdown(points, n_items)}")
    if run("evaluate"):
        report, table = evaluate(out)
        stage(7, "evaluate", f"{report}\n{out / 'report.html'}\n\n{table}")


if __name__ == "__main__":
    exit_on_user_error(main)()
