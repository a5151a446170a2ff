"""The demo's settings: sizes, voices, the held-out set, the codec, the sampler, the curve's snapshots."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from valle.corpus import FESTIVAL_VOICES, Voice, festival_voices
from valle.sampling.pipeline import SamplerConfig

log = logging.getLogger("valle.demo")  # not __name__: that is "__main__" under python -m
ROOT = Path(__file__).resolve().parents[4]  # the repository: configs/, conf/
STAGES = ("corpus", "shards", "train", "export", "recognizer", "speak", "curve", "evaluate")
N_SENTENCES, N_HELD_OUT_SENTENCES = 560, 60  # the last 60 are never spoken in training
# One variant of each festival voice is held out: the model has heard that voice, never at that pitch/tempo.
# Of each voice's five, the variant pocketsphinx reads best, so that the instrument can tell what the model
# says: the demo's ground truth reads at 13 % WER with these, 33 % with the pitch-shifted kal +250, ked -250
# and slt at 1.07 held out before (docs/benchmarks.md, "Held-out voices the instrument can read").
HELD_OUT = {("kal_diphone", 0, 1.07), ("ked_diphone", 0, 1.07), ("cmu_us_slt_arctic_hts", -250, 1.0)}
MEL = dict(sample_rate=24_000, hop_length=480, n_mels=80, n_fft=1024, n_levels=4)  # 50 frames/s
PROMPT_SECONDS = 3.0
# The NAR's levels decoded as their expected codewords at this temperature, not as its argmax codes: with
# the true level 0 of the 60 held-out items, WER 45.5 % against 59.0 % (docs/benchmarks.md, "Expected
# codewords")
EXPECTED_CODEWORDS = 0.3
AR_TEMPERATURE, TOP_P = 0.8, 0.9  # the AR's draws (docs/benchmarks.md, "The sampler is not the lever")
DECODING = (
    f"the AR draws at temperature {AR_TEMPERATURE:g} with top-p {TOP_P:g}; the NAR's levels are decoded as "
    f"the codewords expected under its distribution at temperature {EXPECTED_CODEWORDS:g} "
    "(`sampler.expected_codewords`)"
)
MODEL_ROWS = ("continuation", "cross-utterance")  # what the model says, in the report's order
# The continuation rows' references: the recording and its resynthesis after each continuation prompt's cut,
# scored as the continuation rows are. Two to five words without their sentence's start read worse than a
# whole sentence (ground truth WER 27 % against 13 %), so these, not the whole-sentence rows, are the floor
# and the ceiling that a continuation is compared with.
REMAINDERS = {"ground truth, remainders": "ground truth", "resynthesis, remainders": "resynthesis"}
# The best-of rows (`best_of=N`, off in `make demo`): the continuation and cross-utterance items again, each
# the clearest of N draws by a level-0 recognizer trained on the training shards (docs/benchmarks.md,
# "Best of N"). Off by default: the recognizer's 4 minutes and the extra rows' 3 buy more training instead.
BEST_OF_MARK = ", best of "


def best_of_row(row: str, n: int) -> str:
    """The name of `row` spoken as the best of `n` draws: "cross-utterance, best of 8"."""
    return f"{row}{BEST_OF_MARK}{n}"


def spoken_rows(best_of: int) -> tuple[str, ...]:
    """The rows the model speaks: each of MODEL_ROWS and (`best_of` > 1) its best of N."""
    return tuple(
        r for row in MODEL_ROWS for r in (row, *([best_of_row(row, best_of)] if best_of > 1 else []))
    )


def report_rows(spoken: Sequence[str]) -> tuple[str, ...]:
    """Every row of the report: the ground truth, the resynthesis, their remainders, then the `spoken`."""
    return ("ground truth", "resynthesis", *REMAINDERS, *spoken)


def rows_for(best_of: int) -> tuple[str, ...]:
    """Every row of the report when the model speaks the rows of `spoken_rows(best_of)`."""
    return report_rows(spoken_rows(best_of))


def is_continuation(row: str) -> bool:
    """A row scored as a continuation: on the words after the prompt's cut, against the rest of the
    recording (the model's continuation rows and the remainders)."""
    return row.startswith("continuation") or row in REMAINDERS


CURVE_MINUTES = 3.0  # a training snapshot for the learning curve every 3 minutes (size=ci: by steps)
CURVE_ITEMS_PER_VOICE = (
    3  # the learning curve's fixed held-out items: 9, under a minute per snapshot on 2 cores
)
CURVE_METRICS = ("sentence_id", "per", "wer", "sim_prompt", "duration_ratio")  # the learning curve's panels
LISTEN_PER_VOICE = 1  # the report's players: the first held-out item of each voice


def row_folder(row: str) -> str:
    """Where a row's wavs go under samples/: "cross-utterance, best of 8" → "cross-utterance-best-of-8"."""
    return row.replace(",", "").replace(" ", "-")


@dataclass(frozen=True)
class DemoSize:
    """How much of everything: `full` is `make demo`, `quick` a short run that shows the learning, `ci` the
    shortened run the tests make to check every stage."""

    train_sentences: int  # per training voice
    held_out_sentences: int  # per held-out voice (each is a target, and a prompt for its neighbour)
    codebook_size: int
    minutes: float  # training time budget (the other stages take about 8 minutes on 2 CPU cores)
    max_steps: int
    max_ar_steps_per_phoneme: float  # the runaway guard: an undertrained model may never say stop
    best_of: int = 0  # the best-of rows' N (0: none, and no recognizer stage)
    recognizer_minutes: float = 4.0  # the best-of rows' recognizer: its training budget
    recognizer_steps: int = 5000
    train_overrides: tuple[str, ...] = ()  # train.py overrides of `experiment=demo` for this size


# full: every training voice reads all 500 training sentences (6000 utterances, 4.7 hours), built in
# about a minute; 40 sentences a voice (480 utterances) were memorised within 15 minutes of training.
FULL = DemoSize(
    train_sentences=N_SENTENCES - N_HELD_OUT_SENTENCES,
    held_out_sentences=20,
    codebook_size=256,
    # 20 minutes: with the recognizer and the best-of rows off, what keeps `make demo` within 30 minutes
    # end to end on 2 cores (docs/benchmarks.md, "twenty minutes of training in the 30")
    minutes=20.0,
    max_steps=100_000,
    max_ar_steps_per_phoneme=12.0,
)
SIZES = {
    "full": FULL,
    # quick: the full corpus and recipe, stopped by steps (the same on every CPU: the schedule does not
    # depend on the budget; the time budget is only a cap), with fewer held-out items to speak and score:
    # the slow test that checks a short run learns to say the words, and a user's few-minute check. With
    # said_context 500 steps identified 52 % of its 48 items and 700 steps 37.5 % (chance 4.2 %; about 2
    # minutes of steps on a 2-core EPYC).
    "quick": replace(
        FULL,
        held_out_sentences=8,
        minutes=30.0,
        max_steps=500,
        train_overrides=("trainer.val_check_interval=250",),  # the full demo validates every 600 steps
    ),
    "ci": DemoSize(
        train_sentences=5,
        held_out_sentences=2,
        codebook_size=32,
        minutes=2.0,
        max_steps=6,
        max_ar_steps_per_phoneme=3.0,
        best_of=2,  # the best-of rows and their recognizer, checked at toy size
        recognizer_minutes=1.0,
        recognizer_steps=4,
        train_overrides=(
            "trainer.val_check_interval=3",
            "data.val_utterances=2",
            "model.scale.d_model=64",
            "model.scale.n_layers=2",
            "training.guided_attention.layers=[1]",
        ),
    ),
}


# The width for the budget. On 2 cores d_model 128 says the most in 15 minutes, but it stops learning by 30
# (sentence ID 60.0 % at 15 minutes, 58.9 % at 30), where d_model 256 keeps going (67.8 %, then 73.9 %, with
# its voice and durations back in band): docs/benchmarks.md, "Twice the budget for the wider AR".
WIDE_FROM_MINUTES = 30.0
WIDE_D_MODEL = 256


def width_for_budget(size: DemoSize, minutes: float) -> int | None:
    """The d_model the full demo trains for a budget of `minutes` (None: the experiment's, 128)."""
    return WIDE_D_MODEL if size is SIZES["full"] and minutes >= WIDE_FROM_MINUTES else None


def voices() -> tuple[list[Voice], list[Voice]]:
    """(training voices, held-out voices) of the built-in festival corpus."""
    every = festival_voices(FESTIVAL_VOICES)
    held = [v for v in every if (v.name, v.pitch_cents, v.speed) in HELD_OUT]
    return [v for v in every if v not in held], held


def sampler_config(size: DemoSize) -> SamplerConfig:
    """The sampler settings the demo speaks with (speak and the learning curve)."""
    return SamplerConfig(
        seed=0,
        ar_temperature=AR_TEMPERATURE,
        top_p=TOP_P,
        max_ar_steps_per_phoneme=size.max_ar_steps_per_phoneme,
        expected_codewords=EXPECTED_CODEWORDS,
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
