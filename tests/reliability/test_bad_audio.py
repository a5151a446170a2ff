"""Bad audio: prepare skips it with the reason in its summary (or resamples / mixes down where that is
sound), and infer refuses a bad prompt naming the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import prepare_settings
from valle.audio import AudioError
from valle.codecs import build_codec
from valle.data.prepare import prepare, summarize
from valle.sampling.prompt import load_prompt

RATE = 24000
SECONDS = 2.0


def tone(rate: int = RATE, seconds: float = SECONDS, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )


def write_case(folder: Path, name: str) -> Path:
    """One bad (or merely unusual) file, `folder/name.wav`, with a transcript beside it."""
    path = folder / f"{name}.wav"
    if name == "unreadable":
        path.write_bytes(b"RIFF\x00\x00not really a wave file" * 40)
    elif name == "empty":
        sf.write(path, np.zeros(0, dtype=np.float32), RATE)
    elif name == "silent":
        sf.write(path, np.zeros(int(RATE * SECONDS), dtype=np.float32), RATE)
    elif name == "clipped":
        sf.write(path, np.clip(4 * tone(), -1, 1), RATE)  # a third of the samples at full scale
    elif name == "stereo":
        sf.write(path, np.stack([tone(), tone(amplitude=0.2)], axis=1), RATE)
    elif name in ("8khz", "96khz"):
        rate = int(name.removesuffix("khz")) * 1000
        sf.write(path, tone(rate), rate)
    elif name == "over_60s":
        sf.write(path, tone(8000, 61.0), 8000)
    elif name == "nan":
        wav = tone()
        wav[1000:1100] = np.nan
        sf.write(path, wav, RATE, subtype="FLOAT")
    path.with_suffix(".txt").write_text("A test sentence for a bad file.", encoding="utf-8")
    return path


# case → what prepare does: a skip reason, or None (kept: read, mixed down or resampled)
PREPARE = {
    "unreadable": "unreadable",
    "empty": "too short",
    "silent": "bad audio",
    "clipped": None,
    "stereo": None,
    "8khz": None,
    "96khz": None,
    "over_60s": "too long",
    "nan": "bad audio",
}
# case → the reason infer gives for refusing it as a prompt, or None (taken; a long one is cropped)
INFER = {
    "unreadable": "unreadable",
    "empty": "no samples",
    "silent": "silent",
    "clipped": None,
    "stereo": None,
    "8khz": None,
    "96khz": None,
    "over_60s": None,
    "nan": "NaN",
}


@pytest.fixture(scope="module")
def mel_codec():
    return build_codec("mel", weights="random", codebook_size=64)


@pytest.fixture(scope="module")
def bad_corpus(tiny_corpus, tmp_path_factory) -> Path:
    """Two good utterances of one speaker, and one file per case beside them."""
    root = tmp_path_factory.mktemp("bad_audio")
    speaker = next((tiny_corpus / "builtin").iterdir())
    folder = root / "builtin" / "someone"
    folder.mkdir(parents=True)
    for wav in sorted(speaker.glob("*.wav"))[:2]:
        shutil.copy(wav, folder)
        shutil.copy(wav.with_suffix(".txt"), folder)
    for name in PREPARE:
        write_case(folder, name)
    return root


@pytest.fixture(scope="module")
def prepared(bad_corpus, mel_codec, tmp_path_factory):
    output = tmp_path_factory.mktemp("bad_audio_shards")
    return prepare(prepare_settings(bad_corpus, output), mel_codec, mel_codec.info)


@pytest.mark.parametrize("case", sorted(PREPARE))
def test_prepare_skips_bad_audio_with_its_reason_or_keeps_what_it_can_fix(case, prepared, mel_codec):
    index = prepared.index
    skipped = {Path(s["path"]).stem: s for s in index.skipped}
    kept = {row.key.rsplit("/", 1)[1]: row for row in index.samples}
    if PREPARE[case] is None:
        assert case in kept and case not in skipped
        assert kept[case].duration == pytest.approx(SECONDS, abs=1.5 / mel_codec.frame_rate)
    else:
        assert case not in kept and skipped[case]["reason"] == PREPARE[case]
        assert f"{case}.wav: " in summarize(prepared)
    assert len(kept) == 2 + sum(reason is None for reason in PREPARE.values())


@pytest.mark.parametrize("case", sorted(INFER))
def test_infer_refuses_a_bad_prompt_naming_the_file(case, bad_corpus, mel_codec):
    path = bad_corpus / "builtin" / "someone" / f"{case}.wav"
    if INFER[case] is None:
        prompt = load_prompt(path, mel_codec, prompt_seconds=3.0)
        seconds = prompt.codes.shape[1] / mel_codec.frame_rate
        assert prompt.codes.shape[0] == mel_codec.n_levels and 1.0 < seconds <= 3.0 + 1 / mel_codec.frame_rate
    else:
        with pytest.raises(AudioError, match=str(path)) as refusal:
            load_prompt(path, mel_codec)
        assert INFER[case] in str(refusal.value)
