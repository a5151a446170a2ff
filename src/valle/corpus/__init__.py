"""The built-in corpus: multi-speaker English speech synthesized offline from voices Debian ships.

Written in the generic `{group}/{speaker}/{id}.wav` + `{id}.txt` layout that `prepare.py layout=folder`
reads. Deterministic: the same voices and sentences give the same files.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from valle.corpus.sentences import SENTENCES
from valle.utils.io import atomic_write_text, temporary_sibling

log = logging.getLogger(__name__)

# espeak-ng voice variants: different pitch and formants give distinct (if robotic) speakers.
ESPEAK_VOICES = ["en-us+m3", "en-us+f2", "en-gb+m1", "en-gb+f4", "en-us+m7", "en-029+f3"]


@dataclass(frozen=True)
class Voice:
    speaker: str  # folder name, e.g. "espeak-en-us-m3"
    espeak: str  # espeak-ng voice, e.g. "en-us+m3"
    words_per_minute: int = 165


def espeak_voices(names: Sequence[str] = ESPEAK_VOICES) -> list[Voice]:
    return [Voice(speaker="espeak-" + name.replace("+", "-"), espeak=name) for name in names]


def synthesize_espeak(text: str, voice: Voice, path: Path) -> None:
    """One sentence → a 22.05 kHz wav, written atomically."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng was not found; install it: `apt-get install espeak-ng`")
    tmp = temporary_sibling(path)
    subprocess.run(["espeak-ng", "-v", voice.espeak, "-s", str(voice.words_per_minute), "-w", str(tmp), text],
                   check=True, capture_output=True)
    tmp.replace(path)


def build_corpus(root: str | Path, voices: Sequence[Voice] | None = None, n_sentences: int = 8,
                 group: str = "builtin", first_sentence: int = 0) -> Path:
    """Write `n_sentences` sentences for every voice under `root/{group}/{speaker}/`.

    Each voice reads a different window of the sentence list (shifted by its position), so speakers do
    not all say the same words. Existing files are kept: a rerun finishes an interrupted build.

    Returns:
        `root`, ready for `prepare.py layout=folder input=ROOT`.
    """
    root = Path(root)
    for v, voice in enumerate(voices or espeak_voices()):
        folder = root / group / voice.speaker
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(n_sentences):
            index = (first_sentence + v * 3 + n) % len(SENTENCES)
            stem = f"{voice.speaker}_{index:04d}"
            if not (folder / f"{stem}.wav").is_file():
                synthesize_espeak(SENTENCES[index], voice, folder / f"{stem}.wav")
            atomic_write_text(folder / f"{stem}.txt", SENTENCES[index] + "\n")
    log.info("built-in corpus at %s", root)
    return root
