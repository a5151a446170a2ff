"""A folder of synthesised wavs and one of references → the rows `evaluate_rows` scores (matched by stem)."""

from __future__ import annotations

import logging
from pathlib import Path

import soundfile as sf
import torch

from valle.audio import AUDIO_SUFFIXES, AudioError, read_audio
from valle.errors import ConfigError, MissingFileError
from valle.evaluate.report import EvalItem
from valle.utils.io import read_utf8

log = logging.getLogger(__name__)


def audio_by_stem(folder: Path | None) -> dict[str, Path]:
    """`folder`'s audio files by stem, any audio suffix in any case (`.wav`, `.WAV`, `.flac`, `.mp3`, ...);
    read once per folder, not once per item."""
    if folder is None or not folder.is_dir():
        return {}
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    return {p.stem: p for p in reversed(files)}  # the first in name order wins a shared stem


def read_output(path: Path) -> tuple[torch.Tensor, int]:
    """A model output as `read_audio` reads it, except that an empty file is a (wrong) result, not a
    broken input: it comes back as 0 samples, scored as an empty transcript, no SIM, duration ratio 0.

    Raises:
        AudioError: the file is unreadable or holds non-finite samples.
    """
    try:
        return read_audio(path)
    except AudioError:
        try:
            info = sf.info(str(path))
        except Exception:  # unreadable: the AudioError above says so
            info = None
        if info is None or info.frames:
            raise
    log.warning("%s: the output holds no samples; scored as an empty result", path)
    return torch.zeros(max(info.channels, 1), 0), int(info.samplerate)


def load_rows(hyp_dir: Path, ref_dir: Path, prompt_dir: Path | None, name: str) -> dict[str, list[EvalItem]]:
    """The "ground truth" and `name` rows: every `hyp_dir/{stem}.wav` (or .flac, .ogg, .mp3) beside
    `ref_dir/{stem}.wav` and its transcript `ref_dir/{stem}.txt`, and `prompt_dir/{stem}.wav` if given.

    Raises:
        MissingFileError: no `hyp_dir` folder, or a `prompt_dir` given that is no folder.
        ConfigError: no outputs, an output without its reference wav / transcript (names the file), or a
            `prompt_dir` with no prompt for any output (a misspelt folder would leave SIM empty).
    """
    for key, folder in (("hyp_dir", hyp_dir), ("prompt_dir", prompt_dir)):
        if folder is not None and not folder.is_dir():
            raise MissingFileError(f"{key}={folder}: no such folder")
    hyps = sorted(audio_by_stem(hyp_dir).values())
    refs, prompts = audio_by_stem(ref_dir), audio_by_stem(prompt_dir)
    if not hyps:
        raise ConfigError(f"hyp_dir={hyp_dir}: no audio files ({', '.join(AUDIO_SUFFIXES)}) to score")
    if prompt_dir is not None and not prompts.keys() & {hyp.stem for hyp in hyps}:
        raise ConfigError(
            f"prompt_dir={prompt_dir}: no prompt named like an output (e.g. {hyps[0].stem}.wav); "
            "give the folder of the prompts the outputs were conditioned on, or leave prompt_dir out"
        )
    truth, model = [], []
    for hyp in hyps:
        ref, txt = refs.get(hyp.stem), ref_dir / f"{hyp.stem}.txt"
        if ref is None or not txt.is_file():
            raise ConfigError(
                f"{hyp}: needs {ref_dir}/{hyp.stem}.wav and {txt}; add them or remove the output"
            )
        text = read_utf8(txt, "ref_dir: ").strip()
        ref_wav, ref_rate = read_audio(ref)
        prompt = prompts.get(hyp.stem)
        prompt_wav, prompt_rate = read_audio(prompt) if prompt else (None, None)
        hyp_wav, hyp_rate = read_output(hyp)
        truth.append(EvalItem(hyp.stem, text, ref_wav, ref_rate, prompt_wav, None, prompt_rate))
        model.append(EvalItem(hyp.stem, text, hyp_wav, hyp_rate, prompt_wav, ref_wav, prompt_rate, ref_rate))
    return {"ground truth": truth, name: model}
