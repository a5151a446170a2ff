"""Objective evaluation as in the VALL-E paper: WER / CER through ASR, speaker similarity, duration ratio,
plus sentence identification and phoneme error rate, every figure with a bootstrap interval.

The recognisers and the speaker encoder load their models only when constructed, so importing this
package is cheap.
"""

from valle.evaluate.asr import PocketSphinxASR, WhisperASR
from valle.evaluate.phones import PhoneRecognizer, per, text_to_phones
from valle.evaluate.report import (
    EvalItem,
    ItemScores,
    RowScores,
    evaluate_rows,
    format_markdown,
    metrics_of,
    to_json,
)
from valle.evaluate.sentence_id import SentenceIdentifier
from valle.evaluate.sim import SpeakerEncoder, WavLMVerifier
from valle.evaluate.stats import Estimate, bootstrap_ci
from valle.evaluate.text import cer, normalize, wer

__all__ = [
    "Estimate",
    "EvalItem",
    "ItemScores",
    "PhoneRecognizer",
    "PocketSphinxASR",
    "RowScores",
    "SentenceIdentifier",
    "SpeakerEncoder",
    "WavLMVerifier",
    "WhisperASR",
    "bootstrap_ci",
    "cer",
    "evaluate_rows",
    "format_markdown",
    "metrics_of",
    "normalize",
    "per",
    "text_to_phones",
    "to_json",
    "wer",
]
