"""Speech for the evaluation tests: the LJ Speech fixtures, espeak-ng and festival renderings."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from valle.audio import read_audio
from valle.corpus import Voice, synthesize_voice
from valle.corpus.sentences import SENTENCES

REAL_SPEECH = Path(__file__).resolve().parents[2].parent / "shared/fixtures/real-speech"


def real_speech() -> dict[str, tuple[torch.Tensor, int, str]]:
    """id → (wav, sample_rate, transcript) for the four LJ Speech fixtures; skips when they are missing."""
    if not REAL_SPEECH.is_dir():
        pytest.skip(f"{REAL_SPEECH} is missing")
    return {
        p.stem: (*read_audio(p), p.with_suffix(".txt").read_text().strip())
        for p in sorted(REAL_SPEECH.glob("*.wav"))
    }


def espeak(text: str, path: Path) -> tuple[torch.Tensor, int]:
    """`text` spoken by espeak-ng's default voice, written to `path` and read back."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    return read_audio(path)


# Four built-in sentences (Harvard style) alternately in two festival voices: pocketsphinx reads
# festival well, so these stand for clean synthetic speech.
FESTIVAL_SENTENCES = SENTENCES[:4]
FESTIVAL_VOICES = ("kal_diphone", "cmu_us_slt_arctic_hts")


def festival(text: str, voice: str, path: Path) -> tuple[torch.Tensor, int]:
    """`text` spoken by one of Debian's festival voices, written to `path` and read back."""
    if shutil.which("festival") is None:
        pytest.skip("festival is not installed")
    synthesize_voice(text, Voice(speaker=voice, name=voice, engine="festival"), path)
    return read_audio(path)


def festival_speech(folder: Path) -> dict[str, tuple[torch.Tensor, int, str]]:
    """name → (wav, sample_rate, text) for `FESTIVAL_SENTENCES`, the voices taking turns."""
    return {
        f"festival-{i}": (*festival(text, FESTIVAL_VOICES[i % 2], folder / f"{i}.wav"), text)
        for i, text in enumerate(FESTIVAL_SENTENCES)
    }
