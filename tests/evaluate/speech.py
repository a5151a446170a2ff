"""Speech for the evaluation tests: the LJ Speech fixtures and espeak-ng renderings."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from valle.audio import read_audio

REAL_SPEECH = Path(__file__).resolve().parents[2].parent / "shared/fixtures/real-speech"


def real_speech() -> dict[str, tuple[torch.Tensor, int, str]]:
    """id → (wav, sample_rate, transcript) for the four LJ Speech fixtures; skips when they are missing."""
    if not REAL_SPEECH.is_dir():
        pytest.skip(f"{REAL_SPEECH} is missing")
    return {p.stem: (*read_audio(p), p.with_suffix(".txt").read_text().strip())
            for p in sorted(REAL_SPEECH.glob("*.wav"))}


def espeak(text: str, path: Path) -> tuple[torch.Tensor, int]:
    """`text` spoken by espeak-ng's default voice, written to `path` and read back."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    return read_audio(path)
