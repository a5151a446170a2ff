"""Objective evaluation as in the VALL-E paper: WER / CER through ASR, speaker similarity, duration ratio.

The recognisers and the speaker encoder load their models only when constructed, so importing this
package is cheap.
"""

from valle.evaluate.asr import PocketSphinxASR, WhisperASR
from valle.evaluate.report import EvalItem, ItemScores, RowScores, evaluate_rows, format_markdown, to_json
from valle.evaluate.sim import SpeakerEncoder, WavLMVerifier
from valle.evaluate.text import cer, normalize, wer

__all__ = ["EvalItem", "ItemScores", "PocketSphinxASR", "RowScores", "SpeakerEncoder", "WavLMVerifier", "WhisperASR",
           "cer", "evaluate_rows", "format_markdown", "normalize", "to_json", "wer"]
